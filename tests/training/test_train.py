"""End to end: `keras-rnn train` / `evaluate` / `plot` on a tiny translator.

The runs train on Multi30k's validation split (1,014 pairs, read in place)
with a tiny model, in subprocesses: every run starts from a fresh Keras
(dtype policy, seeds, logical devices), as a user's command does.
"""

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.support import BACKEND, MULTI30K, ROOT, cli, weights, write_config

pytestmark = pytest.mark.skipif(not MULTI30K.exists(), reason="no shared Multi30k copy")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An uninterrupted tiny run: 2 epochs of 6 steps."""
    tmp_path = tmp_path_factory.mktemp("runs")
    result = cli("train", write_config(tmp_path, "full"))
    return tmp_path / "full", result.stdout


# The tiny run's losses, recorded per backend (TensorFlow without XLA, JAX
# with it, as TINY configures them): a change to the model, the data or the
# training arithmetic that moves them fails here. Recorded at this commit:
# TensorFlow 5.7023 ... 4.9969 (train, steps 2 and 12), val 4.9717; JAX
# 5.6998 ... 4.9710, val 5.0396; PyTorch (eager) 5.7017 ... 5.0037, val
# 5.0254. The bands are a few hundredths wide: float noise across
# machines is ~1e-5; a broken step (no update, a wrong sign, a lost mask)
# moves them by tenths.
LOSS_BANDS = {
    "tensorflow": {"first": (5.68, 5.72), "last": (4.96, 5.04), "val": (4.94, 5.01)},
    "jax": {"first": (5.68, 5.72), "last": (4.96, 5.04), "val": (5.00, 5.08)},
    "torch": {"first": (5.68, 5.72), "last": (4.96, 5.04), "val": (4.99, 5.06)},
}


def test_the_tiny_runs_losses_stay_in_their_recorded_band(trained):
    run, _ = trained
    records = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["kind"] == "train"]
    val = [r["val_loss"] for r in records if r["kind"] == "epoch"][-1]
    band = LOSS_BANDS[BACKEND]
    for name, value in (("first", train[0]), ("last", train[-1]), ("val", val)):
        low, high = band[name]
        assert low <= value <= high, (f"{BACKEND}: the tiny run's {name} loss {value:.5f} left "
                                      f"its recorded band [{low}, {high}] (train {train}, "
                                      f"val {val})")


def test_training_run_writes_everything(trained):
    run, stdout = trained
    assert "Finished at step 12" in stdout
    for name in ("config.yaml", "tokenizer.de.model", "tokenizer.en.model",
                 "history.jsonl", "model/model.keras", "model/source.model",
                 "model/target.model", "model/config.yaml"):
        assert (run / name).exists(), name
    assert list((run / "logs").iterdir())  # TensorBoard event files
    records = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and [r["step"] for r in epochs] == [6, 12]
    assert all(np.isfinite(r["val_loss"]) for r in epochs)
    assert all(0 <= r["val_bleu"] <= 100 for r in epochs)
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [2, 4, 6, 8, 10, 12]
    assert all(r["tokens_per_second"] > 0 for r in train)
    # Without a terminal (no progress bar) each window is also a console line.
    windows = [line for line in stdout.splitlines() if "tokens_per_second=" in line]
    assert [line.split()[0] for line in windows] == [f"step={r['step']}" for r in train]
    # Warm-up: lr = 0.01 * (step + 1) / 4 until step 3, then flat.
    assert train[0]["learning_rate"] == pytest.approx(0.01 * 3 / 4)
    assert train[2]["learning_rate"] == pytest.approx(0.01)
    # The loss goes down from its start (log 300 = 5.7 with smoothing).
    assert train[-1]["loss"] < train[0]["loss"]
    _, state = weights(run)
    assert state["step"] == 12 and state["epoch"] == 2 and state["finished"]
    # Running the finished command again trains nothing more.
    again = cli("train", run.parent / "full.yaml")
    assert "Resuming from" in again.stdout and weights(run)[1]["step"] == 12


def test_resume_after_kill_matches_uninterrupted_run(trained, tmp_path):
    """kill -9 in the middle of epoch 2, run again: same steps and weights.

    On JAX the interrupted run reads its batches through the plain-Python
    pipeline (what a machine without TensorFlow uses), the uninterrupted one
    through `tf.data`: the two must agree as well.
    """
    full, _ = trained
    pipeline = "python" if BACKEND == "jax" else "tf"
    config = write_config(tmp_path, "killed", training={"data_pipeline": pipeline})
    run = tmp_path / "killed"
    process = cli("train", config, wait=False)
    # Wait for the checkpoint of step 8 (epoch 2, step 2 of 6), then kill.
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        latest = run / "checkpoints" / "latest"
        if latest.exists() and latest.read_text().strip() >= "step-00000008":
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = weights(run)[1]["step"]
    assert 8 <= killed_at < 12, killed_at
    result = cli("train", config)
    assert f"Resuming from {run / 'checkpoints'}" in result.stdout
    expected, expected_state = weights(full)
    actual, state = weights(run)
    assert state["step"] == expected_state["step"] == 12
    assert state["best_val_loss"] == pytest.approx(expected_state["best_val_loss"], rel=1e-6)
    assert set(actual) == set(expected)
    for name in expected:  # model weights and optimizer moments
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def test_bad_data_names_file_and_line_and_keeps_the_run(trained, tmp_path):
    full, _ = trained
    before = weights(full)[0]
    data = tmp_path / "data"
    data.mkdir()
    for split in ("val", "test_2016_flickr"):
        for lang in ("de", "en"):
            lines = (MULTI30K / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            if split == "val" and lang == "en":
                lines[41] = "   "
            (data / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = yaml.safe_load((full.parent / "full.yaml").read_text())
    config["data"]["dir"] = str(data)
    config["training"]["epochs"] = 4
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("train", path, check=False)
    assert result.returncode == 2
    assert f"{data / 'val.en'}" in result.stderr and "line 42 is empty" in result.stderr
    # The trained run is untouched.
    after = weights(full)[0]
    assert all(np.array_equal(after[k], before[k]) for k in before)
    (data / "val.en").write_bytes(b"ok\n" * 5 + b"caf\xe9\n")
    result = cli("train", path, check=False)
    assert result.returncode == 2 and "line 6 is not valid UTF-8" in result.stderr
    if BACKEND == "tensorflow":  # a pipeline this backend cannot run, named up front
        result = cli("train", path, "--set", "training.data_pipeline=python", check=False)
        assert result.returncode == 2 and "data_pipeline=python" in result.stderr


def test_evaluate_writes_translations_and_sacrebleu_scores(trained, tmp_path):
    import sacrebleu

    run, _ = trained
    output = tmp_path / "out.txt"
    result = cli("evaluate", run, "--limit", "40", "--output", output)
    assert "BLEU (cased)" in result.stdout and "nrefs:1|case:mixed|eff:no|tok:13a" in result.stdout
    hypotheses = output.read_text(encoding="utf-8").splitlines()
    assert len(hypotheses) == 40
    references = (MULTI30K / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()[:40]
    scores = json.loads((run / "bleu.test_2016_flickr.json").read_text())
    assert scores["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(hypotheses, [references]).score, abs=0.01)
    assert scores["bleu_lowercased"] == pytest.approx(
        sacrebleu.corpus_bleu(hypotheses, [references], lowercase=True).score, abs=0.01)
    assert scores["beam_size"] == 3 and scores["sentences"] == 40


def test_plot_writes_curves_and_attention_maps(trained):
    run, _ = trained
    result = cli("plot", run, "--index", "0", "3", "--sentence", "Ein Hund.")
    paths = [Path(line) for line in result.stdout.split()]
    assert [p.name for p in paths] == ["history.png", "attention_0.png", "attention_1.png",
                                      "attention_2.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_translate_command_matches_evaluate(trained, tmp_path):
    """`translate` (arguments or stdin lines) gives evaluate's beam translations."""
    run, _ = trained
    output = tmp_path / "five.txt"
    cli("evaluate", run, "--limit", "5", "--output", output)
    expected = output.read_text(encoding="utf-8").split("\n")[:5]
    sources = (MULTI30K / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:5]
    from_arguments = cli("translate", run, *sources).stdout
    assert from_arguments.split("\n")[:5] == expected
    from_stdin = cli("translate", run, input="\n".join(sources) + "\n").stdout
    assert from_stdin == from_arguments


def losses_single_and_distributed(tmp_path, distribution, env=None):
    """Per-step training losses of one device and of `distribution` on two."""
    losses = {}
    for name in ("none", distribution):
        config = write_config(tmp_path, name, training={
            "distribution": name, "epochs": 1, "steps_per_epoch": 8, "log_every": 1,
            "validation_bleu": False, "logical_cpus": 2, "batch_multiple": 2},
            model={"embedding_dropout": 0.0, "output_dropout": 0.0})
        result = cli("train", config, env=env)
        assert f"{1 if name == 'none' else 2} replica(s)" in result.stdout
        records = [json.loads(line)
                   for line in (tmp_path / name / "history.jsonl").read_text().splitlines()]
        losses[name] = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses[distribution]) == 8
    return losses["none"], losses[distribution]


@pytest.mark.skipif(BACKEND != "tensorflow", reason="MirroredStrategy is TensorFlow's")
def test_mirrored_strategy_on_two_cpus_matches_single_device(tmp_path):
    single, mirrored = losses_single_and_distributed(tmp_path, "mirrored")
    # Each replica divides by the global token count: the same global mean
    # (up to float summation order), also for batches whose padding rows
    # all land on one replica.
    np.testing.assert_allclose(mirrored, single, rtol=0.02)


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution.DataParallel is JAX's")
def test_data_parallel_on_two_cpu_devices_matches_single_device(tmp_path):
    single, parallel = losses_single_and_distributed(
        tmp_path, "data_parallel", env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    # One program over both devices: the same global token mean.
    np.testing.assert_allclose(parallel, single, rtol=1e-4)


def own_lines(stderr):
    """stderr without TensorFlow's and XLA's start-up log lines."""
    return [line for line in stderr.strip().splitlines()
            if line and not line.startswith(("I0000", "W0000", "E0000", "WARNING: All log"))]


def history(run_dir):
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


# The checkpoint-file mechanics (each kill moment, Ctrl-C) are the same code on
# every backend: TensorFlow and JAX run them; the torch half relies on
# test_resume_after_kill_matches_uninterrupted_run for its own resume.
_NOT_ON_TORCH = pytest.mark.skipif(BACKEND == "torch", reason="checkpoint mechanics: "
                                   "tested on TensorFlow and JAX")


@_NOT_ON_TORCH
def test_resume_is_exact_through_a_kill_at_every_moment(trained, tmp_path):
    """Kills (SIGKILL through the `training.faults` hook, no timing) at each
    moment of a save and of a validation, a full disk, and a `latest` naming
    a missing directory; each rerun resumes. The run ends with the
    uninterrupted run's weights, best model, state and logged losses."""
    full, _ = trained
    config = write_config(tmp_path, "faults")
    run = tmp_path / "faults"

    def killed_at(fault):
        result = cli("train", config, env={"KERAS_RNN_FAULT": fault}, check=False)
        assert result.returncode == -signal.SIGKILL, (fault, result.stdout, result.stderr)
        return result

    # In the save of step 4: the new directory renamed in, `latest` not yet
    # updated: the rerun resumes from step 2, inside epoch 1.
    killed_at("checkpoint.renamed@4")
    assert (run / "checkpoints" / "latest").read_text() == "step-00000002"
    # During the validation of epoch 1 (its steps are in the checkpoint of step 6).
    result = killed_at("validation@6")
    assert "Resuming from" in result.stdout and "(step 2, epoch 0)" in result.stdout
    state = weights(run)[1]
    assert (state["step"], state["epoch"], state["phase"]) == (6, 0, "validate")
    # Resumed into that validation; killed again after the best model is saved.
    result = killed_at("validation.best@6")
    assert "Validating epoch 1" in result.stdout
    # A full disk while saving step 8: one line, no traceback, resumable.
    result = cli("train", config, env={"KERAS_RNN_FAULT": "checkpoint.write@8:enospc"},
                 check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = own_lines(result.stderr)
    assert len(lines) == 1 and "no space left on device" in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    latest = (run / "checkpoints" / "latest").read_text()
    assert latest.startswith("step-00000006") and latest in lines[0]
    assert not list((run / "checkpoints").glob(".tmp-*"))
    # `latest` naming a missing directory (what an older version could leave):
    # the rerun falls back to the newest complete checkpoint. Killed during the
    # last epoch's validation BLEU.
    (run / "checkpoints" / "latest").write_text("step-00000011")
    result = killed_at("validation.bleu@12")
    assert "names step-00000011, which is missing" in result.stdout
    assert f"Resuming from {run / 'checkpoints' / latest}" in result.stdout
    result = cli("train", config)
    assert "Validating epoch 2" in result.stdout and "Finished at step 12" in result.stdout

    expected, expected_state = weights(full)
    actual, state = weights(run)
    for key in ("step", "epoch", "best_step", "wait", "plateau_wait", "finished", "lr_scale"):
        assert state[key] == expected_state[key], key
    assert state["best_val_loss"] == pytest.approx(expected_state["best_val_loss"], rel=1e-6)
    assert set(actual) == set(expected)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    best = json.loads((run / "model" / "best.json").read_text())
    assert best == pytest.approx(json.loads((full / "model" / "best.json").read_text()))
    # The same records, and the same losses, as the uninterrupted run.
    ours, theirs = history(run), history(full)
    assert [(r["kind"], r["step"]) for r in ours] == [(r["kind"], r["step"]) for r in theirs]
    for a, b in zip(ours, theirs):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (a, b)
        if a["kind"] == "epoch":
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
            assert a["val_bleu"] == pytest.approx(b["val_bleu"], abs=1e-6)


@_NOT_ON_TORCH
def test_ctrl_c_checkpoints_then_resumes_and_more_epochs_continue_the_run(trained, tmp_path):
    """Ctrl-C (SIGINT sent at step 3 through the `training.faults` hook):
    a checkpoint at step 3, one line, no traceback; the rerun ends with the
    uninterrupted run's weights; raising training.epochs continues the
    finished run. The config names its data relative to its own directory,
    and evaluate/plot work from another working directory."""
    full, _ = trained
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "corpus").symlink_to(MULTI30K)
    config = write_config(configs, "ctrl_c", data={"dir": "corpus"})  # not in the cwd
    run = configs / "ctrl_c"
    result = cli("train", config, env={"KERAS_RNN_FAULT": "step@3:sigint"}, check=False)
    assert result.returncode == 130, result.stdout + result.stderr
    lines = own_lines(result.stderr)
    assert len(lines) == 1 and "interrupted at step 3" in lines[0], result.stderr
    assert "step-00000003" in lines[0] and "Traceback" not in result.stdout
    assert weights(run)[1]["step"] == 3
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["dir"] == str((configs / "corpus").resolve())

    result = cli("train", config)
    assert "(step 3, epoch 0)" in result.stdout and "Finished at step 12" in result.stdout
    expected, _ = weights(full)
    actual, _ = weights(run)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)

    result = cli("train", config, "--set", "training.epochs=3")
    assert "Continuing the finished run: training.epochs is now 3" in result.stdout
    assert "Finished at step 18" in result.stdout
    assert [r["epoch"] for r in history(run) if r["kind"] == "epoch"] == [1, 2, 3]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli("evaluate", run, "--limit", "4", "--beam-size", "2", cwd=elsewhere)
    assert "BLEU (cased)" in result.stdout
    result = cli("plot", run, "--index", "0", cwd=elsewhere)
    assert result.stdout.split()[-1].endswith("attention_0.png")


def test_shipped_configs_find_their_data_from_any_directory(tmp_path, monkeypatch):
    from keras_rnn.training.config import Config

    monkeypatch.chdir(tmp_path)
    for name in ("quick", "multi30k_de_en", "multi30k_en_de"):
        config = Config.load(ROOT / "training" / "configs" / f"{name}.yaml")
        assert Path(config.data.dir) == MULTI30K.resolve(), name
        assert config.training.bucket_width == ("auto" if name != "quick" else 4)
        config = Config.load(ROOT / "training" / "configs" / f"{name}.yaml",
                             overrides=["data.dir=here"])
        assert config.data.dir == str(tmp_path / "here")  # an override: the working directory


def test_an_over_long_validation_line_is_named_before_anything_is_written(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("val", "test_2016_flickr"):
        for lang in ("de", "en"):
            lines = (MULTI30K / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            if split == "test_2016_flickr" and lang == "en":
                lines[2] = " ".join(["A dog runs through the snow."] * 80)
            (data / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = write_config(tmp_path, "long", data={"dir": str(data)})
    result = cli("train", config, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = own_lines(result.stderr)
    assert len(lines) == 1 and f"{data / 'test_2016_flickr.en'}: line 3 is" in lines[0], lines
    assert "training.max_tokens=384" in lines[0]
    assert not (tmp_path / "long").exists()  # not even the tokenizers or config.yaml
