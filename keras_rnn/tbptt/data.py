"""`TBPTTSequence`: the chunks of a batch of sequences, in training order (see `keras_rnn.tbptt`)."""

import keras
import numpy as np

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
