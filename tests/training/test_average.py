"""`keras-rnn average`: the mean of a tiny run's last K checkpoints.

The averaged weights are read back from the written `model.keras` with
h5py and compared with the NumPy mean of the checkpoints' own weight files,
so neither side goes through the code under test.
"""

import hashlib
import io
import shutil
import zipfile

import numpy as np
import pytest

from tests.support import MULTI30K, cli, h5_arrays, weights, write_config

pytestmark = pytest.mark.skipif(not MULTI30K.exists(), reason="no shared Multi30k copy")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run of one 6-step epoch with checkpoints at steps 2, 4 and 6."""
    tmp_path = tmp_path_factory.mktemp("runs")
    cli("train", write_config(tmp_path, "tiny", training={"epochs": 1}))
    return tmp_path / "tiny"


def checkpoint_names(run):
    return sorted(p.name for p in (run / "checkpoints").glob("step-*"))


def model_arrays(directory):
    """The weights in `directory/model.keras` (its `model.weights.h5`)."""
    with zipfile.ZipFile(directory / "model.keras") as archive:
        return h5_arrays(io.BytesIO(archive.read("model.weights.h5")))


def digest(directory):
    return {p.relative_to(directory): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_the_run_keeps_three_checkpoints(run):
    assert [name.split(".")[0] for name in checkpoint_names(run)] == [
        "step-00000002", "step-00000004", "step-00000006"]


def test_the_average_is_the_numpy_mean_of_the_last_k_checkpoints(run, tmp_path):
    own = {name: digest(run / name) for name in ("model", "checkpoints")}
    output = tmp_path / "averaged3"
    result = cli("average", run, "--last", "3", "--output", output)
    assert result.stdout.strip() == (
        f"averaged the last 3 checkpoint(s), steps 2, 4, 6, into {output}")

    checkpoints = [weights(run, name)[0] for name in checkpoint_names(run)]
    averaged = model_arrays(output)
    floats = [name for name, value in averaged.items() if value.dtype.kind == "f"]
    assert len(floats) >= 10 and set(averaged) <= set(checkpoints[-1])
    for name in floats:
        expected = np.mean([c[name] for c in checkpoints], axis=0)
        np.testing.assert_allclose(averaged[name], expected, rtol=1e-6, atol=1e-7,
                                   err_msg=name)
    assert not np.allclose(averaged[floats[0]], checkpoints[-1][floats[0]])  # not a copy
    for name in set(averaged) - set(floats):  # the sampling-step counter: the newest's
        np.testing.assert_array_equal(averaged[name], checkpoints[-1][name])

    assert sorted(p.name for p in output.iterdir()) == [
        "averaged.json", "config.yaml", "model.keras", "source.model", "target.model"]
    assert (output / "source.model").read_bytes() == (run / "tokenizer.de.model").read_bytes()
    assert own == {name: digest(run / name) for name in ("model", "checkpoints")}


def test_last_1_reproduces_the_newest_checkpoint_and_replaces_an_earlier_average(run, capsys):
    from keras_rnn.cli import main

    assert main(["average", run, "--last", "2"]) == 0  # the default output, RUN/averaged
    assert main(["average", run, "--last", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(
        f"steps 6, into {run / 'averaged'}")
    newest = weights(run)[0]
    averaged = model_arrays(run / "averaged")
    for name, value in averaged.items():
        np.testing.assert_array_equal(value, newest[name], err_msg=name)


def test_evaluate_and_translate_take_the_averaged_model(run, tmp_path, capsys):
    from keras_rnn.cli import main

    output = tmp_path / "averaged"
    assert main(["average", run, "--output", output]) == 0  # every checkpoint kept
    assert "steps 2, 4, 6," in capsys.readouterr().out
    assert main(["evaluate", output, "--split", "val", "--limit", "5",
                 "--beam-size", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("val: 5 sentences, beam 2") and "BLEU (cased)" in out
    assert (output / "bleu.val.json").exists() and (output / "translations.val.en").exists()
    assert not (run / "bleu.val.json").exists()
    assert main(["translate", output, "Ein Hund rennt."]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


@pytest.mark.parametrize("options, message", [
    (["--last", "4"], "--last 4: {checkpoints} holds only 3 complete checkpoint(s)"),
    (["--last", "0"], "--last 0: average at least 1 checkpoint."),
    (["--output", "{run}/model"], "that is the run's own model/"),
    (["--output", "{run}/checkpoints/x"], "that is the run's own checkpoints/"),
    (["--output", "{run}"], "that would replace the run directory itself"),
])
def test_bad_arguments_are_one_line_errors(run, options, message, capsys):
    from keras_rnn.cli import main

    own = digest(run / "model")
    options = [option.format(run=run) for option in options]
    assert main(["average", run, *options]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("keras-rnn average: error: ")
    assert message.format(checkpoints=run / "checkpoints") in err
    assert digest(run / "model") == own


def test_a_run_without_checkpoints_and_a_foreign_output_are_refused(run, tmp_path):
    from keras_rnn.training.average import average

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no complete checkpoint to average"):
        average(empty)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not an earlier `keras-rnn average`"):
        average(run, last=1, output=foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_checkpoints_of_different_models_are_refused(run, tmp_path):
    """A checkpoint of a wider model (as a resume with another `model.units`
    would write) cannot be averaged with the earlier ones."""
    from keras_rnn.training.average import average
    from keras_rnn.training.checkpoints import Checkpoints
    from keras_rnn.training.config import Config
    from keras_rnn.training.model import make_model
    from keras_rnn.training.tokenizer import Tokenizer

    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("averaged"))
    newest = copy / "checkpoints" / checkpoint_names(copy)[-1]
    config = Config.load(newest / "config.yaml", overrides=["model.units=48"])
    vocab = [Tokenizer(copy / f"tokenizer.{lang}.model").vocab_size for lang in ("de", "en")]
    Checkpoints(copy / "checkpoints", keep=20).save(
        make_model(config, *vocab), {"step": 7}, config)

    with pytest.raises(ValueError, match=r"step-00000006\S* and step-00000007 are "
                                         r"checkpoints of different models \(weight .*48"):
        average(copy, last=2)
    assert not (copy / "averaged").exists()
    assert average(copy, last=1)["steps"] == [7]
