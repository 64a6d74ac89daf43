"""Truncated backpropagation through time (TBPTT) for Keras 3.

Backpropagation through time over a sequence of `T` steps keeps every step's
activations until the backward pass and makes one update per sequence.
TBPTT (Williams & Peng 1990, "An efficient gradient-based algorithm for
on-line training of recurrent network trajectories", Neural Computation 2(4);
written TBPTT(k1, k2) in Sutskever 2013, "Training Recurrent Neural
Networks", PhD thesis, University of Toronto: an update every k1 steps,
gradients through k2) cuts the sequence into consecutive chunks of `k`
steps and, for the chunk `c` of every sequence,

    h_0^(c)   = stop_gradient(h_k^(c-1))         # h_0^(1) = 0
    h_k^(c)   = RNN(x^(c), h_0^(c); theta)       # forward k steps
    theta    <- theta - lr * d L^(c)(theta; x^(c), h_0^(c)) / d theta

so the forward pass sees the whole past through the carried state while
gradients flow back at most `k` steps, memory is `O(k)` rather than `O(T)`,
and there are `T / k` updates per sequence: TBPTT(k, k).

Two ways to use it, on any Keras backend:

- `model.fit(..., shuffle=False)` with recurrent layers wrapped in
  `StatefulRNN`, a `TBPTTSequence` that serves the chunks in order, and the
  `TBPTTResetStates` callback that zeroes the states at the first chunk of
  every new group of sequences. `StatefulRNN` carries a layer's final state
  into its next call in non-trainable variables, which gradients do not
  flow through, so the stop at chunk boundaries is implicit.
- `chunked_forward` for custom training loops: runs a non-stateful layer
  chunk by chunk, passing the state explicitly and applying
  `keras.ops.stop_gradient` to it at every boundary.

Why a wrapper rather than `stateful=True`: Keras 3.15 keeps a stateful RNN's
states in variables that it does not track, so they are not among the
model's `non_trainable_variables`. The TensorFlow trainer reads and assigns
them directly and carries them fine; the JAX trainer's compiled steps only
thread tracked variables through, so there the state is frozen at the value
it had when the step was traced (zeros, typically) and never carried.
`StatefulRNN` keeps the state in tracked variables, which both trainers
thread through, as they do BatchNormalization's moving statistics.
"""

import warnings

import keras
import numpy as np
from keras import ops

from keras_rnn._checks import check_positive_int




def _as_arrays(name, data, min_ndim):
    """`data` (an array or a nest of arrays) as numpy, checked for rank."""
    data = keras.tree.map_structure(np.asarray, data)
    for array in keras.tree.flatten(data):
        if array.ndim < min_ndim:
            raise ValueError(
                f"Argument `{name}` must hold arrays of shape "
                "`(num_sequences, time, ...)`, got an array of shape "
                f"{array.shape}."
            )
    return data


def _leading_shape(name, data):
    """The common `(num_sequences, time)` of the arrays in `data`."""
    shapes = {array.shape[:2] for array in keras.tree.flatten(data)}
    if len(shapes) != 1:
        raise ValueError(
            f"The arrays of argument `{name}` must share their first two "
            f"dimensions `(num_sequences, time)`, got {sorted(shapes)}."
        )
    return shapes.pop()


class TBPTTSequence(keras.utils.PyDataset):
    """Serves `(batch, chunk_length)` chunks of long sequences, in TBPTT order.

    `N` sequences of `T` steps are split into groups of `batch_size`
    sequences, and each group into `ceil(T / chunk_length)` consecutive
    chunks of its time axis. Batches come out group by group and, within a
    group, chunk by chunk: row `i` of batch `j + 1` is the continuation of
    row `i` of batch `j`, unless batch `j + 1` starts a new group. Fed to
    `model.fit` together with recurrent layers wrapped in `StatefulRNN` and
    the `TBPTTResetStates` callback, each batch continues from the state the
    previous one left, gradients stop at chunk boundaries, and the optimizer
    makes one update per chunk: TBPTT(k, k) with `k = chunk_length`.

    Rows: carried states need the same batch size at every step, so the
    last `N % batch_size` rows of the current order are left out of an epoch
    (different ones each epoch with `shuffle=True`).

    Time: when `chunk_length` does not divide `T`, `remainder="pad"` pads the
    last chunk with zeros to `chunk_length` steps and gives those steps
    sample weight 0, and its `r` real steps weight `chunk_length / r` (as
    Keras does for masks, so that the default `"sum_over_batch_size"` loss
    of that batch is the mean over its real steps). Every batch then has one
    static shape, so the train step compiles once; and all batches carry
    sample weights: compile plain metrics as `weighted_metrics` to keep the
    padded steps out of them. `remainder="drop"` leaves the last
    `T % chunk_length` steps out instead.

    Every batch has the static shape `(batch_size, chunk_length, ...)`:
    build the model with `keras.Input(batch_shape=(batch_size, None, ...))`
    (or `chunk_length` for the time axis).

    Args:
        x: inputs, an array `(N, T, ...)` or a list / tuple / dict of them.
        y: per-step targets, an array `(N, T, ...)` or a nest of them; None
            for prediction.
        batch_size: sequences per batch, the batch size of the carried
            states.
        chunk_length: `k`, steps per chunk: how far back gradients reach.
        sample_weight: optional per-step weights `(N, T)`; needs `y`.
        shuffle: whether to draw a new random assignment of sequences to
            groups at every epoch end (and at construction). The chunks of a
            sequence always stay in order. `model.fit` must get
            `shuffle=False`: Keras 3.15 shuffles a `PyDataset`'s batch
            order otherwise (its documentation says it does not), and this
            class raises a `ValueError` when it sees batches asked for out of
            order.
        remainder: `"pad"` or `"drop"`, what to do with the last
            `T % chunk_length` steps (see above).
        seed: seed of the shuffling.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`,
            `use_multiprocessing`, `max_queue_size`). Keras keeps the batch
            order with several workers, but this class checks the order only
            with one worker in the main process (the default).

    Example:

    >>> x = np.random.rand(64, 200, 3).astype("float32")  # 64 sequences
    >>> y = np.random.rand(64, 200, 1).astype("float32")  # per-step targets
    >>> data = TBPTTSequence(x, y, batch_size=16, chunk_length=50)
    >>> len(data)  # 4 groups of 16 sequences x 4 chunks
    16
    >>> model = keras.Sequential([
    ...     keras.Input(batch_shape=(16, None, 3)),
    ...     StatefulRNN(keras_rnn.LSTM(32, return_sequences=True)),
    ...     keras.layers.Dense(1)])
    >>> model.compile("adam", "mse")
    >>> model.fit(data, epochs=2, shuffle=False,
    ...           callbacks=[TBPTTResetStates(data)])
    """

    def __init__(
        self,
        x,
        y=None,
        *,
        batch_size,
        chunk_length,
        sample_weight=None,
        shuffle=False,
        remainder="pad",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.chunk_length = check_positive_int("chunk_length", chunk_length)
        if remainder not in ("pad", "drop"):
            raise ValueError(
                "Argument `remainder` must be 'pad' or 'drop', "
                f"got {remainder!r}."
            )
        self.remainder = remainder
        if not isinstance(shuffle, bool):
            raise ValueError(
                f"Argument `shuffle` must be a bool, got {shuffle!r}."
            )
        self.shuffle = shuffle

        self.x = _as_arrays("x", x, 2)
        if not keras.tree.flatten(self.x):
            raise ValueError("Argument `x` holds no arrays.")
        self.num_sequences, self.time = _leading_shape("x", self.x)
        self.y = None
        if y is not None:
            self.y = _as_arrays("y", y, 2)
            self._check_matches_x("y", self.y)
        self.sample_weight = None
        if sample_weight is not None:
            if y is None:
                raise ValueError(
                    "Argument `sample_weight` needs targets `y`, got y=None."
                )
            self.sample_weight = np.asarray(sample_weight, dtype="float32")
            if self.sample_weight.shape != (self.num_sequences, self.time):
                raise ValueError(
                    "Argument `sample_weight` must have shape "
                    f"(num_sequences, time) = "
                    f"{(self.num_sequences, self.time)}, "
                    f"got {self.sample_weight.shape}."
                )

        if self.num_sequences < self.batch_size:
            raise ValueError(
                f"Argument `batch_size` ({self.batch_size}) must not exceed "
                f"the number of sequences in `x` ({self.num_sequences})."
            )
        self.num_groups = self.num_sequences // self.batch_size
        if remainder == "drop":
            if self.time < self.chunk_length:
                raise ValueError(
                    f"Argument `chunk_length` ({self.chunk_length}) is longer "
                    f"than the sequences ({self.time} steps), which "
                    "remainder='drop' would drop entirely."
                )
            self.chunks_per_sequence = self.time // self.chunk_length
            self.steps = self.chunks_per_sequence * self.chunk_length
        else:
            self.chunks_per_sequence = -(-self.time // self.chunk_length)
            self.steps = self.time
        # Padding needs sample weights in every batch: the structure of the
        # batches must not change from one to the next.
        padded = self.chunks_per_sequence * self.chunk_length > self.steps
        self._weighted = self.y is not None and (
            padded or self.sample_weight is not None
        )
        self._rng = np.random.default_rng(seed)
        self.rows = np.arange(self.num_sequences)
        if self.shuffle:
            self.rows = self._rng.permutation(self.num_sequences)
        # Between on_epoch_begin and on_epoch_end, the next index Keras
        # should ask for (see `_check_order`).
        self._next_index = None

    def _check_matches_x(self, name, data):
        shape = _leading_shape(name, data)
        if shape != (self.num_sequences, self.time):
            raise ValueError(
                f"Argument `{name}` must have the same number of sequences "
                f"and steps as `x`, (num_sequences, time) = "
                f"{(self.num_sequences, self.time)}, got {shape}."
            )

    def __len__(self):
        return self.num_groups * self.chunks_per_sequence

    def is_first_chunk(self, index):
        """Whether batch `index` starts a new group (its states start at 0).

        Args:
            index: batch index within the epoch.

        Returns:
            bool.
        """
        return index % self.chunks_per_sequence == 0

    def locate(self, index):
        """Where batch `index` comes from.

        Args:
            index: batch index within the epoch, `0 <= index < len(self)`.

        Returns:
            `(rows, start, stop)`: the indices into `x` of its sequences, in
            batch order, and its time steps `start:stop` (`stop - start` can
            be less than `chunk_length` for a padded last chunk).
        """
        if not 0 <= index < len(self):
            raise IndexError(
                f"Batch index {index} out of range [0, {len(self)})."
            )
        group, chunk = divmod(index, self.chunks_per_sequence)
        rows = self.rows[group * self.batch_size:(group + 1) * self.batch_size]
        start = chunk * self.chunk_length
        stop = min(start + self.chunk_length, self.steps)
        return rows, start, stop

    def _take(self, array, rows, start, stop):
        chunk = array[rows, start:stop]  # (batch, <= chunk_length, ...)
        missing = self.chunk_length - (stop - start)
        if missing:
            pad = [(0, 0)] * chunk.ndim
            pad[1] = (0, missing)
            chunk = np.pad(chunk, pad)
        return chunk

    def _check_order(self, index):
        """Raises if Keras asks for the batches of an epoch out of order.

        Keras 3's `fit` shuffles the order of a `PyDataset`'s batches when
        its `shuffle` argument is True (the default), which would feed each
        chunk after an unrelated one. With one worker the batches are asked
        for in order (after `0, 1` once on TensorFlow, to read their
        shapes); with several, or in other processes, the calls can
        interleave, and nothing is checked.
        """
        if self._next_index is None or self.workers > 1 or (
            self.use_multiprocessing and self.workers > 0
        ):
            return
        expected, self._next_index = self._next_index, index + 1
        if index not in (expected, 0):
            self._next_index = None  # raise once per epoch
            raise ValueError(
                f"TBPTTSequence: Keras asked for batch {index} where batch "
                f"{expected} comes next. Pass `shuffle=False` to "
                "`model.fit`: Keras shuffles the batch order of a PyDataset "
                "by default, which breaks the chunk order TBPTT needs (use "
                "TBPTTSequence(..., shuffle=True) to shuffle sequences)."
            )

    def __getitem__(self, index):
        self._check_order(index)
        rows, start, stop = self.locate(index)
        take = lambda array: self._take(array, rows, start, stop)  # noqa: E731
        x = keras.tree.map_structure(take, self.x)
        if self.y is None:
            return (x,)
        y = keras.tree.map_structure(take, self.y)
        if not self._weighted:
            return x, y
        real = stop - start
        weight = np.zeros((self.batch_size, self.chunk_length), "float32")
        weight[:, :real] = self.chunk_length / real
        if self.sample_weight is not None:
            weight[:, :real] *= self.sample_weight[rows, start:stop]
        return x, y, weight

    def on_epoch_begin(self):
        self._next_index = 0

    def on_epoch_end(self):
        self._next_index = None
        if self.shuffle:
            self.rows = self._rng.permutation(self.num_sequences)

    def merge_chunks(self, outputs):
        """Puts per-batch outputs (of `model.predict(self)`) back in place.

        Args:
            outputs: array `(len(self) * batch_size, chunk_length, ...)`,
                the batches concatenated in order.

        Returns:
            Array `(num_groups * batch_size, steps, ...)` whose row `i`
            belongs to sequence `self.rows[i]` of `x` (`rows` is
            `arange(N)` without shuffling), `steps` being `T`, or with
            `remainder="drop"` the steps kept; padded steps are removed.
        """
        if self.shuffle:
            raise ValueError(
                "`merge_chunks` needs a sequence built with shuffle=False: "
                "the row order changes at every epoch end, predict included."
            )
        outputs = np.asarray(outputs)
        expected = len(self) * self.batch_size
        if outputs.shape[:2] != (expected, self.chunk_length):
            raise ValueError(
                "Argument `outputs` must have shape (len(self) * batch_size, "
                f"chunk_length, ...) = ({expected}, {self.chunk_length}, ...), "
                f"got {outputs.shape}."
            )
        tail = outputs.shape[2:]
        # (groups, chunks, batch, k, ...) -> (groups, batch, chunks, k, ...)
        outputs = outputs.reshape(
            (self.num_groups, self.chunks_per_sequence, self.batch_size,
             self.chunk_length) + tail
        )
        outputs = np.swapaxes(outputs, 1, 2)
        outputs = outputs.reshape(
            (self.num_groups * self.batch_size,
             self.chunks_per_sequence * self.chunk_length) + tail
        )
        return outputs[:, :self.steps]


register = keras.saving.register_keras_serializable(package="keras_rnn")


@register
class StatefulRNN(keras.layers.Wrapper):
    """Carries a recurrent layer's final state into its next call.

    What `stateful=True` does, on every backend, `fit` on JAX included (see
    the module docstring): the state lives in non-trainable variables
    `(batch_size, state_size)` of this wrapper; each call starts the wrapped
    layer from them and writes its final state back,

        outputs, *s_T = layer(x, initial_state=stop_gradient(s_0))
        s_0 <- s_T

    so consecutive batches continue each other row by row and gradients do
    not cross from one batch into the previous one. `reset_state()` zeroes
    the state (`TBPTTResetStates` calls it where a new group of sequences
    starts). The batch size must be static: build the model with
    `keras.Input(batch_shape=(batch_size, ...))`.

    The state variables are weights of the model: `get_weights()` and saved
    files include them, with the training batch size in their shape. To use
    trained layers at another batch size, wrap the same (shared) layer
    again, or copy the wrapped layer's weights
    (`new.layer.set_weights(old.layer.get_weights())`).

    Args:
        layer: a non-stateful recurrent layer taking `initial_state` and
            `mask` (`keras_rnn.LSTM`/`GRU`/`SimpleRNN`, `keras.layers.RNN`
            and its subclasses). The wrapper switches it to
            `return_state=True` to read the final state.
        return_state: whether to return `[outputs, *states]` rather than the
            layer's outputs alone.
        **kwargs: `keras.layers.Layer` arguments (`name`, ...).

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input(batch_shape=(32, None), dtype="int32"),
    ...     keras.layers.Embedding(100, 16),
    ...     StatefulRNN(keras_rnn.LSTM(128, return_sequences=True)),
    ...     keras.layers.Dense(100)])
    """

    def __init__(self, layer, return_state=False, **kwargs):
        super().__init__(layer, **kwargs)
        if getattr(layer, "stateful", False):
            raise ValueError(
                "Argument `layer` must not be stateful: StatefulRNN keeps the "
                f"state itself. Build {layer.name!r} with stateful=False."
            )
        if not hasattr(layer, "return_state") or not callable(
            getattr(layer, "get_initial_state", None)
        ):
            raise ValueError(
                "Argument `layer` must be a recurrent layer with "
                "`return_state` and `get_initial_state` (a keras.layers.RNN), "
                f"got {type(layer).__name__}."
            )
        layer.return_state = True
        self.return_state = bool(return_state)
        self.stateful = True
        self.supports_masking = True
        self.states = None

    def build(self, input_shape):
        batch_size = input_shape[0]
        if batch_size is None:
            raise ValueError(
                "StatefulRNN needs a static batch size: build the model with "
                "`keras.Input(batch_shape=(batch_size, ...))`. Got input "
                f"shape {tuple(input_shape)}."
            )
        super().build(input_shape)
        initial = self.layer.get_initial_state(batch_size)
        initial = initial if isinstance(initial, (list, tuple)) else [initial]
        self.states = [
            self.add_weight(
                shape=tuple(state.shape),
                initializer="zeros",
                trainable=False,
                name=f"state_{i}",
            )
            for i, state in enumerate(initial)
        ]

    def call(self, inputs, mask=None, training=None):
        initial_state = [ops.stop_gradient(s.value) for s in self.states]
        result = self.layer(
            inputs, initial_state=initial_state, mask=mask, training=training
        )
        outputs, states = result[0], list(result[1:])
        for variable, state in zip(self.states, states):
            variable.assign(ops.cast(state, variable.dtype))
        if self.return_state:
            return [outputs] + states
        return outputs

    def compute_output_shape(self, input_shape):
        shapes = self.layer.compute_output_shape(input_shape)
        return shapes if self.return_state else shapes[0]

    def compute_mask(self, inputs, mask=None):
        masks = self.layer.compute_mask(inputs, mask)  # [outputs, *states]
        if self.return_state or not isinstance(masks, (list, tuple)):
            return masks
        return masks[0]

    def reset_state(self):
        """Zeroes the carried state."""
        if self.states is not None:
            for variable in self.states:
                variable.assign(ops.zeros(variable.shape, variable.dtype))

    def reset_states(self):
        """Alias of `reset_state`, as Keras's RNN layers have."""
        self.reset_state()

    def get_config(self):
        return {**super().get_config(), "return_state": self.return_state}


def stateful_layers(model):
    """The layers of `model` (itself included, nested ones too) with
    `stateful=True` and a `reset_state` method."""
    # `_flatten_layers` is private (Keras is pinned to 3.15.x in setup.cfg);
    # Keras 3 has no public recursive walk over a model's layers.
    return [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if getattr(layer, "stateful", False)
        and callable(getattr(layer, "reset_state", None))
    ]


def reset_rnn_states(model):
    """Zeroes the state of every stateful layer of `model`.

    Keras 3 models have no `reset_states`; this calls `reset_state()` on each
    of `stateful_layers(model)`. Safe inside `fit`/`evaluate`/`predict` on
    the JAX backend too: it first writes the trainer's in-flight state back
    to the variables (`jax_state_sync`), so that the trainer reads the
    zeroed states at its next step.

    Args:
        model: a `keras.Model` or layer.

    Returns:
        The number of layers reset.
    """
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync):
        sync()
    layers = stateful_layers(model)
    for layer in layers:
        layer.reset_state()
    return len(layers)


class TBPTTResetStates(keras.callbacks.Callback):
    """Resets a model's recurrent states where a `TBPTTSequence` says so.

    Before each batch that starts a new group of sequences
    (`sequence.is_first_chunk(batch)`: the first batch of every epoch
    included) and at every epoch end, zeroes the state of every stateful
    layer (`reset_rnn_states`). Also handles `evaluate` and `predict` over a
    `TBPTTSequence`: during `fit`, test batches (validation) follow
    `validation_sequence`; outside `fit`, `sequence`. With no sequence for
    a phase, the states are reset once, before its first batch.

    States cannot be reset between the steps of one execution, so the model
    must be compiled with `steps_per_execution=1` (the default).

    Args:
        sequence: the `TBPTTSequence` given to `fit` (or to `evaluate` /
            `predict` when the callback is passed there).
        validation_sequence: the `TBPTTSequence` given to `fit` as
            `validation_data`, if any.

    Example:

    >>> train = TBPTTSequence(x, y, batch_size=32, chunk_length=50)
    >>> val = TBPTTSequence(x_val, y_val, batch_size=32, chunk_length=50)
    >>> model.fit(train, validation_data=val, epochs=5, shuffle=False,
    ...           callbacks=[TBPTTResetStates(train, val)])
    """

    def __init__(self, sequence, validation_sequence=None):
        super().__init__()
        for name, value in (("sequence", sequence),
                            ("validation_sequence", validation_sequence)):
            if value is not None and not isinstance(value, TBPTTSequence):
                raise ValueError(
                    f"Argument `{name}` must be a TBPTTSequence, "
                    f"got {type(value).__name__}."
                )
        self.sequence = sequence
        self.validation_sequence = validation_sequence
        self._in_fit = False

    def reset(self):
        """Zeroes the model's states; subclasses may extend it."""
        reset_rnn_states(self.model)

    def _check_model(self):
        steps = getattr(self.model, "steps_per_execution", 1) or 1
        if steps != 1:
            raise ValueError(
                "TBPTTResetStates needs the model compiled with "
                f"`steps_per_execution=1`, got {steps}: states cannot be "
                "reset between the steps of one execution."
            )
        if keras.backend.backend() == "jax":
            tracked = {id(v) for v in self.model.variables}
            for layer in stateful_layers(self.model):
                states = getattr(layer, "states", None) or []
                states = keras.tree.flatten(states)
                if any(id(v) not in tracked for v in states):
                    raise ValueError(
                        f"Layer {layer.name!r} is stateful=True, whose state "
                        "the JAX trainer does not carry from one batch to the "
                        "next in Keras 3 (it keeps the state in untracked "
                        "variables). Build it with stateful=False and wrap it "
                        "in keras_rnn.StatefulRNN."
                    )
        if not stateful_layers(self.model):
            warnings.warn(
                "TBPTTResetStates: the model has no stateful layer, so no "
                "state is carried from one chunk to the next. Wrap its "
                "recurrent layers in keras_rnn.StatefulRNN.",
                stacklevel=2,
            )

    def _maybe_reset(self, sequence, batch):
        if sequence is None:
            if batch == 0:
                self.reset()
        elif sequence.is_first_chunk(batch):
            self.reset()

    def on_train_begin(self, logs=None):
        self._in_fit = True
        self._check_model()

    def on_train_end(self, logs=None):
        self._in_fit = False
        self.reset()

    def on_train_batch_begin(self, batch, logs=None):
        self._maybe_reset(self.sequence, batch)

    def on_epoch_end(self, epoch, logs=None):
        self.reset()

    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self._check_model()

    def on_test_batch_begin(self, batch, logs=None):
        sequence = self.validation_sequence if self._in_fit else self.sequence
        self._maybe_reset(sequence, batch)

    def on_predict_begin(self, logs=None):
        self._check_model()

    def on_predict_batch_begin(self, batch, logs=None):
        self._maybe_reset(self.sequence, batch)


def chunked_forward(
    layer,
    inputs,
    chunk_length,
    initial_state=None,
    *,
    stop_gradient=True,
    training=None,
):
    """Runs a recurrent layer chunk by chunk, carrying the state explicitly.

    For custom training loops (`tf.GradientTape`, `jax.grad`):

        outputs_c, *state = layer(inputs[:, c*k:(c+1)*k], initial_state=state)
        state = [stop_gradient(s) for s in state]

    With `stop_gradient=True` the gradient of a loss on these outputs is the
    TBPTT gradient: the loss of chunk `c` reaches the inputs and weights
    through chunk `c` only, the incoming state being a constant. The
    forward values are those of one call over the whole sequence (up to
    rounding). Summing the chunk losses and taking one step accumulates the
    truncated gradients of all chunks; for TBPTT(k, k) proper, take one
    optimizer step per chunk (or use `TBPTTSequence` with `fit`).

    Args:
        layer: a non-stateful recurrent layer built with
            `return_sequences=True, return_state=True` (any callable
            `layer(x, initial_state=..., training=...)` returning
            `[outputs, *states]`).
        inputs: `(batch, time, features)`. `time` need not be a multiple of
            `chunk_length`: the last chunk is then shorter.
        chunk_length: `k`, steps per chunk.
        initial_state: list of state tensors for the first chunk, or None
            for the layer's zeros.
        stop_gradient: whether to cut the gradient at chunk boundaries
            (False gives full backpropagation through time, for comparison).
        training: passed to `layer`.

    Returns:
        `(outputs, states)`: outputs `(batch, time, units)` of all chunks
        concatenated along time, and the list of final states.

    Example:

    >>> lstm = keras_rnn.LSTM(16, return_sequences=True, return_state=True)
    >>> outputs, (h, c) = chunked_forward(lstm, np.zeros((2, 100, 3)), 25)
    >>> outputs.shape
    (2, 100, 16)
    """
    chunk_length = check_positive_int("chunk_length", chunk_length)
    for flag in ("return_sequences", "return_state"):
        if getattr(layer, flag, True) is not True:
            raise ValueError(
                f"Argument `layer` must be built with {flag}=True, "
                f"got {getattr(layer, 'name', layer)!r} with {flag}=False."
            )
    if getattr(layer, "stateful", False):
        raise ValueError(
            "Argument `layer` must not be stateful: `chunked_forward` passes "
            "the state from chunk to chunk itself."
        )
    time = inputs.shape[1]
    if time is None:
        raise ValueError(
            "Argument `inputs` must have a static time dimension, got shape "
            f"{tuple(inputs.shape)}."
        )
    state = None if initial_state is None else list(initial_state)
    outputs = []
    for start in range(0, time, chunk_length):
        chunk = inputs[:, start:start + chunk_length]  # (batch, <= k, features)
        if state is None:
            result = layer(chunk, training=training)
        else:
            result = layer(chunk, initial_state=state, training=training)
        output, state = result[0], list(result[1:])
        outputs.append(output)  # (batch, <= k, units)
        if stop_gradient:
            state = [ops.stop_gradient(s) for s in state]
    return ops.concatenate(outputs, axis=1), state  # (batch, time, units)
