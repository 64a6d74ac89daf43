"""Multi-process data parallel training on JAX (`training.multiprocess`).

Two local `keras-rnn train` processes, one CPU device each, joined by
Keras's `KERAS_DISTRIBUTION_*` variables (gloo collectives), train the
tiny config to the same weights as one process with two devices on the same
global batches; on another backend several processes exit 2 with one line.
"""

import json

import numpy as np
import pytest

from tests.support import BACKEND, MULTI30K, cli, free_port, weights, write_config

pytestmark = pytest.mark.skipif(not MULTI30K.exists(), reason="no shared Multi30k copy")
jax_only = pytest.mark.skipif(BACKEND != "jax", reason="multi-process training runs on JAX")

SMALL = dict(training={"epochs": 2, "steps_per_epoch": 3, "checkpoint_every": 2,
                       "distribution": "data_parallel"})


def processes_env(port, count, index):
    return {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}",
            "KERAS_DISTRIBUTION_NUM_PROCESSES": str(count),
            "KERAS_DISTRIBUTION_PROCESS_ID": str(index),
            "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}


def run_processes(config, count=2):
    """`keras-rnn train config` in `count` processes; their outputs."""
    port = free_port()
    started = [cli("train", config, env=processes_env(port, count, i), wait=False)
               for i in range(count)]
    outputs = []
    for process in started:
        stdout, _ = process.communicate(timeout=900)
        outputs.append((process.returncode, stdout.decode()))
    for code, output in outputs:
        assert code == 0, output
    return outputs


@jax_only
def test_two_processes_train_the_weights_of_one_process_with_two_devices(tmp_path):
    single = write_config(tmp_path, "single", **SMALL)
    cli("train", single, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    double = write_config(tmp_path, "double", **SMALL)
    outputs = run_processes(double)
    assert "2 replica(s) in 2 processes (this is process 0)" in outputs[0][1]
    assert "(this is process 1)" in outputs[1][1]
    expected, expected_state = weights(tmp_path / "single")
    got, state = weights(tmp_path / "double")
    assert state["step"] == expected_state["step"] == 6
    assert expected.keys() == got.keys()
    worst = max(float(np.max(np.abs(expected[k] - got[k]))) for k in expected if expected[k].size)
    assert worst <= 1e-5, worst
    # Process 0 wrote the run, once: a record per window and epoch.
    for run in ("single", "double"):
        records = [json.loads(line) for line in
                   (tmp_path / run / "history.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if r["kind"] == "epoch"] == [3, 6]
    assert (tmp_path / "double" / "model" / "model.keras").exists()


@pytest.mark.skipif(BACKEND == "jax", reason="the refusal is for the other backends")
def test_several_processes_on_another_backend_exit_2_with_one_line(tmp_path):
    config = write_config(tmp_path, "refused")
    result = cli("train", config, env=processes_env(free_port(), 2, 0), check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "multi-process training (2 processes) runs on JAX" in result.stderr
    assert not (tmp_path / "refused").exists()


@jax_only
def test_a_killed_process_stops_the_other_and_a_restart_resumes(tmp_path):
    sections = dict(training={"epochs": 2, "steps_per_epoch": 4, "checkpoint_every": 2,
                              "distribution": "data_parallel", "validation_bleu": False})
    config = write_config(tmp_path, "killed", **sections)
    port = free_port()
    first, second = (cli("train", config, env=processes_env(port, 2, i), wait=False)
                     for i in range(2))
    seen = []
    for line in second.stdout:  # process 1's console, until its step-4 window
        seen.append(line.decode())
        if line.startswith(b"step=4 "):
            break
    assert seen and seen[-1].startswith("step=4 "), "".join(seen)
    second.kill()
    second.wait()
    stdout, _ = first.communicate(timeout=120)  # no heartbeat timeout: at its next collective
    output = stdout.decode()
    assert first.returncode == 1, output
    assert "keras-rnn train: process 0 of 2 stopped" in output
    assert "start all 2 processes again to resume" in output
    assert "Fatal Python error" not in output
    run = tmp_path / "killed"
    # Process 1 logs step 4 before the processes save it: step 2 or 4.
    latest = (run / "checkpoints" / "latest").read_text().strip()
    assert latest in ("step-00000002", "step-00000004"), latest
    outputs = run_processes(config)
    assert all(f"Resuming from {run / 'checkpoints' / latest} (step {int(latest[5:])}" in out
               for _, out in outputs), outputs
    reference = write_config(tmp_path, "reference", **sections)
    cli("train", reference, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    expected, expected_state = weights(tmp_path / "reference")
    got, state = weights(run)
    assert state["step"] == expected_state["step"] == 8
    worst = max(float(np.max(np.abs(expected[k] - got[k]))) for k in expected if expected[k].size)
    assert worst <= 1e-5, worst
