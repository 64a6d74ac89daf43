""".keras files move between the three backends: models trained on this
one load on each other one (in a subprocess, since Keras picks its backend
once per process) with the same outputs, beam and greedy decodings."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import keras

import keras_rnn
from tests.support import ROOT

BACKEND = keras.backend.backend()
OTHERS = [b for b in ("tensorflow", "jax", "torch") if b != BACKEND]

SOURCE = np.array([[3, 4, 5, 6, 0], [7, 8, 0, 0, 0], [4, 4, 4, 4, 4]])
TARGET_IN = np.array([[1, 5, 6, 7], [1, 9, 10, 0], [1, 3, 0, 0]])
TARGET_OUT = np.array([[5, 6, 7, 2], [9, 10, 2, 0], [3, 2, 0, 0]])
INPUTS = {"source": SOURCE, "target": TARGET_IN}

# Both configurations: a layer-normalized LSTM with zoneout (keras_rnn's own
# loop) and a plain GRU (whose encoder takes Keras's backend kernel).
MODELS = {
    "lstm_ln_zoneout": dict(cell="lstm", cell_options={"layer_norm": True, "zoneout": 0.1}),
    "gru": dict(cell="gru", attention="luong"),
}


def results(directory):
    """The saved models' logits on `INPUTS`, beam and greedy decodings, on
    this process's backend."""
    out = {}
    for name in MODELS:
        model = keras.saving.load_model(directory / f"{name}.keras")
        out[f"{name}/logits"] = keras.ops.convert_to_numpy(model(INPUTS))
        for method in ("beam", "greedy"):
            decoded = model.decode(SOURCE, method=method)
            for field in ("ids", "scores", "lengths"):
                out[f"{name}/{method}/{field}"] = getattr(decoded, field)
    return out


# `results` in a process on another backend.
ON_ANOTHER_BACKEND = """
import sys
from pathlib import Path

import numpy as np

from tests.keras_rnn.test_backends import results

np.savez(sys.argv[2], **results(Path(sys.argv[1])))
"""


@pytest.fixture(scope="module")
def trained_here(tmp_path_factory):
    """The models trained (3 Adam steps) and saved on this backend, with
    their results computed here from the saved files."""
    directory = tmp_path_factory.mktemp("trained")
    for name, options in MODELS.items():
        keras.utils.set_random_seed(0)
        model = keras_rnn.Seq2Seq(11, 13, embedding_dim=6, units=8, encoder_units=5,
                                  # (min_length: hypotheses of a few tokens
                                  # even from a barely trained model.)
                                  decoding=dict(beam_size=3, n_best=2, max_length=6,
                                                min_length=3),
                                  **options)
        model.compile(keras.optimizers.Adam(1e-2), keras_rnn.SequenceLoss())
        model.fit(INPUTS, TARGET_OUT, epochs=3, verbose=0)
        model.save(directory / f"{name}.keras")
    return directory, results(directory)


@pytest.mark.parametrize("other", OTHERS)
def test_models_trained_here_load_on_another_backend_with_the_same_results(
        trained_here, other):
    if importlib.util.find_spec(other) is None:
        pytest.skip(f"{other} is not installed")
    directory, expected = trained_here
    env = {**os.environ, "KERAS_BACKEND": other, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", ON_ANOTHER_BACKEND, str(directory),
                    str(directory / f"{other}.npz")],
                   env=env, cwd=ROOT, check=True, timeout=600)
    got = dict(np.load(directory / f"{other}.npz"))
    assert got.keys() == expected.keys()
    for key in expected:
        if key.endswith(("logits", "scores")):
            np.testing.assert_allclose(got[key], expected[key], atol=1e-5, err_msg=key)
        else:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
