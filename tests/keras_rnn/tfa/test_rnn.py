"""The TF Addons cells against NumPy transcriptions of TF Addons' code.

TF Addons cannot be installed beside TensorFlow 2.21, so each `tfa_*`
function below transcribes the `call` of `tensorflow_addons/rnn/
layer_norm_lstm_cell.py`, `layer_norm_simple_rnn_cell.py` and
`peephole_lstm_cell.py` (TF Addons 0.23) line by line, in float64. The cells
must give the same outputs and final states over several steps from given
initial states, the same gradients (central differences of the NumPy code)
with respect to every weight and the initial states, and have TF Addons'
weights: same names, shapes and order.
"""

import keras
from keras import ops
import numpy as np
import pytest

import keras_rnn
from tests.conftest import BACKEND
from tests.conftest import numeric_gradients


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


BATCH, TIME, FEATURES, UNITS = 2, 4, 3, 5


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def tf_layer_norm(z, gamma, beta, eps):
    """`keras.layers.LayerNormalization` (TF Addons' norm layers)."""
    mean = z.mean(axis=-1, keepdims=True)
    var = z.var(axis=-1, keepdims=True)
    out = (z - mean) / np.sqrt(var + eps) * gamma
    return out if beta is None else out + beta


def tfa_layer_norm_lstm(x, w, h, c, eps=1e-3):
    """`LayerNormLSTMCell.call` + Keras 2 `_compute_carry_and_output_fused`."""
    outputs = []
    for t in range(x.shape[1]):
        z = tf_layer_norm(x[:, t] @ w["kernel"], w["kernel_norm/gamma"],
                          w["kernel_norm/beta"], eps)
        z += tf_layer_norm(h @ w["recurrent_kernel"], w["recurrent_norm/gamma"],
                           w["recurrent_norm/beta"], eps)
        z = z + w["bias"]
        z0, z1, z2, z3 = np.split(z, 4, axis=1)
        i, f = sigmoid(z0), sigmoid(z1)
        c = f * c + i * np.tanh(z2)
        o = sigmoid(z3)
        c = tf_layer_norm(c, w["state_norm/gamma"], w["state_norm/beta"], eps)
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, 1), [h, c]


def tfa_layer_norm_simple_rnn(x, w, h, eps=1e-5):
    """`LayerNormSimpleRNNCell.call`: f(ln(x W + y U) + b)."""
    outputs = []
    for t in range(x.shape[1]):
        output = x[:, t] @ w["kernel"] + h @ w["recurrent_kernel"]
        output = tf_layer_norm(output, w["layernorm/gamma"], None, eps)
        h = np.tanh(output + w["bias"])
        outputs.append(h)
    return np.stack(outputs, 1), [h]


def tfa_peephole_lstm(x, w, h, c):
    """`PeepholeLSTMCell._compute_carry_and_output_fused` in Keras 2's
    `LSTMCell.call`."""
    outputs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"]
        z0, z1, z2, z3 = np.split(z, 4, axis=1)
        i = sigmoid(z0 + w["input_gate_peephole_weights"] * c)
        f = sigmoid(z1 + w["forget_gate_peephole_weights"] * c)
        c = f * c + i * np.tanh(z2)
        o = sigmoid(z3 + w["output_gate_peephole_weights"] * c)
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, 1), [h, c]


# name -> (cell factory, reference, TF Addons' weight names in order, shapes)
LSTM_SHAPES = [(FEATURES, 4 * UNITS), (UNITS, 4 * UNITS), (4 * UNITS,)]
CASES = {
    "layer_norm_lstm": (
        lambda: keras_rnn.LayerNormLSTMCell(UNITS),
        tfa_layer_norm_lstm,
        ["kernel", "recurrent_kernel", "bias", "kernel_norm/gamma",
         "kernel_norm/beta", "recurrent_norm/gamma", "recurrent_norm/beta",
         "state_norm/gamma", "state_norm/beta"],
        LSTM_SHAPES + [(4 * UNITS,)] * 4 + [(UNITS,)] * 2,
    ),
    "layer_norm_simple_rnn": (
        lambda: keras_rnn.LayerNormSimpleRNNCell(UNITS),
        tfa_layer_norm_simple_rnn,
        ["kernel", "recurrent_kernel", "bias", "layernorm/gamma"],
        [(FEATURES, UNITS), (UNITS, UNITS), (UNITS,), (UNITS,)],
    ),
    "peephole_lstm": (
        lambda: keras_rnn.PeepholeLSTMCell(UNITS),
        tfa_peephole_lstm,
        ["kernel", "recurrent_kernel", "bias", "input_gate_peephole_weights",
         "forget_gate_peephole_weights", "output_gate_peephole_weights"],
        LSTM_SHAPES + [(UNITS,)] * 3,
    ),
}


def key_of(variable):
    """'rnn/layer_norm_lstm_cell/kernel_norm/gamma' -> 'kernel_norm/gamma'."""
    parts = variable.path.split("/")
    return "/".join(parts[-2:]) if parts[-2] in (
        "kernel_norm", "recurrent_norm", "state_norm", "layernorm") else parts[-1]


class Model(keras.layers.Layer):
    """The cell in `keras.layers.RNN`, with its initial states as weights
    (so one gradient call covers them)."""

    def __init__(self, cell, n_states):
        super().__init__()
        self.rnn = keras.layers.RNN(cell, return_sequences=True,
                                    return_state=True)
        self.n_states = n_states

    def build(self, input_shape):
        self.rnn.build(input_shape)
        self.initial = [self.add_weight(shape=(BATCH, UNITS), name=f"s{i}")
                        for i in range(self.n_states)]

    def call(self, x):
        outputs, *states = self.rnn(x, initial_state=list(self.initial))
        return outputs, states


def setup(case):
    factory, reference, _, _ = CASES[case]
    cell = factory()
    n_states = 2 if "lstm" in case else 1
    model = Model(cell, n_states)
    model.build((BATCH, TIME, FEATURES))
    rng = np.random.default_rng(0)
    weights = {}
    for variable in model.rnn.weights:
        value = rng.normal(scale=0.5, size=variable.shape)
        if variable.path.endswith("gamma"):
            value = 1.0 + 0.3 * value
        variable.assign(value.astype("float32"))
        weights[key_of(variable)] = value
    for i, variable in enumerate(model.initial):
        value = rng.normal(size=variable.shape)
        variable.assign(value.astype("float32"))
        weights[f"s{i}"] = value
    x = rng.normal(size=(BATCH, TIME, FEATURES))

    def run_reference(w):
        states = [w[f"s{i}"] for i in range(n_states)]
        return reference(x, w, *states)

    return model, weights, x, run_reference


def gradients(model, x, probes):
    variables = model.trainable_variables

    def loss_of(outputs, states):
        total = keras.ops.sum(keras.ops.multiply(outputs, probes[0]))
        for state, probe in zip(states, probes[1:]):
            total = total + keras.ops.sum(keras.ops.multiply(state, probe))
        return total

    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of(*model(x))
        grads = tape.gradient(loss, variables)
    elif BACKEND == "jax":
        import jax

        fixed = [v.value for v in model.non_trainable_variables]

        def loss_fn(values):
            (outputs, states), _ = model.stateless_call(values, fixed, x)
            return loss_of(outputs, states)

        grads = jax.grad(loss_fn)([v.value for v in variables])
    else:
        import torch

        loss = loss_of(*model(x))
        grads = torch.autograd.grad(loss, [v.value for v in variables])
    return {key_of(v): _np(g).astype("float64") for v, g in zip(variables, grads)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_weights_have_tf_addons_names_shapes_and_order(case):
    _, _, names, shapes = CASES[case]
    rnn = keras.layers.RNN(CASES[case][0]())
    rnn.build((None, TIME, FEATURES))
    assert [key_of(v) for v in rnn.weights] == names
    assert [tuple(v.shape) for v in rnn.weights] == shapes


@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_states_and_gradients_equal_tf_addons_equations(case):
    model, weights, x, run_reference = setup(case)
    expected, expected_states = run_reference(weights)
    outputs, states = model(x.astype("float32"))
    np.testing.assert_allclose(_np(outputs), expected, atol=2e-5, rtol=1e-5)
    for got, want in zip(states, expected_states):
        np.testing.assert_allclose(_np(got), want, atol=2e-5, rtol=1e-5)

    rng = np.random.default_rng(3)
    probes = [rng.normal(size=expected.shape)] + [
        rng.normal(size=s.shape) for s in expected_states]

    def loss(w):
        out, st = run_reference(w)
        return float((out * probes[0]).sum()
                     + sum((s * p).sum() for s, p in zip(st, probes[1:])))

    want = numeric_gradients(loss, weights)
    got = gradients(model, x.astype("float32"),
                    [p.astype("float32") for p in probes])
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=3e-4, rtol=2e-3,
                                   err_msg=f"gradient of {key}")


def test_layer_norm_lstm_carries_the_normalized_cell_state():
    """TF Addons' LayerNormLSTMCell and LSTMCell(layer_norm=True) (Ba et al.)
    agree at step 1 from zero states and differ from step 2 on."""
    x = np.random.default_rng(1).normal(size=(BATCH, TIME, FEATURES)).astype("float32")
    tfa = keras.layers.RNN(keras_rnn.LayerNormLSTMCell(UNITS), return_sequences=True)
    ba = keras.layers.RNN(keras_rnn.LSTMCell(UNITS, layer_norm=True),
                          return_sequences=True)
    tfa.build(x.shape)
    ba.build(x.shape)
    ba.set_weights(tfa.get_weights())
    a, b = _np(tfa(x)), _np(ba(x))
    np.testing.assert_allclose(a[:, 0], b[:, 0], atol=1e-6)
    assert np.abs(a[:, 1:] - b[:, 1:]).max() > 1e-3


POSITIONAL = {
    # TF Addons' positional order, every argument up to `recurrent_dropout`.
    keras_rnn.LayerNormLSTMCell: (
        [4, "relu", "hard_sigmoid", False, "ones", "zeros", "ones", False,
         "l2", "l1", None, None, None, None, 0.1, 0.2, "zeros", "ones", 0.01],
        dict(use_bias=False, unit_forget_bias=False,
             dropout=0.1, recurrent_dropout=0.2, norm_epsilon=0.01)),
    keras_rnn.LayerNormSimpleRNNCell: (
        [4, "relu", False, 0.01, "ones", "zeros", "ones", "zeros", "l2", None,
         None, "l1", None, None, None, None, 0.1, 0.2],
        dict(use_bias=False, layernorm_epsilon=0.01, dropout=0.1,
             recurrent_dropout=0.2)),
    keras_rnn.PeepholeLSTMCell: (
        [4, "relu", "hard_sigmoid", False, "ones", "zeros", "ones", False,
         "l2", "l1", None, None, None, None, 0.1, 0.2],
        dict(use_bias=False, unit_forget_bias=False, dropout=0.1,
             recurrent_dropout=0.2)),
}


@pytest.mark.parametrize("cls", list(POSITIONAL), ids=lambda c: c.__name__)
def test_tf_addons_positional_order_and_config_round_trip(cls):
    args, expected = POSITIONAL[cls]
    cell = cls(*args)
    for name, value in expected.items():
        assert getattr(cell, name) == value, name
    assert cell.activation is keras.activations.relu
    assert isinstance(cell.kernel_initializer, keras.initializers.Ones)
    again = cls.from_config(cell.get_config())
    assert again.get_config() == cell.get_config()
    if cls is keras_rnn.PeepholeLSTMCell:
        assert isinstance(cell.peephole_initializer, keras.initializers.Ones)
    if cls is keras_rnn.LayerNormSimpleRNNCell:
        assert isinstance(cell.gamma_initializer, keras.initializers.Zeros)
        assert cell.gamma_regularizer is not None
