"""The install matrix: the wheel built from this checkout, installed with
real `pip` (the project's constraints, pip's own cache) into a new virtual
environment per promised combination, each running its commands from a
folder outside the checkout and checked for what it must not install.

| install | commands run | must not be installed |
|---|---|---|
| `keras-rnn` (core) | `--help`, `--version`, `import keras_rnn` | TensorFlow, JAX, torch, gRPC, protobuf |
| `[jax,training]` | train, evaluate, translate RUN, plot; export/serve say which extra | TensorFlow, TF Text, TensorBoard, gRPC, protobuf |
| `[torch,training]` | train, evaluate, translate RUN | TensorFlow, JAX, gRPC, protobuf |
| `[tensorflow,serving]` | export, serve, translate --server | JAX, torch, matplotlib, sacreBLEU |

`make test-install` runs this folder once (`make test` calls it); the
backend halves of the suite skip it (`--ignore=tests/install`).
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support import MULTI30K, ROOT, build_wheel, free_port, write_config

CONSTRAINTS = ROOT / "requirements" / "constraints.txt"


@pytest.fixture(scope="session")
def wheel_file(tmp_path_factory):
    return build_wheel(tmp_path_factory.mktemp("wheel"))


class Install:
    """A virtual environment holding `keras_rnn-*.whl[extras]`."""

    def __init__(self, root, wheel_file, extras):
        self.venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, timeout=300)
        self.python = self.venv / "bin" / "python"
        self.script = self.venv / "bin" / "keras-rnn"
        requirement = f"{wheel_file}[{extras}]" if extras else str(wheel_file)
        result = subprocess.run(
            [str(self.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-c", str(CONSTRAINTS), requirement],
            capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        self.home = root / "home"  # the user's folder, outside the checkout
        self.home.mkdir()

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items()
               if k not in ("KERAS_BACKEND", "PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
        env.update(KERAS_HOME=str(self.home / ".keras"), **extra)
        return env

    def run(self, *args, timeout=900, **env):
        """`keras-rnn ARGS` through the installed script, in the user's folder."""
        return subprocess.run([str(self.script), *map(str, args)], cwd=self.home,
                              env=self.env(**env), capture_output=True, text=True,
                              timeout=timeout)

    def absent(self, *distributions):
        """The distributions of `distributions` that pip cannot find here."""
        result = subprocess.run([str(self.python), "-m", "pip", "show", *distributions],
                                capture_output=True, text=True, timeout=300)
        found = {line.split(":", 1)[1].strip().lower()
                 for line in result.stdout.splitlines() if line.startswith("Name:")}
        return {d for d in distributions if d.lower() not in found}

    def imports(self, module):
        result = subprocess.run([str(self.python), "-c", f"import {module}"],
                                cwd=self.home, env=self.env(), capture_output=True,
                                text=True, timeout=300)
        return result.returncode == 0


def install(tmp_path_factory, wheel_file, extras):
    return Install(tmp_path_factory.mktemp(f"install-{extras or 'core'}"), wheel_file, extras)


def tiny_config(folder, **training):
    """The suite's tiny translator, 1 epoch of 4 steps, its run in `folder`."""
    if not MULTI30K.exists():
        pytest.skip("no shared Multi30k copy")
    return write_config(folder, "tiny", training={
        "epochs": 1, "steps_per_epoch": 4, "checkpoint_every": 4, "jit_compile": "auto",
        **training})


def assert_one_line_naming(result, extra):
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'keras-rnn[{extra}]'" in lines[0], lines


def assert_trains_evaluates_translates(env, backend):
    """train, translate RUN, evaluate on the tiny config, from the user's folder."""
    config = tiny_config(env.home)
    result = env.run("train", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"backend {backend}" in result.stdout, result.stdout
    assert "data pipeline python (auto: TensorFlow is not installed" in result.stdout
    assert "TensorBoard logging skipped: it needs TensorFlow" in result.stdout
    # No TensorFlow, no native log lines: stderr holds nothing a user must read.
    assert "Traceback" not in result.stderr, result.stderr
    run = env.home / "tiny"
    assert (run / "model" / "model.keras").exists()
    assert (run / "checkpoints" / "latest").exists()

    result = env.run("translate", run, "Ein Hund rennt.", "--method", "greedy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1, result.stdout  # one line per sentence

    result = env.run("evaluate", run, "--limit", "8", "--beam-size", "2",
                     "--output", env.home / "out.txt")
    assert result.returncode == 0, result.stderr
    assert "BLEU (cased)" in result.stdout
    assert len((env.home / "out.txt").read_text().splitlines()) == 8
    return run


# ------------------------------------------------------------------- core


def test_the_core_install_imports_and_shows_help_with_no_backend(tmp_path_factory, wheel_file):
    env = install(tmp_path_factory, wheel_file, "")
    assert env.absent("tensorflow", "jax", "torch", "grpcio", "protobuf", "sentencepiece") == {
        "tensorflow", "jax", "torch", "grpcio", "protobuf", "sentencepiece"}
    result = env.run("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("keras-rnn: train, evaluate, export and serve")
    assert env.run("--version").stdout.startswith("keras-rnn ")
    # A command that needs an extra says which, in one line.
    assert_one_line_naming(env.run("train", "quick"), "training")
    # The library itself says what to install.
    result = subprocess.run([str(env.python), "-c", "import keras_rnn; keras_rnn.LSTM"],
                            cwd=env.home, env=env.env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ImportError: keras_rnn.LSTM: keras-rnn needs a Keras backend: pip install "
        "'keras-rnn[jax]' (or [tensorflow], or [torch])"), result.stderr


# --------------------------------------------------------- [jax,training]


@pytest.fixture(scope="module")
def jax_training(tmp_path_factory, wheel_file):
    return install(tmp_path_factory, wheel_file, "jax,training")


def test_the_jax_training_install_has_no_tensorflow_grpc_or_protobuf(jax_training):
    assert jax_training.absent("tensorflow", "tensorflow-text", "tensorboard", "grpcio",
                               "protobuf") == {"tensorflow", "tensorflow-text", "tensorboard",
                                               "grpcio", "protobuf"}
    for module in ("grpc", "google.protobuf", "tensorflow", "tensorflow_serving"):
        assert not jax_training.imports(module), module
    assert jax_training.imports("jax, keras_rnn, sentencepiece, sacrebleu, matplotlib")


def test_the_jax_training_install_trains_evaluates_translates_and_plots(jax_training):
    # No KERAS_BACKEND: keras_rnn picks JAX because TensorFlow is missing.
    run = assert_trains_evaluates_translates(jax_training, "jax")
    result = jax_training.run("plot", run)
    assert result.returncode == 0, result.stderr
    assert (run / "plots" / "history.png").stat().st_size > 10_000, result.stdout

    home = jax_training.home
    for command in (["export", run, home / "models"],
                    ["serve", "--model-base-dir", home / "models"],
                    ["translate", "--server", "127.0.0.1:1", "x"]):
        assert_one_line_naming(jax_training.run(*command), "serving")
    assert not (home / "models").exists()
    result = jax_training.run("serve", "--help")
    assert result.returncode == 0 and "--model-base-dir" in result.stdout, result.stderr


# -------------------------------------------------------- [torch,training]


def test_the_torch_training_install_trains_evaluates_and_translates(tmp_path_factory,
                                                                     wheel_file):
    env = install(tmp_path_factory, wheel_file, "torch,training")
    assert env.absent("tensorflow", "jax", "grpcio", "protobuf") == {
        "tensorflow", "jax", "grpcio", "protobuf"}
    # No KERAS_BACKEND: keras_rnn picks torch, the one backend installed.
    assert_trains_evaluates_translates(env, "torch")


# ---------------------------------------------------- [tensorflow,serving]


def test_the_serving_install_exports_serves_and_translates(tmp_path_factory, wheel_file,
                                                          trained_run_tf):
    env = install(tmp_path_factory, wheel_file, "tensorflow,serving")
    assert env.absent("jax", "torch", "matplotlib", "sacrebleu") == {
        "jax", "torch", "matplotlib", "sacrebleu"}
    models = env.home / "models"
    result = env.run("export", trained_run_tf, models)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (models / "tiny" / "1" / "saved_model.pb").exists()
    # No TensorFlow C++ log lines on a command's stderr (issue 22 part 6).
    assert "cudart_stub" not in result.stderr and "port.cc" not in result.stderr, result.stderr

    port = free_port()
    server = subprocess.Popen([str(env.script), "serve", "--model-base-dir", models,
                               "--port", str(port)], cwd=env.home, env=env.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready = wait_for_line(server, f"on 127.0.0.1:{port}", timeout=300)
        assert ready.startswith("serving tiny version 1"), ready
        result = env.run("translate", "--server", f"127.0.0.1:{port}", "--model", "tiny",
                         "Ein Hund rennt.", "Zwei Männer.")
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("\n") == 2, result.stdout
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
    assert server.returncode == 0, output


@pytest.fixture(scope="module")
def trained_run_tf(tmp_path_factory):
    """The tiny translator trained in the development environment on TensorFlow."""
    from tests.support import cli

    folder = tmp_path_factory.mktemp("trained-tf")
    cli("train", tiny_config(folder), env={"KERAS_BACKEND": "tensorflow"})
    return folder / "tiny"


def wait_for_line(process, text, timeout):
    """The first line of `process`'s output that holds `text`."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"exited {process.wait()} before {text!r}:\n{''.join(seen)}")
        seen.append(line)
        if text in line:
            return line.strip()
    raise AssertionError(f"no {text!r} in {timeout} s:\n{''.join(seen)}")
