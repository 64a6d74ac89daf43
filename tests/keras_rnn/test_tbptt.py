"""Truncated BPTT: gradient cuts, carried state, the fit path, arguments."""

import collections

import keras
from keras import ops
import numpy as np
import pytest

import keras_rnn
from keras_rnn import StatefulRNN
from keras_rnn import TBPTTResetStates
from keras_rnn import TBPTTSequence
from keras_rnn import chunked_forward
from tests.conftest import BACKEND
from tests.conftest import gradients
from tests.conftest import randomize_weights


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


K = 4  # chunk length throughout


class InputProbe(keras.layers.Layer):
    """Runs `chunked_forward` over its own trainable copy `x` of the inputs,
    so that conftest's `gradients` also returns d loss / d inputs, as
    `grads["x"]`."""

    def __init__(self, rnn, shape, stop_gradient=True, initial_state=None):
        super().__init__()
        self.rnn = rnn
        self.stop = stop_gradient
        self.initial_state = initial_state
        self.x = self.add_weight(shape=shape, initializer="zeros", name="x")
        self.built = True  # `rnn` comes built

    def call(self, inputs, training=False):
        outputs, _ = chunked_forward(
            self.rnn, self.x.value, K, self.initial_state,
            stop_gradient=self.stop, training=training,
        )
        return outputs


def lstm_probe(batch, time, features, units, stop_gradient):
    keras.utils.set_random_seed(0)
    # Unrolled: JAX differentiates the chunks' scans op by op otherwise (slow).
    rnn = keras_rnn.LSTM(units, return_sequences=True, return_state=True,
                         unroll=True)
    rnn.build((batch, time, features))
    probe = InputProbe(rnn, (batch, time, features), stop_gradient)
    randomize_weights(probe, seed=0)  # the RNN's weights and x
    return probe


def test_no_gradient_crosses_a_chunk_boundary():
    batch, time, features, units = 2, 3 * K, 3, 5
    # The loss is a random projection of the outputs of chunk 2 only.
    probe_weights = np.zeros((batch, time, units), "float32")
    probe_weights[:, K:2 * K] = np.random.default_rng(1).normal(
        size=(batch, K, units))
    dummy = np.zeros((batch, 1), "float32")

    truncated = gradients(lstm_probe(batch, time, features, units, True),
                          dummy, probe_weights)
    full = gradients(lstm_probe(batch, time, features, units, False),
                     dummy, probe_weights)

    dx = truncated["x"]  # (batch, time, features)
    assert np.all(dx[:, :K] == 0.0)  # chunk 1: exactly nothing
    assert np.abs(dx[:, K:2 * K]).max() > 1e-2  # chunk 2: its own inputs
    assert np.all(dx[:, 2 * K:] == 0.0)  # chunk 3: the future
    # Full BPTT does reach chunk 1 (so the first assertion can fail) ...
    assert np.abs(full["x"][:, :K]).max() > 1e-3
    # ... and agrees with TBPTT inside chunk 2.
    np.testing.assert_allclose(full["x"][:, K:], dx[:, K:], atol=1e-6)
    for key in ("kernel", "recurrent_kernel", "bias"):
        assert np.abs(full[key] - truncated[key]).max() > 1e-4, key


def test_truncated_weight_gradient_is_chunk_two_from_a_constant_state():
    batch, time, features, units = 2, 2 * K, 3, 5
    probe = lstm_probe(batch, time, features, units, True)
    rnn, x = probe.rnn, _np(probe.x.value)
    probe_weights = np.zeros((batch, time, units), "float32")
    probe_weights[:, K:] = np.random.default_rng(2).normal(
        size=(batch, K, units))
    dummy = np.zeros((batch, 1), "float32")
    truncated = gradients(probe, dummy, probe_weights)

    # The state after chunk 1, as plain numbers, then chunk 2 alone from it.
    _, *state = rnn(x[:, :K])
    state = [_np(s) for s in state]
    alone = InputProbe(rnn, (batch, K, features), initial_state=state)
    alone.x.assign(x[:, K:])
    reference = gradients(alone, dummy, probe_weights[:, K:])
    for key in ("kernel", "recurrent_kernel", "bias"):
        np.testing.assert_allclose(truncated[key], reference[key],
                                   rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(truncated["x"][:, K:], reference["x"],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer_cls", [keras_rnn.LSTM, keras_rnn.GRU])
def test_chunked_forward_equals_one_call_and_reset_does_not(layer_cls):
    batch, time, features, units = 2, 2 * K + 2, 3, 4  # last chunk: 2 steps
    rnn = layer_cls(units, return_sequences=True, return_state=True)
    rnn.build((batch, time, features))
    randomize_weights(rnn, seed=3)
    x = np.random.default_rng(3).normal(size=(batch, time, features))
    x = x.astype("float32")

    full, *full_state = rnn(x)
    outputs, state = chunked_forward(rnn, x, K)
    np.testing.assert_allclose(_np(outputs), _np(full), atol=1e-5)
    for got, want in zip(state, full_state):
        np.testing.assert_allclose(_np(got), _np(want), atol=1e-5)

    # Starting every chunk from zeros instead: the same first chunk only.
    reset = np.concatenate(
        [_np(rnn(x[:, s:s + K])[0]) for s in range(0, time, K)], axis=1)
    np.testing.assert_allclose(reset[:, :K], _np(full)[:, :K],
                               atol=1e-5)
    assert np.abs(reset[:, K:] - _np(full)[:, K:]).max() > 1e-2


def test_stateful_rnn_continues_across_calls_and_resets():
    batch, time, features, units = 2, 3 * K, 3, 4
    rnn = keras_rnn.GRU(units, return_sequences=True)
    layer = StatefulRNN(rnn)
    layer.build((batch, None, features))
    randomize_weights(rnn, seed=4)
    x = np.random.default_rng(4).normal(size=(batch, time, features))
    x = x.astype("float32")
    full, final_state = rnn(x)  # StatefulRNN switched on return_state

    chunks = [_np(layer(x[:, s:s + K])) for s in range(0, time, K)]
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), _np(full), atol=1e-5)
    np.testing.assert_allclose(_np(layer.states[0].value), _np(final_state), atol=1e-5)
    assert layer.states[0] in layer.non_trainable_weights

    layer.reset_state()
    np.testing.assert_array_equal(_np(layer.states[0].value), 0.0)
    np.testing.assert_allclose(_np(layer(x[:, :K])), _np(full)[:, :K],
                               atol=1e-5)


def test_stateful_rnn_round_trips_through_a_keras_file(tmp_path):
    model = keras.Sequential([
        keras.Input(batch_shape=(2, None, 3)),
        StatefulRNN(keras_rnn.LSTM(4, return_sequences=True)),
    ])
    x = np.random.default_rng(5).normal(size=(2, K, 3)).astype("float32")
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), atol=1e-6)
    # Both carried the state of that first call into the second.
    np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), atol=1e-6)


# -- the TBPTTSequence / fit path -------------------------------------------


def integer_sequences(num, time):
    """x[n, t] = 1000 n + t, shape (num, time, 1): every step is labelled."""
    ids = 1000 * np.arange(num)[:, None] + np.arange(time)[None, :]
    return ids[..., None].astype("float32")


def check_epoch(data, x):
    """Every batch continues the previous one row by row (or starts a new
    group at t = 0), and every step of every served row appears once."""
    seen = collections.Counter()
    data.on_epoch_begin()  # as Keras does; the batches are then asked in order
    previous = None
    for j in range(len(data)):
        xb, yb, wb = data[j]
        assert xb.shape == (data.batch_size, K, 1)
        np.testing.assert_array_equal(yb, -xb)
        if data.is_first_chunk(j):
            np.testing.assert_array_equal(xb[:, 0, 0] % 1000, 0)
        else:
            np.testing.assert_array_equal(xb[:, 0, 0], previous[:, -1, 0] + 1)
        seen.update(xb[..., 0][wb > 0].astype(int).tolist())
        previous = xb
    rows = data.rows[:data.num_groups * data.batch_size]
    expected = x[rows, :, 0].astype(int).ravel().tolist()
    assert sorted(seen.elements()) == sorted(expected)
    assert set(seen.values()) == {1}
    data.on_epoch_end()
    return rows


def test_sequence_order_coverage_and_padding():
    x = integer_sequences(7, 10)  # 7 rows: 2 groups of 3, 1 row left out
    data = TBPTTSequence(x, -x, batch_size=3, chunk_length=K)
    assert (len(data), data.num_groups, data.chunks_per_sequence) == (6, 2, 3)
    rows = check_epoch(data, x)
    np.testing.assert_array_equal(rows, np.arange(6))
    # The last chunk: 2 real steps of weight 4 / 2 (the batch's loss is their
    # mean), then 2 padded steps of weight 0 and value 0.
    xb, _, wb = data[2]
    np.testing.assert_array_equal(wb, [[2.0, 2.0, 0.0, 0.0]] * 3)
    np.testing.assert_array_equal(xb[:, 2:], 0.0)
    np.testing.assert_array_equal(data.locate(5)[0], [3, 4, 5])

    # merge_chunks undoes the batching (as for model.predict's output).
    merged = data.merge_chunks(np.concatenate([data[j][0] for j in range(6)]))
    np.testing.assert_array_equal(merged, x[:6])


def test_sequence_shuffles_rows_between_epochs_keeping_chunk_order():
    x = integer_sequences(7, 10)
    data = TBPTTSequence(x, -x, batch_size=3, chunk_length=K, shuffle=True,
                         seed=0)
    orders = [tuple(check_epoch(data, x)) for _ in range(4)]
    assert len(set(orders)) > 1


def test_remainder_drop_and_user_sample_weight():
    x = integer_sequences(4, 10)
    data = TBPTTSequence(x, -x, batch_size=2, chunk_length=K,
                         remainder="drop")
    assert (len(data), data.steps) == (4, 8)
    batch = data[1]
    assert len(batch) == 2  # no padding, so no sample weights
    np.testing.assert_array_equal(batch[0][:, :, 0], x[:2, K:2 * K, 0])

    weights = np.arange(40, dtype="float32").reshape(4, 10)
    data = TBPTTSequence(x, -x, batch_size=2, chunk_length=K,
                         sample_weight=weights)
    np.testing.assert_array_equal(data[1][2], weights[:2, K:2 * K])
    np.testing.assert_array_equal(
        data[2][2], np.pad(weights[:2, 2 * K:] * 2, ((0, 0), (0, 2))))


def summing_model(batch):
    """h_t = h_{t-1} + x_t: the output is the running sum of the inputs since
    the last reset."""
    rnn = keras_rnn.SimpleRNN(1, activation="linear", return_sequences=True,
                              kernel_initializer="ones",
                              recurrent_initializer="ones")
    return keras.Sequential([keras.Input(batch_shape=(batch, None, 1)),
                             StatefulRNN(rnn)])


def test_predict_carries_state_within_sequences_and_resets_between():
    x = integer_sequences(6, 10) / 1000.0
    data = TBPTTSequence(x, batch_size=3, chunk_length=K)
    model = summing_model(3)
    outputs = model.predict(data, callbacks=[TBPTTResetStates(data)],
                            verbose=0)
    np.testing.assert_allclose(data.merge_chunks(outputs),
                               np.cumsum(x, axis=1), rtol=1e-5)
    # Without the callback, group 2 would continue from group 1's state.
    model.layers[0].reset_state()
    outputs = data.merge_chunks(model.predict(data, verbose=0))
    assert not np.allclose(outputs[3:], np.cumsum(x[3:], axis=1))


class RecordingReset(TBPTTResetStates):
    """Records where it resets the states."""

    def __init__(self, *args):
        super().__init__(*args)
        self.where = None
        self.log = []

    def on_train_batch_begin(self, batch, logs=None):
        self.where = batch
        super().on_train_batch_begin(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self.where = "epoch end"
        super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        self.where = "train end"
        super().on_train_end(logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self.where = f"predict {batch}"
        super().on_predict_batch_begin(batch, logs)

    def reset(self):
        self.log.append(self.where)
        super().reset()


def test_fit_with_carried_state_learns_what_reset_states_cannot():
    """y_t = x_{t-2} for random bits x: at the first 2 steps of every chunk
    the answer lies in the previous chunk. Carried state can hold it; a
    model whose state starts from zero at every chunk can only guess."""
    num, time, batch, delay, epochs = 32, 6 * K, 16, 2, 8
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(num, time, 1)).astype("float32")
    y = np.zeros_like(x)
    y[:, delay:] = x[:, :-delay]
    data = TBPTTSequence(x, y, batch_size=batch, chunk_length=K)
    steps = np.arange(time)
    across = (steps >= delay) & (steps % K < delay)  # answer in last chunk

    results = {}
    for carry in (True, False):
        keras.utils.set_random_seed(0)
        rnn = keras_rnn.GRU(8, return_sequences=True)
        model = keras.Sequential([
            keras.Input(batch_shape=(batch, K, 1)),
            StatefulRNN(rnn) if carry else rnn,
            keras.layers.Dense(1, activation="sigmoid"),
        ])
        model.compile(keras.optimizers.Adam(0.02), "binary_crossentropy")
        recorder = RecordingReset(data)
        callbacks = [recorder] if carry else []
        history = model.fit(data, epochs=epochs, shuffle=False, verbose=0,
                            callbacks=callbacks)
        p = data.merge_chunks(model.predict(data, callbacks=callbacks,
                                            verbose=0))
        accuracy = ((p[..., 0] > 0.5) == (y[..., 0] > 0.5))[:, across].mean()
        results[carry] = (history.history["loss"], accuracy, recorder.log)

    (carried_loss, carried_acc, log), (reset_loss, reset_acc, _) = (
        results[True], results[False])
    assert carried_loss[-1] < 0.5 * carried_loss[0]
    assert carried_loss[-1] < 0.1 < 0.2 < reset_loss[-1]
    assert carried_acc > 0.95 and reset_acc < 0.75
    # Resets: before the first chunk of each group (batches 0 and 6) and at
    # every epoch end, then before each group in predict, nowhere else.
    assert log == ([0, 6, "epoch end"] * epochs
                   + ["train end", "predict 0", "predict 6"])


def test_fit_refuses_keras_shuffled_batches():
    x = np.zeros((4, 10 * K, 1), "float32")
    data = TBPTTSequence(x, x, batch_size=2, chunk_length=K)
    model = summing_model(2)
    model.compile("sgd", "mse")
    with pytest.raises(Exception, match="shuffle=False"):
        model.fit(data, epochs=1, verbose=0,
                  callbacks=[TBPTTResetStates(data)])  # shuffle=True default


def test_keras_stateful_layers_are_refused_on_jax_only():
    x = integer_sequences(4, 2 * K) / 1000.0
    data = TBPTTSequence(x, batch_size=2, chunk_length=K)
    rnn = keras.layers.SimpleRNN(1, activation="linear", stateful=True,
                                 return_sequences=True,
                                 kernel_initializer="ones",
                                 recurrent_initializer="ones")
    model = keras.Sequential([keras.Input(batch_shape=(2, None, 1)), rnn])
    callbacks = [TBPTTResetStates(data)]
    if BACKEND == "jax":
        with pytest.raises(ValueError, match="StatefulRNN"):
            model.predict(data, callbacks=callbacks, verbose=0)
    else:
        outputs = model.predict(data, callbacks=callbacks, verbose=0)
        np.testing.assert_allclose(data.merge_chunks(outputs),
                                   np.cumsum(x, axis=1), rtol=1e-5)


# -- arguments ---------------------------------------------------------------

X = np.zeros((4, 10, 2), "float32")
Y = np.zeros((4, 10, 1), "float32")


@pytest.mark.parametrize("kwargs, name", [
    (dict(chunk_length=0), "chunk_length"),
    (dict(chunk_length=2.5), "chunk_length"),
    (dict(chunk_length=True), "chunk_length"),
    (dict(chunk_length=11, remainder="drop"), "chunk_length"),
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=5), "batch_size"),
    (dict(remainder="cut"), "remainder"),
    (dict(shuffle="yes"), "shuffle"),
    (dict(y=Y[:3]), "y"),
    (dict(y=Y[:, :9]), "y"),
    (dict(x=X[:, 0]), "x"),
    (dict(x=[X, X[:, :9]]), "x"),
    (dict(sample_weight=np.ones((4, 9))), "sample_weight"),
    (dict(y=None, sample_weight=np.ones((4, 10))), "sample_weight"),
])
def test_sequence_bad_arguments_raise_value_error_naming_them(kwargs, name):
    arguments = dict(x=X, y=Y, batch_size=2, chunk_length=K)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=f"`{name}`"):
        TBPTTSequence(**arguments)


def test_other_bad_arguments_raise_value_error_naming_them():
    data = TBPTTSequence(X, Y, batch_size=2, chunk_length=K)
    with pytest.raises(ValueError, match="`outputs`"):
        data.merge_chunks(np.zeros((len(data) * 2, K + 1, 1)))
    with pytest.raises(ValueError, match="`sequence`"):
        TBPTTResetStates(X)
    with pytest.raises(ValueError, match="`validation_sequence`"):
        TBPTTResetStates(data, validation_sequence=[X])

    rnn = keras_rnn.GRU(3, return_sequences=True, return_state=True)
    with pytest.raises(ValueError, match="`chunk_length`"):
        chunked_forward(rnn, X, 0)
    with pytest.raises(ValueError, match="`layer`.*return_sequences"):
        chunked_forward(keras_rnn.GRU(3, return_state=True), X, K)
    with pytest.raises(ValueError, match="`layer`.*return_state"):
        chunked_forward(keras_rnn.GRU(3, return_sequences=True), X, K)
    with pytest.raises(ValueError, match="`layer`.*stateful"):
        chunked_forward(keras_rnn.GRU(3, return_sequences=True,
                                      return_state=True, stateful=True), X, K)

    with pytest.raises(ValueError, match="`layer`.*stateful"):
        StatefulRNN(keras_rnn.GRU(3, stateful=True))
    with pytest.raises(ValueError, match="`layer`"):
        StatefulRNN(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="batch_shape"):
        keras.Sequential([keras.Input((None, 2)),
                          StatefulRNN(keras_rnn.GRU(3))])

    model = summing_model(2)
    model.compile("sgd", "mse", steps_per_execution=2)
    with pytest.raises(ValueError, match="steps_per_execution"):
        model.fit(TBPTTSequence(X[..., :1], Y, batch_size=2, chunk_length=K),
                  shuffle=False, verbose=0, callbacks=[TBPTTResetStates(data)])
