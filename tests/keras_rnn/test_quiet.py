"""`keras_rnn/_quiet.py`: the command line drops TensorFlow's native log
lines from stderr (TF_CPP_MIN_LOG_LEVEL no longer reaches them), keeps
everything else, and keeps them all with --verbose or TF_CPP_MIN_LOG_LEVEL=0."""

import os
import subprocess
import sys

import pytest

from keras_rnn import _quiet
from tests.support import BACKEND, ROOT

# Lines TensorFlow 2.21 prints on `import tensorflow` (captured on the 2-core box).
NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
INFO = (b"I0000 00:00:1796244047.706616    3437 cudart_stub.cc:31] Could not find cuda "
        b"drivers on your machine, GPU will not be used.")
ERROR = (b"E0000 00:00:1796244066.049626    3441 cuda_platform.cc:52] failed call to cuInit: "
         b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
FATAL = b"F0000 00:00:1796244066.049626    3441 check.cc:1] Check failed: x"
CPU = b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild"


@pytest.mark.parametrize("level,dropped", [
    (3, {NOTICE, INFO, ERROR, CPU}), (2, {NOTICE, INFO, CPU}), (1, {NOTICE, INFO, CPU}),
    (0, set())])
def test_drops_the_native_lines_below_the_level_like_tf_cpp_min_log_level(level, dropped):
    lines = {NOTICE, INFO, ERROR, FATAL, CPU, b"Traceback (most recent call last):",
             b"keras-rnn train: error: no such config", b"I0 is not a log line",
             b"Installing the tokenizer"}
    assert {line for line in lines if _quiet.drops(line, level)} == dropped


def test_only_the_command_line_is_filtered():
    assert _quiet.running_the_command_line(["/venv/bin/python", "-m", "keras_rnn.cli", "train"])
    assert _quiet.running_the_command_line(["/venv/bin/python", "/venv/bin/keras-rnn", "-h"])
    assert not _quiet.running_the_command_line(["/venv/bin/python", "-c", "import keras_rnn"])
    assert not _quiet.running_the_command_line(["/venv/bin/python", "-m", "pytest", "tests"])


def _stderr(*args, level=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(KERAS_BACKEND=BACKEND, **({"TF_CPP_MIN_LOG_LEVEL": level} if level else {}))
    result = subprocess.run([sys.executable, "-m", "keras_rnn.cli", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    return result.returncode, result.stderr


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's own start-up lines")
def test_a_command_prints_no_native_log_lines_unless_asked():
    status, quiet = _stderr("evaluate", "no-such-run")
    assert status == 2
    assert quiet.splitlines() == [
        "keras-rnn evaluate: error: no-such-run/model/model.keras: no trained model "
        "(the run saves its best model there after its first epoch)."]
    for asked in (_stderr("--verbose", "--version")[1], _stderr("--version", level="0")[1]):
        assert "port.cc" in asked and "absl::InitializeLog()" in asked
