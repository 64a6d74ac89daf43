"""keras_rnn's layers and cells against Keras's own: every argument Keras's
`LSTM`, `GRU`, `SimpleRNN` and their cells take, with the same default; a
Keras config loads; the same weights give the same outputs; and
`keras.layers.Bidirectional` takes its fused path for the plain layers only.
"""

import inspect

import keras
from keras import ops
import numpy as np
import pytest

import keras_rnn


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


BATCH, TIME, FEATURES, UNITS = 2, 5, 3, 4

# keras_rnn class -> the Keras class it must be a drop-in for.
PAIRS = {
    keras_rnn.LSTM: keras.layers.LSTM,
    keras_rnn.GRU: keras.layers.GRU,
    keras_rnn.SimpleRNN: keras.layers.SimpleRNN,
    keras_rnn.LSTMCell: keras.layers.LSTMCell,
    keras_rnn.GRUCell: keras.layers.GRUCell,
    keras_rnn.SimpleRNNCell: keras.layers.SimpleRNNCell,
}
LAYERS = [keras_rnn.LSTM, keras_rnn.GRU, keras_rnn.SimpleRNN]
by_name = dict(ids=lambda c: c.__name__)


def keras_parameters(cls):
    return {
        name: p for name, p in inspect.signature(cls).parameters.items()
        if p.kind is not p.VAR_KEYWORD
    }


@pytest.mark.parametrize("ours", list(PAIRS), **by_name)
def test_every_keras_argument_is_taken_with_its_default(ours):
    theirs = PAIRS[ours]
    parameters = inspect.signature(ours).parameters
    for name, expected in keras_parameters(theirs).items():
        assert name in parameters, f"{ours.__name__} lacks `{name}`"
        assert parameters[name].default == expected.default, name
        assert name in ours.__doc__, f"`{name}` not under Args:"


@pytest.mark.parametrize("ours", list(PAIRS), **by_name)
def test_a_keras_config_loads_and_round_trips(ours):
    theirs = PAIRS[ours]
    keras_config = theirs(UNITS, activation="relu", dropout=0.25,
                          use_bias=False, kernel_regularizer="l2",
                          name="rnn").get_config()
    config = ours.from_config(keras_config).get_config()
    for key, value in keras_config.items():
        assert config[key] == value, key


@pytest.mark.parametrize("ours", list(PAIRS), **by_name)
def test_the_deprecated_implementation_argument_is_accepted(ours):
    # Keras 3 accepts it (Keras 2's gate-matmul layout) and computes the
    # same function for either value; so do we.
    assert ours(UNITS, implementation=1).units == UNITS
    config = PAIRS[ours](UNITS).get_config()
    assert ours.from_config({**config, "implementation": 0}).units == UNITS


@pytest.mark.parametrize("ours", LAYERS, **by_name)
def test_our_layers_are_keras_layers(ours):
    assert isinstance(ours(UNITS), PAIRS[ours])


def keras_twin(layer, **options):
    """Keras's layer with `options`, holding `layer`'s weights."""
    twin = PAIRS[type(layer)](UNITS, **options)
    twin.build((None, TIME, FEATURES))
    assert [w.shape for w in twin.weights] == [w.shape for w in layer.weights]
    twin.set_weights(layer.get_weights())
    return twin


def random_weights(layer, seed=0):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32")
                       for w in layer.weights])


OPTIONS = {
    "plain": {},
    "sequences_state": dict(return_sequences=True, return_state=True),
    "backwards_relu_no_bias": dict(go_backwards=True, activation="relu",
                                   use_bias=False, return_sequences=True),
    "unroll": dict(unroll=True),
}


@pytest.mark.parametrize("options", sorted(OPTIONS))
@pytest.mark.parametrize("ours", LAYERS, **by_name)
def test_same_weights_same_outputs_as_keras(ours, options):
    options = OPTIONS[options]
    layer = ours(UNITS, **options)
    layer.build((None, TIME, FEATURES))
    random_weights(layer)
    twin = keras_twin(layer, **options)
    x = np.random.default_rng(1).normal(
        size=(BATCH, TIME, FEATURES)).astype("float32")
    mask = np.array([[True] * TIME, [True] * 3 + [False] * (TIME - 3)])
    for call_mask in (None, mask):
        got = keras.tree.flatten(layer(x, mask=call_mask))
        expected = keras.tree.flatten(twin(x, mask=call_mask))
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(_np(a), _np(b), atol=1e-5)


@pytest.mark.parametrize("options", [
    dict(reset_after=False), dict(unit_forget_bias=False),
    dict(recurrent_activation="hard_sigmoid"),
], ids=str)
def test_layer_specific_options_match_keras(options):
    ours = keras_rnn.GRU if "reset_after" in options else keras_rnn.LSTM
    layer = ours(UNITS, return_sequences=True, **options)
    layer.build((None, TIME, FEATURES))
    random_weights(layer, seed=2)
    twin = keras_twin(layer, return_sequences=True, **options)
    x = np.random.default_rng(3).normal(
        size=(BATCH, TIME, FEATURES)).astype("float32")
    np.testing.assert_allclose(_np(layer(x)), _np(twin(x)), atol=1e-5)


@pytest.mark.parametrize("ours", [keras_rnn.LSTMCell, keras_rnn.GRUCell,
                                  keras_rnn.SimpleRNNCell], **by_name)
def test_cells_in_keras_rnn_match_keras_cells(ours):
    layer = keras.layers.RNN(ours(UNITS), return_sequences=True)
    twin = keras.layers.RNN(PAIRS[ours](UNITS), return_sequences=True)
    layer.build((None, TIME, FEATURES))
    twin.build((None, TIME, FEATURES))
    random_weights(layer, seed=4)
    twin.set_weights(layer.get_weights())
    x = np.random.default_rng(5).normal(
        size=(BATCH, TIME, FEATURES)).astype("float32")
    np.testing.assert_allclose(_np(layer(x)), _np(twin(x)), atol=1e-5)


# -- keras.layers.Bidirectional's fused path -------------------------------

FUSED = {keras_rnn.LSTM: "bidirectional_lstm", keras_rnn.GRU: "bidirectional_gru"}


@pytest.fixture
def fused_calls(monkeypatch):
    """Records calls of Keras's fused bidirectional kernels, which then
    decline (as they do without a GPU), so the layers run as usual."""
    from keras.src import backend  # what `Bidirectional` calls them through

    calls = []
    for name in FUSED.values():
        def decline(*args, _name=name, **kwargs):
            calls.append(_name)
            raise NotImplementedError
        monkeypatch.setattr(backend, name, decline)
    return calls


@pytest.mark.parametrize("options,fused", [
    ({}, True),
    (dict(return_sequences=True, return_state=True), True),
    (dict(layer_norm=True), False),
    (dict(zoneout=0.1), False),
    (dict(dropout=0.2), False),  # Keras's own rule
], ids=str)
@pytest.mark.parametrize("ours", [keras_rnn.LSTM, keras_rnn.GRU], **by_name)
def test_bidirectional_takes_its_fused_path_for_plain_layers_only(
        ours, options, fused, fused_calls):
    bi = keras.layers.Bidirectional(ours(UNITS, **options))
    x = np.random.default_rng(6).normal(
        size=(BATCH, TIME, FEATURES)).astype("float32")
    bi(x)
    assert fused_calls == ([FUSED[ours]] if fused else [])
    # `Bidirectional` copies `use_cudnn` onto its layers: the argument (and
    # so the saved config) is unchanged.
    assert bi.forward_layer.get_config()["use_cudnn"] == "auto"
    assert bi.backward_layer.get_config()["use_cudnn"] == "auto"


@pytest.mark.parametrize("options", [dict(peephole=True), dict(zoneout_cell=0.1)],
                         ids=str)
def test_bidirectional_keeps_lstm_extras_off_the_fused_path(options, fused_calls):
    keras.layers.Bidirectional(keras_rnn.LSTM(UNITS, **options))(
        np.zeros((BATCH, TIME, FEATURES), "float32"))
    assert fused_calls == []


def test_bidirectional_keeps_use_cudnn_true_an_error_without_a_kernel():
    bi = keras.layers.Bidirectional(
        keras_rnn.LSTM(UNITS, layer_norm=True, use_cudnn=True))
    assert bi.forward_layer.get_config()["use_cudnn"] is True
    with pytest.raises(ValueError, match="use_cudnn=True"):
        bi(np.zeros((BATCH, TIME, FEATURES), "float32"))


@pytest.mark.parametrize("ours", [keras_rnn.LSTM, keras_rnn.GRU], **by_name)
def test_bidirectional_outputs_equal_keras_bidirectional(ours):
    bi = keras.layers.Bidirectional(ours(UNITS, return_sequences=True))
    twin = keras.layers.Bidirectional(PAIRS[ours](UNITS, return_sequences=True))
    bi.build((None, TIME, FEATURES))
    twin.build((None, TIME, FEATURES))
    random_weights(bi, seed=7)
    twin.set_weights(bi.get_weights())
    x = np.random.default_rng(8).normal(
        size=(BATCH, TIME, FEATURES)).astype("float32")
    np.testing.assert_allclose(_np(bi(x)), _np(twin(x)), atol=1e-5)
