"""The layer contract: config and `.keras` round trips, weight counts,
symbolic and eager calls, a `fit` step, mixed precision, argument errors,
and the TF Addons migration names."""

import json
import os

import keras
from keras import ops
import numpy as np
import pytest

import keras_rnn
from examples.adding_problem import adding_problem


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


TIME, FEATURES, UNITS = 5, 3, 4

# (layer factory, expected number of weights)
LAYERS = {
    "lstm": (lambda: keras_rnn.LSTM(UNITS), 3),
    "lstm_all": (lambda: keras_rnn.LSTM(
        UNITS, layer_norm=True, peephole=True, dropout=0.1,
        recurrent_dropout=0.2, zoneout=0.1, zoneout_cell=0.2,
        norm_epsilon=1e-4, unit_forget_bias=False, seed=7,
        return_sequences=True), 3 + 3 + 6),
    "gru_ln_before": (lambda: keras_rnn.GRU(
        UNITS, layer_norm=True, reset_after=False, zoneout=0.2,
        go_backwards=True), 3 + 6),
    "simple_ln": (lambda: keras_rnn.SimpleRNN(
        UNITS, layer_norm=True, activation="relu", return_state=True), 3 + 4),
    "rnn_of_cell": (lambda: keras.layers.RNN(
        keras_rnn.LSTMCell(UNITS, peephole=True, layer_norm=True)), 3 + 3 + 6),
    "migration_ln_lstm": (lambda: keras.layers.RNN(
        keras_rnn.LayerNormLSTMCell(UNITS, norm_epsilon=1e-2)), 3 + 6),
    "migration_ln_simple": (lambda: keras.layers.RNN(
        keras_rnn.LayerNormSimpleRNNCell(UNITS, layernorm_epsilon=1e-4)), 3 + 1),
    "migration_peephole": (lambda: keras.layers.RNN(
        keras_rnn.PeepholeLSTMCell(UNITS)), 3 + 3),
    "migration_ln_gru": (lambda: keras.layers.RNN(
        keras_rnn.LayerNormGRUCell(UNITS, reset_after=False)), 3 + 6),
    "bidirectional": (lambda: keras.layers.Bidirectional(
        keras_rnn.GRU(UNITS, layer_norm=True), merge_mode="sum"), 2 * (3 + 4)),
}


def model_with(layer_factory):
    inputs = keras.Input((TIME, FEATURES))
    outputs = layer_factory()(inputs)
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    return keras.Model(inputs, outputs)


def as_json(config):
    return json.loads(json.dumps(config))


def sample(seed=0, batch=3):
    return np.random.default_rng(seed).normal(
        size=(batch, TIME, FEATURES)).astype("float32")


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_config_and_keras_file_round_trip(name, tmp_path):
    factory, n_weights = LAYERS[name]
    model = model_with(factory)
    layer = model.layers[1]
    assert len(layer.weights) == n_weights
    x = sample()
    expected = _np(model(x))

    # get_config -> from_config gives the same config.
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()

    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(_np(loaded(x)), expected, atol=1e-6)
    # (JSON turns the tuples of Keras's `build_config` into lists.)
    assert as_json(loaded.layers[1].get_config()) == as_json(layer.get_config())
    assert type(loaded.layers[1]) is type(layer)


@pytest.mark.parametrize("name", ["lstm_all", "gru_ln_before", "simple_ln",
                                  "rnn_of_cell", "bidirectional"])
def test_one_fit_step_trains_and_loss_falls(name):
    keras.utils.set_random_seed(0)
    model = model_with(LAYERS[name][0])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x = sample(1, batch=16)
    y = np.full((16,) + tuple(model.output.shape[1:]), 0.5, "float32")
    before = [np.array(w) for w in model.trainable_weights]
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    changed = [not np.array_equal(b, np.asarray(w))
               for b, w in zip(before, model.trainable_weights)]
    assert all(changed)
    model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.6 * first


@pytest.mark.parametrize("layer_cls,kwargs", [
    (keras_rnn.LSTM, {"layer_norm": True, "peephole": True,
                      "recurrent_dropout": 0.1, "zoneout": 0.1}),
    (keras_rnn.GRU, {"layer_norm": True, "dropout": 0.1}),
    (keras_rnn.SimpleRNN, {"layer_norm": True}),
])
def test_mixed_float16(layer_cls, kwargs):
    x = sample(3, batch=8)
    keras.utils.set_random_seed(1)
    reference = layer_cls(UNITS, return_sequences=True, **kwargs)
    expected = _np(reference(x))

    keras.config.set_dtype_policy("mixed_float16")
    layer = layer_cls(UNITS, return_sequences=True, **kwargs)
    inputs = keras.Input((TIME, FEATURES))
    model = keras.Model(inputs, keras.layers.Dense(1, dtype="float32")(
        layer(inputs)))
    layer.set_weights(reference.get_weights())
    assert layer.compute_dtype == "float16"
    assert all(w.dtype == "float32" for w in layer.weights)
    got = layer(x)
    assert keras.backend.standardize_dtype(got.dtype) == "float16"
    np.testing.assert_allclose(_np(got).astype("float32"), expected,
                               atol=2e-2)
    model.compile(optimizer="adam", loss="mse")  # loss-scaled under the policy
    y = np.zeros((8, TIME, 1), "float32")
    history = model.fit(x, y, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


BAD_ARGUMENTS = [
    (keras_rnn.LSTMCell, {"units": -3}, "units"),
    (keras_rnn.GRUCell, {"units": 0}, "units"),
    (keras_rnn.SimpleRNNCell, {"units": 2.5}, "units"),
    (keras_rnn.LSTMCell, {"units": 4, "dropout": 1.0}, "dropout"),
    (keras_rnn.LSTMCell, {"units": 4, "dropout": -0.1}, "dropout"),
    (keras_rnn.GRUCell, {"units": 4, "recurrent_dropout": 1.5},
     "recurrent_dropout"),
    (keras_rnn.SimpleRNNCell, {"units": 4, "zoneout": 1.0}, "zoneout"),
    (keras_rnn.LSTMCell, {"units": 4, "zoneout_cell": "a"}, "zoneout_cell"),
    (keras_rnn.LSTMCell, {"units": 4, "activation": "nope"}, "activation"),
    (keras_rnn.GRUCell, {"units": 4, "recurrent_activation": "nope"},
     "recurrent_activation"),
    (keras_rnn.GRUCell, {"units": 4, "peephole": True}, "peephole"),
    (keras_rnn.SimpleRNNCell, {"units": 4, "peephole": True}, "peephole"),
    (keras_rnn.LSTMCell, {"units": 4, "norm_epsilon": 0.0}, "norm_epsilon"),
    (keras_rnn.LSTMCell, {"units": 4, "kernel_initializer": "nope"},
     "kernel_initializer"),
    (keras_rnn.GRU, {"units": 4, "peephole": True}, "peephole"),
    (keras_rnn.LSTM, {"units": -1}, "units"),
    (keras_rnn.LSTM, {"units": 4, "use_cudnn": "yes"}, "use_cudnn"),
    (keras_rnn.LayerNormLSTMCell, {"units": 4, "norm_epsilon": -1.0},
     "norm_epsilon"),
    (keras_rnn.LayerNormSimpleRNNCell,
     {"units": 4, "layernorm_epsilon": 1e-3, "norm_epsilon": 1e-3},
     "norm_epsilon"),
    (keras_rnn.LayerNormSimpleRNNCell,
     {"units": 4, "beta_initializer": "ones"}, "beta_initializer"),
    (keras_rnn.LayerNormLSTMCell, {"units": 4, "layer_norm": False},
     "layer_norm"),
]


@pytest.mark.parametrize("cls,kwargs,argument", BAD_ARGUMENTS,
                         ids=[f"{c.__name__}-{a}" for c, _, a in BAD_ARGUMENTS])
def test_bad_arguments_raise_value_error_naming_the_argument(cls, kwargs,
                                                             argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        cls(**kwargs)


def test_migration_names_take_tf_addons_arguments():
    cell = keras_rnn.LayerNormSimpleRNNCell(
        4, layernorm_epsilon=1e-4, gamma_initializer="zeros",
        gamma_regularizer="l2")
    assert cell.layernorm_epsilon == 1e-4 and not cell.layer_norm
    assert isinstance(cell.gamma_initializer, keras.initializers.Zeros)
    assert keras_rnn.LayerNormSimpleRNNCell(4).layernorm_epsilon == 1e-5
    lstm = keras_rnn.LayerNormLSTMCell(
        4, norm_gamma_initializer="zeros", norm_epsilon=1e-2)
    assert lstm.layer_norm and lstm.norm_epsilon == 1e-2
    assert isinstance(lstm.norm_gamma_initializer, keras.initializers.Zeros)
    peephole = keras_rnn.PeepholeLSTMCell(4, kernel_initializer="ones")
    assert peephole.peephole
    assert isinstance(peephole.peephole_initializer, keras.initializers.Ones)
    assert keras_rnn.LayerNormGRUCell(4).layer_norm


def test_migration_peephole_cell_equals_general_cell_with_same_weights():
    # (The TF Addons layer-norm cells compute TF Addons' equations, not the
    # general cells' Ba et al. ones: tests/keras_rnn/tfa/test_rnn.py.)
    x = sample(4)
    tfa_style = keras.layers.RNN(keras_rnn.PeepholeLSTMCell(UNITS))
    general = keras.layers.RNN(keras_rnn.LSTMCell(UNITS, peephole=True))
    tfa_style.build(x.shape)
    general.build(x.shape)
    general.set_weights(tfa_style.get_weights())
    np.testing.assert_allclose(_np(tfa_style(x)), _np(general(x)), atol=1e-7)


def test_demo_task_targets_are_the_sum_of_the_two_marked_values():
    x, y = adding_problem(50, 10, np.random.default_rng(0))
    assert x.shape == (50, 10, 2) and y.shape == (50, 1)
    assert np.all(x[:, :, 1].sum(axis=1) == 2)
    for row in range(50):
        marked = x[row, x[row, :, 1] == 1, 0]
        assert y[row, 0] == pytest.approx(marked.sum())
