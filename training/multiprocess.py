"""Multi-process data parallel training on Keras's distribution engine (JAX).

`keras-rnn train` started once per process, with Keras's variables

    KERAS_DISTRIBUTION_JOB_ADDRESSES   the coordinator's host:port (process 0)
    KERAS_DISTRIBUTION_NUM_PROCESSES   the number of processes
    KERAS_DISTRIBUTION_PROCESS_ID      this process, 0 .. N-1

(or the flags `--coordinator-address`, `--num-processes`, `--process-id`),
calls `keras.distribution.initialize()` (`jax.distributed` underneath; CPU
collectives over gloo) before any JAX computation, and trains one
`keras.distribution.DataParallel` over the devices of every process
(`jax.devices()`). The global batch stream (`training.pipeline.BatchPlan`)
is the single-process one, its rows a multiple of the devices; each process
feeds only its contiguous slice of every global batch
(`local_rows`), the slice that Keras places on its local devices.

Process 0 trains the tokenizers, fills the token cache and writes the run
directory (config, checkpoints, history, the best model); the other
processes wait for it at a barrier, then read the same tokenizers and cache,
and every process resumes from the same checkpoint. A process that fails
(or whose partner died) leaves at once with one line (`abandon`); starting
all the processes again resumes from the last complete checkpoint.
"""

import os
import re
import sys

import numpy as np

ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
       "KERAS_DISTRIBUTION_PROCESS_ID")


class MultiProcessError(ValueError):
    """Multi-process training was asked for where it cannot run."""


def settings(coordinator_address=None, num_processes=None, process_id=None):
    """`(address, num_processes, process_id)` from the flags, else Keras's variables."""
    address = coordinator_address or os.environ.get(ENV[0]) or None
    if num_processes is None and os.environ.get(ENV[1]):
        num_processes = int(os.environ[ENV[1]])
    if process_id is None and os.environ.get(ENV[2]):
        process_id = int(os.environ[ENV[2]])
    return address, num_processes, process_id


def initialize(coordinator_address=None, num_processes=None, process_id=None):
    """Joins the processes when more than one is asked for. Returns their number.

    Raises:
        MultiProcessError: more than one process on a backend other than JAX,
            or an incomplete setting.
    """
    import keras

    address, count, index = settings(coordinator_address, num_processes, process_id)
    if not count or count <= 1:
        return 1
    if keras.backend.backend() != "jax":
        raise MultiProcessError(
            f"multi-process training ({count} processes) runs on JAX: set KERAS_BACKEND=jax "
            f"(this is {keras.backend.backend()}).")
    if address is None or index is None:
        raise MultiProcessError(
            "multi-process training needs the coordinator address and this process's id "
            f"({ENV[0]} and {ENV[2]}, or --coordinator-address and --process-id).")
    keras.distribution.initialize(address, count, index)
    return count


def process_count():
    """The number of processes (1 unless `initialize` joined several)."""
    import keras

    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


def process_index():
    """This process's id (0 on a single process)."""
    import keras

    if keras.backend.backend() != "jax":
        return 0
    import jax

    return jax.process_index()


def barrier(name):
    """Waits for every process to reach `name` (nothing on one process)."""
    if process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def local_rows(chunk, shard):
    """This process's contiguous slice of a global batch's row indices.

    Args:
        chunk: the global batch's pair indices (rows divisible by the count).
        shard: `(index, count)`, or None for the whole batch.
    """
    if shard is None or shard[1] == 1:
        return chunk
    index, count = shard
    rows = len(chunk) // count
    return np.asarray(chunk)[index * rows:(index + 1) * rows]


def abandon(error, count):
    """Ends this process of `count` after `error`, with one line, at once.

    The processes run as one: when one dies, the others' next collective
    fails. Python's exit would then wait in `jax.distributed.shutdown` for
    the dead process until the coordinator's heartbeat timeout and abort
    with a native stack dump, so this process leaves with `os._exit(1)`.
    """
    from keras_rnn._quiet import restore_stderr

    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    text = re.sub(r"(.{8,}?: )\1+", r"\1", text)  # XLA repeats its prefixes
    if len(text) > 200:
        text = text[:200] + "..."
    print(f"keras-rnn train: process {process_index()} of {count} stopped "
          f"({type(error).__name__}: {text}). The processes train as one: if another one "
          f"stopped or died, this one cannot go on without it. The last complete checkpoint "
          f"is kept; start all {count} processes again to resume.", file=sys.stderr, flush=True)
    sys.stdout.flush()
    restore_stderr()
    os._exit(1)
