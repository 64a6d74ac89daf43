"""The `keras-rnn` command line (`cli/__init__.py`): its help, the order of
`translate`'s arguments, flag defaults read from the config dataclasses, and
the rerun of TensorFlow commands on TensorFlow.
"""

import dataclasses

import pytest

from keras_rnn import cli
from keras_rnn.serving.config import (ExportConfig, ServerConfig, config_from_args,
                                      configure)


def test_help_opens_with_what_the_tool_does(capsys):
    first = "keras-rnn: train, evaluate, export and serve attention translators."
    assert cli.build_parser().format_help().splitlines()[0] == first
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.splitlines()[0] == first


@pytest.mark.parametrize("argv, server, sentences, method", [
    (["runs/quick", "--method", "greedy", "S1", "S2"], None, ["runs/quick", "S1", "S2"],
     "greedy"),
    (["--method", "greedy", "runs/quick", "S1", "S2"], None, ["runs/quick", "S1", "S2"],
     "greedy"),
    (["runs/quick", "S1", "--n-best", "2", "S2", "--method", "beam"], None,
     ["runs/quick", "S1", "S2"], "beam"),
    (["runs/quick"], None, ["runs/quick"], "beam"),  # then stdin
    (["--server", "127.0.0.1:8500", "S1"], "127.0.0.1:8500", ["S1"], "beam"),
    (["S1", "--server", "h:1", "S2", "--timeout", "5"], "h:1", ["S1", "S2"], "beam"),
    (["--server", "h:1"], "h:1", [], "beam"),  # stdin
])
def test_translate_takes_options_and_sentences_in_any_order(argv, server, sentences, method):
    args = cli.parse_args(["translate", *argv])
    assert args.command == "translate"
    assert (args.server, args.sentences, args.method) == (server, sentences, method)


def test_translate_still_refuses_unknown_options_and_other_commands_extra_arguments():
    for argv in (["translate", "runs/quick", "--bogus", "S1"],
                 ["evaluate", "runs/quick", "extra"]):
        with pytest.raises(SystemExit) as refused:
            cli.parse_args(argv)
        assert refused.value.code == 2


def test_translate_in_process_with_options_after_the_run(trained_run, capsys):
    status = cli.main(["translate", trained_run, "--method", "greedy",
                       "Ein Hund rennt.", "Zwei Männer spielen Fußball."])
    assert status == 0
    # One line per sentence, in order (a tiny model's translation may be "").
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines


def test_serve_flags_are_the_server_config_fields_with_its_defaults(monkeypatch):
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    monkeypatch.delenv("TF_NUM_INTEROP_THREADS", raising=False)
    args = cli.parse_args(["serve"])
    fields = {field.name for field in dataclasses.fields(ServerConfig)}
    assert fields <= set(vars(args)), fields - set(vars(args))
    assert config_from_args(args) == ServerConfig()
    args = cli.parse_args(["serve", "--model", "a=/m/a", "--no-batching", "--no-warmup",
                           "--version-label", "a:stable=2", "--batch-timeout-ms", "7",
                           "--grace-seconds", "3", "--drain-seconds", "1"])
    assert config_from_args(args) == ServerConfig(
        models={"a": "/m/a"}, batching=False, warmup=False,
        version_labels={"a": {"stable": 2}}, batch_timeout_ms=7.0, grace_seconds=3.0,
        drain_seconds=1.0)
    with pytest.raises(ValueError, match="expected NAME=PATH"):
        config_from_args(cli.parse_args(["serve", "--model", "nameless"]))


def test_serve_thread_flags_default_to_tensorflows_environment_variables(monkeypatch, capsys):
    """Kubernetes sets TF_NUM_INTRAOP_THREADS/TF_NUM_INTEROP_THREADS from the
    pod's CPU limit (Downward API, serving/k8s/); a flag overrides them."""
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "2")
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", " 3 ")
    config = config_from_args(cli.parse_args(["serve"]))
    assert (config.tensorflow_intra_op_parallelism, config.tensorflow_inter_op_parallelism) == (2, 3)
    config = config_from_args(cli.parse_args(
        ["serve", "--tensorflow-intra-op-parallelism", "1", "--tensorflow_inter_op_parallelism=4"]))
    assert (config.tensorflow_intra_op_parallelism, config.tensorflow_inter_op_parallelism) == (1, 4)
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1500m")  # not rounded: refused
    with pytest.raises(SystemExit):
        cli.parse_args(["serve"])
    assert "--tensorflow-intra-op-parallelism" in capsys.readouterr().err


def test_export_flags_are_the_export_config_fields_with_its_defaults():
    args = cli.parse_args(["export", "runs/quick", "models"])
    assert configure(ExportConfig, args) == ExportConfig()
    args = cli.parse_args(["export", "runs/quick", "models", "--name", "de_en",
                           "--max-beam-size", "4", "--quantize", "int8"])
    assert configure(ExportConfig, args) == ExportConfig(model_name="de_en", max_beam_size=4,
                                                         quantize="int8")


def test_a_tensorflow_command_on_another_backend_runs_again_on_tensorflow(monkeypatch,
                                                                          capsys):
    import keras

    reruns = []
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(cli, "_rerun_on_tensorflow", lambda argv: reruns.append(argv) or 5)
    argv = ["export", "runs/none", "models"]
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert cli.main(argv) == 5 and reruns == [argv]
    # Already asked for TensorFlow (no rerun loop): one line, status 2.
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert cli.main(argv) == 2 and reruns == [argv]
    assert "needs the TensorFlow backend" in capsys.readouterr().err


def test_jax_compile_cache_is_on_by_default_in_the_user_cache_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    assert cli.compile_cache_dir() == tmp_path / "keras-rnn" / "jax"
    assert cli.parse_args(["translate", "run", "x"]).compile_cache is True
    assert cli.parse_args(["--no-compile-cache", "translate", "run", "x"]).compile_cache is False
    assert cli.parse_args(["--no-compile-cache", "train", "c.yaml"]).compile_cache is False
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
    assert cli.compile_cache_dir() == tmp_path / "mine"


@pytest.mark.skipif(cli.sys.modules.get("jax") is None, reason="JAX is not the backend")
def test_a_jax_command_keeps_its_compiled_programs_for_the_next_run(tmp_path):
    # In a process of its own: JAX sets its cache up once, at the first compilation.
    import os
    import subprocess
    import sys

    script = ("import keras_rnn\nfrom keras_rnn import cli\ncli.use_compile_cache()\n"
              "import jax\njax.jit(lambda x: x * 2 + 1)(jax.numpy.ones(3)).block_until_ready()\n")
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               KERAS_BACKEND="jax")
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    assert list((tmp_path / "keras-rnn" / "jax").iterdir())
