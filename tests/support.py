"""Helpers shared by the tests that run the `keras-rnn` command: the tiny
translator config (Multi30k's validation split, read in place), a
subprocess runner, a run's newest checkpoint and a free localhost port."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")

TINY = {
    "name": "tiny",
    "data": {"dir": str(MULTI30K), "train_split": "val", "valid_split": "test_2016_flickr",
             "max_length": 24},
    "tokenizer": {"source_vocab_size": 300, "target_vocab_size": 300},
    "model": {"embedding_dim": 16, "units": 32, "encoder_units": 16,
              "embedding_dropout": 0.1, "output_dropout": 0.1},
    "training": {"epochs": 2, "steps_per_epoch": 6, "max_tokens": 384, "bucket_width": 8,
                 "warmup_steps": 4, "learning_rate": 0.01, "checkpoint_every": 2,
                 "log_every": 2, "keep_checkpoints": 20,
                 # Un-jitted JAX re-traces and recompiles every `lax.scan` at
                 # every step (seconds each); jitted, it compiles once per shape.
                 "jit_compile": BACKEND == "jax"},
    "evaluation": {"beam_size": 3, "batch_size": 256},
}


def write_config(tmp_path, name, **sections):
    config = json.loads(json.dumps(TINY))
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    config["output_dir"] = str(tmp_path / name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cli(*args, env=None, check=True, wait=True, input=None, cwd=ROOT):
    environment = {**os.environ, "KERAS_BACKEND": BACKEND, "TF_CPP_MIN_LOG_LEVEL": "3",
                   **(env or {})}
    command = [sys.executable, "-m", "keras_rnn.cli", *map(str, args)]
    if not wait:
        return subprocess.Popen(command, cwd=cwd, env=environment,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True,
                            text=True, timeout=900, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed:\n{result.stdout}\n{result.stderr}")
    return result


def build_wheel(out):
    """`pip wheel` of this checkout into `out` (no dependencies); its path."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=600, cwd=out)
    (path,) = out.glob("keras_rnn-*.whl")
    return path


def h5_arrays(file):
    """Every dataset of an HDF5 file (a path or a binary file object), by name."""
    import h5py

    arrays = {}
    with h5py.File(file) as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return arrays


def weights(run_dir, checkpoint=None):
    """All arrays of a run's newest checkpoint, or of the one named
    `checkpoint` (model + optimizer), and its state (`state.json`)."""
    checkpoints = Path(run_dir) / "checkpoints"
    path = checkpoints / (checkpoint or (checkpoints / "latest").read_text().strip())
    return (h5_arrays(path / "model.weights.h5"),
            json.loads((path / "state.json").read_text()))


def free_port():
    """A localhost TCP port that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
