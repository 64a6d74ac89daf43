"""`keras-rnn average RUN`: the mean of a run's last K checkpoints, as a model.

    keras-rnn average runs/quick --last 2           # writes runs/quick/averaged/
    keras-rnn evaluate runs/quick/averaged --split val
    keras-rnn export runs/quick/averaged models --name quick-averaged

Checkpoint averaging (Junczys-Dowmunt, Dwojak and Hoang 2016, "Is Neural
Machine Translation Ready for Deployment?"; Vaswani et al. 2017, "Attention
Is All You Need", section 6.1) replaces every weight by its element-wise
mean over the K newest checkpoints of one run:

    θ̄ = (1/K) Σ_{k=1..K} θ_{T_k}

where T_1 < ... < T_K are the steps of the K newest complete checkpoints.
Means are taken in float64 and stored in the weight's own dtype. Integer
weights (the scheduled-sampling step counter) are counters, not parameters:
they keep the newest checkpoint's value. The optimizer's moments, which the
checkpoints also hold, are not part of the result.

The result is a model directory laid out like a run's `model/` (the best
model): `model.keras`, `source.model`, `target.model` (the run's
tokenizers), `config.yaml` (the newest averaged checkpoint's), and
`averaged.json` naming the checkpoints it averages. `evaluate`,
`translate` and `export` take it in place of a run directory. It is written
to a temporary directory and renamed into place; the run's `model/` and
`checkpoints/` are only read, and an existing output directory is replaced
only when it is an earlier average.
"""

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

from keras_rnn.training.checkpoints import Checkpoints
from keras_rnn.training.config import Config

# The file that marks a directory as `keras-rnn average`'s output.
RECORD = "averaged.json"


def checkpoints_to_average(run_dir, last=None):
    """The `last` newest complete checkpoints of a run, oldest first.

    Args:
        run_dir: the run directory (holding `checkpoints/`).
        last: how many (default: every checkpoint the run kept).

    Raises:
        FileNotFoundError: the run has no complete checkpoint.
        ValueError: `last` is below 1 or above the number of checkpoints.
    """
    directory = Path(run_dir) / "checkpoints"
    found = Checkpoints(directory).complete()
    if not found:
        raise FileNotFoundError(f"{directory}: no complete checkpoint to average.")
    last = len(found) if last is None else last
    if last < 1:
        raise ValueError(f"--last {last}: average at least 1 checkpoint.")
    if last > len(found):
        raise ValueError(
            f"--last {last}: {directory} holds only {len(found)} complete checkpoint(s) "
            f"({', '.join(p.name for p in found)}); training.keep_checkpoints sets how "
            "many a run keeps.")
    return found[-last:]


def average(run_dir, last=None, output=None):
    """Writes the mean of the run's `last` newest checkpoints as a model directory.

    Args:
        run_dir: the run directory.
        last: how many checkpoints (default: all the run kept).
        output: the model directory to write (default `<run>/averaged`).

    Returns:
        dict: `output` (the directory written) and what its `averaged.json`
        holds: `run` (absolute path), `last` (K), `checkpoints` (directory
        names, oldest first) and their `steps`.

    Raises:
        FileNotFoundError: no checkpoint, or no tokenizer in the run.
        FileExistsError: `output` exists and is not an earlier average.
        ValueError: a bad `last`, an `output` inside the run's own `model/`
            or `checkpoints/`, or checkpoints of differently shaped models.
    """
    run_dir = Path(run_dir)
    output = Path(output) if output is not None else run_dir / "averaged"
    _check_output(run_dir, output)
    paths = checkpoints_to_average(run_dir, last)
    newest = Config.load(paths[-1] / "config.yaml")
    tokenizers = _tokenizers(run_dir, newest)

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(newest.training.precision)  # as the run's best model
    try:
        model = _load(paths[-1], tokenizers)
        total = [np.zeros(v.shape, np.float64) for v in model.weights]
        for path in paths:
            checkpoint = model if path == paths[-1] else _load(path, tokenizers)
            if _shapes(checkpoint) != _shapes(model):
                raise ValueError(_mismatch(path, paths[-1], checkpoint, model))
            for sum_, weight in zip(total, checkpoint.weights):
                sum_ += np.asarray(keras.ops.convert_to_numpy(weight), np.float64)
        for sum_, weight in zip(total, model.weights):
            if keras.backend.is_float_dtype(weight.dtype):  # counters stay the newest's
                weight.assign(sum_ / len(paths))  # cast to the weight's dtype
    finally:
        keras.config.set_dtype_policy(previous)

    record = {"run": str(run_dir.resolve()), "last": len(paths),
              "checkpoints": [p.name for p in paths],
              "steps": [json.loads((p / "state.json").read_text())["step"] for p in paths]}
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".tmp-{output.name}-", dir=output.parent))
    try:
        model.save(temporary / "model.keras")
        for name, path in tokenizers.items():
            shutil.copy(path, temporary / f"{name}.model")
        newest.save(temporary / "config.yaml")
        (temporary / RECORD).write_text(json.dumps(record, indent=1) + "\n")
        os.chmod(temporary, 0o755)  # mkdtemp makes it 0700
        _replace(temporary, output)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return {"output": str(output), **record}


def _check_output(run_dir, output):
    """Refuses an output that would overwrite the run's own model or checkpoints."""
    resolved = output.resolve()
    for own in ("model", "checkpoints"):
        protected = (run_dir / own).resolve()
        if resolved == protected or protected in resolved.parents:
            raise ValueError(f"--output {output}: that is the run's own {own}/; "
                             "give another directory (default <run>/averaged).")
    if resolved == run_dir.resolve() or resolved in run_dir.resolve().parents:
        raise ValueError(f"--output {output}: that would replace the run directory itself.")
    if output.exists() and not (output / RECORD).exists() and (
            not output.is_dir() or any(output.iterdir())):
        raise FileExistsError(f"--output {output}: exists and is not an earlier "
                              f"`keras-rnn average` (no {RECORD}); give another directory.")


def _tokenizers(run_dir, config):
    """The run's SentencePiece models: {"source": path, "target": path}."""
    from keras_rnn.training.train import tokenizer_path

    here = dataclasses.replace(config, output_dir=str(run_dir))  # a copied run reads its own
    paths = {"source": tokenizer_path(here, config.data.source_lang),
             "target": tokenizer_path(here, config.data.target_lang)}
    for path in paths.values():
        if not path.exists():
            raise FileNotFoundError(f"{path}: the run's tokenizer is missing.")
    return paths


def _load(path, tokenizers):
    """The model of checkpoint `path`'s config, holding the checkpoint's weights."""
    from keras_rnn.training.model import make_model
    from keras_rnn.training.tokenizer import Tokenizer

    config = Config.load(path / "config.yaml")
    model = make_model(config, Tokenizer(tokenizers["source"]).vocab_size,
                       Tokenizer(tokenizers["target"]).vocab_size)
    try:
        model.load_weights(path / "model.weights.h5")
    except ValueError as error:
        first = (str(error).strip().splitlines() or [repr(error)])[0]
        raise ValueError(f"{path}: its weights do not fit the model of its config.yaml "
                         f"({first})") from error
    return model


def _shapes(model):
    """The weights' shapes, in the weights-file order."""
    return [tuple(w.shape) for w in model.weights]


def _mismatch(path, newest, model, reference):
    """The one-line error for checkpoints of differently shaped models."""
    if len(model.weights) != len(reference.weights):
        detail = f"{len(model.weights)} weights vs {len(reference.weights)}"
    else:
        detail = next(f"weight {b.path.split('/', 1)[-1]}: {tuple(a.shape)} vs {tuple(b.shape)}"
                      for a, b in zip(model.weights, reference.weights) if a.shape != b.shape)
    return (f"{path.name} and {newest.name} are checkpoints of different models ({detail}); "
            "they cannot be averaged (average fewer with --last).")


def _replace(temporary, output):
    """Moves `temporary` to `output`, replacing an earlier average there."""
    if output.exists():
        old = output.with_name(f".old-{output.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(output, old)
        os.replace(temporary, output)
        shutil.rmtree(old)
    else:
        os.replace(temporary, output)
