"""Dropout and zoneout semantics, masking, stateful use, wrappers."""

import keras
from keras import ops
import numpy as np
import pytest

import keras_rnn
from tests import reference
from tests.conftest import BACKEND
from tests.conftest import randomize_weights


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def probe_layer(units, **kwargs):
    """A linear SimpleRNN whose weights we set by hand to read masks off."""
    layer = keras_rnn.SimpleRNN(units, activation="linear",
                                return_sequences=True, **kwargs)
    layer.build((None, None, units))
    return layer


def test_input_dropout_mask_is_time_locked_and_differs_between_sequences():
    units, batch, time = 64, 8, 6
    layer = probe_layer(units, dropout=0.5, seed=1)
    cell = layer.cell
    cell.kernel.assign(np.eye(units, dtype="float32"))  # h_t = mask * x_t
    cell.recurrent_kernel.assign(np.zeros((units, units), "float32"))
    x = np.ones((batch, time, units), "float32")

    out = _np(layer(x, training=True))
    # One mask per sequence: identical at every time step ...
    np.testing.assert_array_equal(out, np.repeat(out[:, :1], time, axis=1))
    # ... with values {0, 1 / (1 - rate)} ...
    assert set(np.unique(out)) == {0.0, 2.0}
    assert 0.35 < (out == 0).mean() < 0.65
    # ... different for each sequence of the batch ...
    assert len({row.tobytes() for row in out[:, 0]}) == batch
    # ... and drawn afresh by the next call.
    again = _np(layer(x, training=True))
    assert not np.array_equal(out, again)
    # No dropout at inference.
    np.testing.assert_array_equal(_np(layer(x, training=False)), x)


def test_recurrent_dropout_mask_is_time_locked():
    units, batch, time = 32, 4, 5
    layer = probe_layer(units, recurrent_dropout=0.5, seed=2)
    cell = layer.cell
    cell.kernel.assign(np.eye(units, dtype="float32"))
    cell.recurrent_kernel.assign(np.eye(units, dtype="float32"))
    # h_t = x_t + m * h_{t-1}, so with x = 1: h_1 = 1, h_t = 1 + m * h_{t-1}.
    x = np.ones((batch, time, units), "float32")
    out = _np(layer(x, training=True))
    mask = out[:, 1] - 1.0
    assert set(np.unique(mask)) == {0.0, 2.0}
    for t in range(1, time):
        np.testing.assert_allclose(out[:, t], 1.0 + mask * out[:, t - 1])
    assert len({row.tobytes() for row in mask}) == batch
    # At inference: h_t = t.
    expected = np.broadcast_to(np.arange(1, time + 1)[None, :, None], out.shape)
    np.testing.assert_allclose(_np(layer(x)), expected)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "cell"])
def test_dropout_masks_inside_keras_rnn_and_fit(fused):
    """Masks are redrawn per batch in `fit` too (one compiled train step)."""
    units = 16
    layer = probe_layer(units, dropout=0.5, seed=3) if fused else \
        keras.layers.RNN(keras_rnn.SimpleRNNCell(units, activation="linear",
                                                 dropout=0.5, seed=3),
                         return_sequences=True)
    inputs = keras.Input((4, units))
    model = keras.Model(inputs, layer(inputs))
    layer.cell.kernel.assign(np.eye(units, dtype="float32"))
    layer.cell.recurrent_kernel.assign(np.zeros((units, units), "float32"))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x = np.ones((8, 4, units), "float32")
    zeros = np.zeros_like(x)
    # loss = mean(mask ** 2) = 4 * (fraction kept): about 2, new each step.
    losses = [model.train_on_batch(x, zeros) for _ in range(3)]
    assert all(1.0 < loss < 3.0 for loss in losses)
    assert len(set(losses)) == 3
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)


def test_zoneout_draws_fresh_masks_per_step_and_uses_expectation_at_inference():
    rate, units, batch, time = 0.3, 64, 32, 6
    layer = keras_rnn.SimpleRNN(units, activation="linear", zoneout=rate,
                                return_sequences=True, seed=4)
    layer.build((None, time, 1))
    cell = layer.cell
    cell.kernel.assign(np.ones((1, units), "float32"))  # candidate h = t + 1
    cell.recurrent_kernel.assign(np.zeros((units, units), "float32"))
    x = np.broadcast_to(np.arange(1, time + 1, dtype="float32")[None, :, None],
                        (batch, time, 1))
    out = _np(layer(x, training=True))
    previous = np.concatenate([np.zeros_like(out[:, :1]), out[:, :-1]], axis=1)
    kept = out == previous
    updated = out == x  # the candidate value t + 1
    assert np.all(kept | updated)
    assert abs(kept.mean() - rate) < 0.03
    # A new mask at every step, not one per sequence.
    assert not np.array_equal(kept[:, 1], kept[:, 2])
    # Inference: h_t = rate * h_{t-1} + (1 - rate) * (t + 1).
    h, expected = np.zeros((batch, units)), []
    for t in range(time):
        h = rate * h + (1 - rate) * x[:, t]
        expected.append(h)
    np.testing.assert_allclose(_np(layer(x)), np.stack(expected, 1), rtol=1e-6)


@pytest.mark.parametrize(
    "layer_cls,kwargs",
    [
        (keras_rnn.LSTM, {"layer_norm": True, "peephole": True}),
        (keras_rnn.LSTM, {"zoneout": 0.3, "zoneout_cell": 0.3}),
        (keras_rnn.GRU, {"layer_norm": True, "reset_after": False}),
        (keras_rnn.SimpleRNN, {"layer_norm": True}),
    ],
)
def test_masked_steps_leave_state_unchanged(layer_cls, kwargs):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 5)).astype("float32")
    lengths = [6, 4, 1]
    mask = np.arange(6)[None, :] < np.array(lengths)[:, None]
    layer = layer_cls(7, return_state=True, return_sequences=True, **kwargs)
    outputs, *states = layer(x, mask=mask)
    for row, length in enumerate(lengths):
        alone, *alone_states = layer(x[row:row + 1, :length])
        for state, alone_state in zip(states, alone_states):
            np.testing.assert_allclose(_np(state[row]), _np(alone_state[0]), atol=1e-5)
        # Output at masked steps repeats the last real output.
        last = _np(outputs[row, length - 1])
        for t in range(length, 6):
            np.testing.assert_allclose(_np(outputs[row, t]), last, atol=1e-5)


def test_embedding_mask_zero_propagates_into_layer():
    tokens = np.array([[3, 4, 5, 0, 0], [6, 7, 0, 0, 0]])
    embed = keras.layers.Embedding(10, 4, mask_zero=True)
    layer = keras_rnn.GRU(6, layer_norm=True)
    padded = layer(embed(tokens))
    trimmed = layer(embed(tokens[:1, :3]))
    np.testing.assert_allclose(_np(padded[0]), _np(trimmed[0]), atol=1e-5)


def test_stateful_carries_state_between_calls():
    x = np.random.default_rng(1).normal(size=(2, 8, 3)).astype("float32")
    whole = keras_rnn.LSTM(5, layer_norm=True, return_sequences=True)
    halves = keras_rnn.LSTM(5, layer_norm=True, return_sequences=True,
                            stateful=True)
    whole.build((2, 8, 3))
    halves.build((2, 4, 3))
    halves.set_weights(whole.get_weights())
    expected = _np(whole(x))
    first = _np(halves(x[:, :4]))
    second = _np(halves(x[:, 4:]))
    np.testing.assert_allclose(np.concatenate([first, second], 1), expected,
                               atol=1e-5)
    halves.reset_state()
    np.testing.assert_allclose(_np(halves(x[:, :4])), first, atol=1e-5)


def test_bidirectional_is_forward_and_reversed_backward_concatenated():
    x = np.random.default_rng(2).normal(size=(2, 5, 3)).astype("float32")
    bi = keras.layers.Bidirectional(
        keras_rnn.LSTM(4, layer_norm=True, return_sequences=True))
    out = _np(bi(x))
    assert out.shape == (2, 5, 8)
    forward = keras_rnn.LSTM(4, layer_norm=True, return_sequences=True)
    backward = keras_rnn.LSTM(4, layer_norm=True, return_sequences=True)
    forward.build(x.shape)
    backward.build(x.shape)
    forward.set_weights(bi.forward_layer.get_weights())
    backward.set_weights(bi.backward_layer.get_weights())
    np.testing.assert_allclose(out[..., :4], _np(forward(x)), atol=1e-5)
    np.testing.assert_allclose(out[..., 4:], _np(backward(x[:, ::-1]))[:, ::-1],
                               atol=1e-5)


def test_stacked_cells_equal_two_chained_layers():
    x = np.random.default_rng(3).normal(size=(2, 5, 3)).astype("float32")
    stacked = keras.layers.RNN(
        keras.layers.StackedRNNCells([
            keras_rnn.GRUCell(4, layer_norm=True),
            keras_rnn.LSTMCell(6, peephole=True),
        ]),
        return_sequences=True,
    )
    out = _np(stacked(x))
    first = keras_rnn.GRU(4, layer_norm=True, return_sequences=True)
    second = keras_rnn.LSTM(6, peephole=True, return_sequences=True)
    first.build(x.shape)
    second.build((2, 5, 4))
    n_first = len(first.weights)
    first.set_weights(stacked.get_weights()[:n_first])
    second.set_weights(stacked.get_weights()[n_first:])
    np.testing.assert_allclose(out, _np(second(first(x))), atol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow",
                    reason="tf.function / XLA are TensorFlow features")
def test_fused_layer_compiles_with_xla():
    import tensorflow as tf

    layer = keras_rnn.LSTM(4, layer_norm=True, peephole=True, zoneout=0.2,
                           return_sequences=True)
    x = np.random.default_rng(4).normal(size=(2, 5, 3)).astype("float32")
    eager = np.asarray(layer(x))
    compiled = tf.function(lambda v: layer(v), jit_compile=True)
    np.testing.assert_allclose(compiled(x), eager, atol=1e-5)


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit is a JAX feature")
def test_fused_layer_compiles_with_jax_jit():
    import jax

    layer = keras_rnn.LSTM(4, layer_norm=True, peephole=True, zoneout=0.2,
                           return_sequences=True)
    x = np.random.default_rng(4).normal(size=(2, 5, 3)).astype("float32")
    eager = np.asarray(layer(x))
    trainable = [v.value for v in layer.trainable_variables]
    seeds = [v.value for v in layer.non_trainable_variables]

    @jax.jit
    def run(weights, v):
        return layer.stateless_call(weights, seeds, v)[0]

    np.testing.assert_allclose(run(trainable, x), eager, atol=1e-5)


def test_cudnn_true_where_keras_has_no_kernel_is_a_clear_error():
    # Keras's kernels compute no layer norm, on any backend or device.
    layer = keras_rnn.LSTM(4, layer_norm=True, use_cudnn=True)
    with pytest.raises(ValueError, match="use_cudnn=True"):
        layer(np.zeros((2, 3, 2), "float32"))


@pytest.mark.skipif(BACKEND == "torch",
                    reason="Keras's torch LSTM kernel also runs without a GPU")
def test_cudnn_true_without_a_gpu_is_a_clear_error():
    layer = keras_rnn.LSTM(4, use_cudnn=True)
    with pytest.raises(ValueError, match="use_cudnn=True"):
        layer(np.zeros((2, 3, 2), "float32"))


@pytest.mark.skipif(BACKEND != "torch", reason="Keras's torch kernels")
@pytest.mark.parametrize("layer_cls", [keras_rnn.LSTM, keras_rnn.GRU])
def test_cudnn_true_on_torch_takes_keras_kernel_on_any_device(layer_cls):
    # Keras's torch `lstm` / `gru` run cuDNN on a GPU and a hoisted torch
    # loop elsewhere, for `keras.layers.LSTM(use_cudnn=True)` too.
    x = np.random.default_rng(6).normal(size=(2, 5, 3)).astype("float32")
    for go_backwards in (False, True):
        options = dict(return_sequences=True, return_state=True, go_backwards=go_backwards)
        kernel = layer_cls(4, use_cudnn=True, **options)
        loop = layer_cls(4, use_cudnn=False, **options)
        kernel.build(x.shape)
        loop.build(x.shape)
        loop.set_weights(kernel.get_weights())
        for a, b in zip(kernel(x), loop(x)):  # outputs, then the final states
            np.testing.assert_allclose(_np(a), _np(b), atol=1e-6)


def test_layer_exposes_cell_arguments():
    layer = keras_rnn.LSTM(8, layer_norm=True, zoneout_cell=0.25,
                           recurrent_dropout=0.1)
    assert (layer.units, layer.layer_norm, layer.zoneout_cell,
            layer.recurrent_dropout) == (8, True, 0.25, 0.1)
    assert layer.cell.name == "lstm_cell"


def test_reference_itself_matches_keras_lstm():
    """Guards the NumPy reference: plain LSTM equals keras.layers.LSTM."""
    x = np.random.default_rng(5).normal(size=(2, 4, 3))
    keras_layer = keras.layers.LSTM(4, return_sequences=True)
    keras_layer.build(x.shape)
    weights = randomize_weights(keras_layer)
    expected, _ = reference.lstm(x, weights)
    np.testing.assert_allclose(_np(keras_layer(x.astype("float32"))), expected,
                               atol=1e-5)
