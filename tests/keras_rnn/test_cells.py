"""Numerical parity: NumPy reference, Keras built-ins, fused vs step loop."""

import functools

import keras
from keras import ops
import numpy as np
import pytest

import keras_rnn
from tests import reference
from tests.conftest import gradients
from tests.conftest import numeric_gradients
from tests.conftest import randomize_weights


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


BATCH, TIME, FEATURES, UNITS = 2, 5, 3, 4

# name -> (sequence layer, cell class, kwargs, NumPy reference)
CASES = {
    "simple": (keras_rnn.SimpleRNN, keras_rnn.SimpleRNNCell, {},
               reference.simple_rnn),
    "simple_ln": (keras_rnn.SimpleRNN, keras_rnn.SimpleRNNCell,
                  {"layer_norm": True},
                  functools.partial(reference.simple_rnn, layer_norm_on=True)),
    "simple_zoneout": (keras_rnn.SimpleRNN, keras_rnn.SimpleRNNCell,
                       {"zoneout": 0.3},
                       functools.partial(reference.simple_rnn, zoneout_rate=0.3)),
    "lstm": (keras_rnn.LSTM, keras_rnn.LSTMCell, {}, reference.lstm),
    "lstm_ln": (keras_rnn.LSTM, keras_rnn.LSTMCell, {"layer_norm": True},
                functools.partial(reference.lstm, layer_norm_on=True)),
    "lstm_peephole": (keras_rnn.LSTM, keras_rnn.LSTMCell, {"peephole": True},
                      functools.partial(reference.lstm, peephole=True)),
    "lstm_ln_peephole_eps": (
        keras_rnn.LSTM, keras_rnn.LSTMCell,
        {"layer_norm": True, "peephole": True, "norm_epsilon": 1e-2},
        functools.partial(reference.lstm, layer_norm_on=True, peephole=True,
                          eps=1e-2)),
    "lstm_zoneout": (keras_rnn.LSTM, keras_rnn.LSTMCell,
                     {"zoneout": 0.2, "zoneout_cell": 0.6},
                     functools.partial(reference.lstm, zoneout_h=0.2,
                                       zoneout_c=0.6)),
    "gru": (keras_rnn.GRU, keras_rnn.GRUCell, {}, reference.gru),
    "gru_before": (keras_rnn.GRU, keras_rnn.GRUCell, {"reset_after": False},
                   functools.partial(reference.gru, reset_after=False)),
    "gru_ln": (keras_rnn.GRU, keras_rnn.GRUCell, {"layer_norm": True},
               functools.partial(reference.gru, layer_norm_on=True)),
    "gru_ln_before": (keras_rnn.GRU, keras_rnn.GRUCell,
                      {"layer_norm": True, "reset_after": False},
                      functools.partial(reference.gru, layer_norm_on=True,
                                        reset_after=False)),
    "gru_zoneout": (keras_rnn.GRU, keras_rnn.GRUCell, {"zoneout": 0.4},
                    functools.partial(reference.gru, zoneout_rate=0.4)),
}


def make_layer(case, fused):
    layer_cls, cell_cls, kwargs, _ = CASES[case]
    if fused:
        layer = layer_cls(UNITS, return_sequences=True, use_cudnn=False,
                          **kwargs)
    else:
        layer = keras.layers.RNN(cell_cls(UNITS, **kwargs),
                                 return_sequences=True)
    layer.build((None, TIME, FEATURES))
    return layer


def inputs(seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, TIME, FEATURES))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "cell"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_and_gradients_match_numpy_reference(case, fused):
    ref = CASES[case][3]
    layer = make_layer(case, fused)
    weights = randomize_weights(layer)
    x = inputs()
    expected, _ = ref(x, weights)
    got = _np(layer(x.astype("float32")))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)

    probe = np.random.default_rng(2).normal(size=expected.shape)
    expected_grads = numeric_gradients(
        lambda w: float((ref(x, w)[0] * probe).sum()), weights
    )
    got_grads = gradients(layer, x.astype("float32"),
                          probe.astype("float32"))
    assert got_grads.keys() == expected_grads.keys()
    for key in expected_grads:
        np.testing.assert_allclose(
            got_grads[key], expected_grads[key], atol=2e-4, rtol=2e-3,
            err_msg=f"gradient of {key}",
        )


def test_final_states_match_reference_with_initial_state():
    layer = keras_rnn.LSTM(UNITS, layer_norm=True, peephole=True,
                           return_state=True, use_cudnn=False)
    layer.build((None, TIME, FEATURES))
    weights = randomize_weights(layer)
    rng = np.random.default_rng(3)
    h0, c0 = rng.normal(size=(2, BATCH, UNITS))
    x = inputs()
    outputs, (h, c) = reference.lstm(x, weights, layer_norm_on=True,
                                     peephole=True, h0=h0, c0=c0)
    last, got_h, got_c = layer(x.astype("float32"),
                               initial_state=[h0.astype("float32"),
                                              c0.astype("float32")])
    np.testing.assert_allclose(_np(last), outputs[:, -1], atol=1e-5)
    np.testing.assert_allclose(_np(got_h), h, atol=1e-5)
    np.testing.assert_allclose(_np(got_c), c, atol=1e-5)


KERAS_TWINS = [
    ("SimpleRNN", keras_rnn.SimpleRNN, keras.layers.SimpleRNN, {}),
    ("LSTM", keras_rnn.LSTM, keras.layers.LSTM, {}),
    ("GRU", keras_rnn.GRU, keras.layers.GRU, {}),
    ("GRU_before", keras_rnn.GRU, keras.layers.GRU, {"reset_after": False}),
    ("LSTM_nobias", keras_rnn.LSTM, keras.layers.LSTM, {"use_bias": False}),
]


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize(
    "ours,theirs,kwargs", [t[1:] for t in KERAS_TWINS],
    ids=[t[0] for t in KERAS_TWINS],
)
def test_identical_to_keras_layer_with_same_weights(ours, theirs, kwargs,
                                                    go_backwards):
    x = inputs(4).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=bool)
    common = dict(return_sequences=True, return_state=True,
                  go_backwards=go_backwards, **kwargs)
    mine = ours(UNITS, use_cudnn=False, **common)
    keras_layer = theirs(UNITS, **common)
    mine.build(x.shape)
    keras_layer.build(x.shape)
    randomize_weights(mine, seed=5)
    assert [w.shape for w in mine.weights] == [
        w.shape for w in keras_layer.weights]
    keras_layer.set_weights(mine.get_weights())
    for call_mask in (None, mask):
        got = mine(x, mask=call_mask)
        expected = keras_layer(x, mask=call_mask)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(_np(a), _np(b), atol=1e-5)


@pytest.mark.parametrize("case", ["lstm_ln", "lstm_peephole", "gru_ln_before",
                                  "simple_ln", "lstm_zoneout"])
def test_fused_layer_equals_step_by_step_cell_loop(case):
    layer = make_layer(case, fused=True)
    randomize_weights(layer, seed=6)
    x = inputs(7).astype("float32")
    fused = _np(layer(x))
    cell = layer.cell
    states = cell.get_initial_state(BATCH)
    for t in range(TIME):
        out, states = cell(x[:, t], states)
        # (rtol: float32 rounding of the whole-sequence vs one-step matmul
        # differs by a few ulps under TensorFlow's oneDNN kernels.)
        np.testing.assert_allclose(fused[:, t], _np(out), atol=1e-6, rtol=1e-5)


def test_fused_equals_step_loop_in_training_with_dropout_masks():
    """With the same variational masks, the hoisted projection and the
    readable step agree in training too."""
    # (seed 4: on all three backends both masks drop some units and keep
    # others, which the last assertion checks.)
    layer = keras_rnn.LSTM(UNITS, layer_norm=True, dropout=0.5,
                           recurrent_dropout=0.5, return_sequences=True,
                           seed=4)
    layer.build((None, TIME, FEATURES))
    randomize_weights(layer, seed=8)
    cell = layer.cell
    x = inputs(9).astype("float32")
    h0 = np.zeros((BATCH, UNITS), "float32")
    input_mask = _np(cell.get_dropout_mask(x[:, 0]))
    recurrent_mask = _np(cell.get_recurrent_dropout_mask(h0))
    fused = _np(layer(x, training=True))  # uses the cached masks
    assert cell._dropout_mask is None  # reset after the sequence

    cell._dropout_mask = ops.convert_to_tensor(input_mask)
    cell._recurrent_dropout_mask = ops.convert_to_tensor(recurrent_mask)
    states = [h0, h0]
    for t in range(TIME):
        out, states = cell(x[:, t], states, training=True)
        np.testing.assert_allclose(fused[:, t], _np(out), atol=1e-6)
    cell.reset_dropout_mask()
    cell.reset_recurrent_dropout_mask()
    assert 0.0 in input_mask and 2.0 in input_mask
