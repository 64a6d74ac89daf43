"""Attention mechanisms: `BahdanauAttention`, `LuongAttention` and the
`AttentionMemory` they prepare from the encoder outputs.

The Keras 3 successor to TensorFlow Addons' `BahdanauAttention` and
`LuongAttention` (`tfa.seq2seq.attention_wrapper`). TF Addons' calling
convention (the memory set on the mechanism) is the annex's
`keras_rnn.seq2seq.BahdanauAttention` and `LuongAttention`, over these.

An attention mechanism scores a query `s` (the decoder's state or output)
against every encoder output `h_j` ("values" or "memory"), turns the scores
into weights with a softmax over the unpadded source positions, and returns
the weighted sum of the values (the context vector):

    e_j = score(s, h_j),  alpha_j = softmax_j(e_j),  c = sum_j alpha_j h_j

Everything in `score` that depends only on `h_j` (the "keys", e.g. `U h_j`) is
computed once per source sentence by `compute_keys`, not at every decoder
step. The decoder cell that uses a mechanism is `keras_rnn.AttentionWrapper`
(`keras_rnn.attention_wrapper`).
"""

from typing import NamedTuple

import keras
from keras import ops

from keras_rnn._checks import check_units
from keras_rnn._checks import get_initializer

# Score given to padded source positions before the softmax; their weight is
# then set to exactly zero.
_MASKED_SCORE = -1e9


class AttentionMemory(NamedTuple):
    """What an attention mechanism attends over, prepared once per batch.

    Attributes:
        values: `(batch, source_time, value_dim)` encoder outputs `h_j`.
        keys: `(batch, source_time, key_dim)` the query-independent part of
            the score (`U h_j`, `W h_j` or `h_j`), from `compute_keys`.
        mask: `(batch, source_time)` boolean, True on real (unpadded) source
            positions; None when nothing is padded.
    """

    values: object
    keys: object
    mask: object


def masked_softmax(scores, mask):
    """Softmax over the last axis that gives padded positions weight 0.

    Args:
        scores: `(..., source_time)` float scores.
        mask: `(..., source_time)` boolean (True = real position) or None.

    Returns:
        float32 weights of the shape of `scores`; on each row they sum to 1
        over the real positions and are exactly 0 on the padded ones (a row
        with no real position is all zeros).
    """
    scores = ops.cast(scores, "float32")
    if mask is None:
        return ops.softmax(scores, axis=-1)
    scores = ops.where(mask, scores, _MASKED_SCORE)
    weights = ops.softmax(scores, axis=-1)
    return ops.where(mask, weights, 0.0)


class _AttentionMechanism(keras.layers.Layer):
    """Common call path: keys once, then score, masked softmax, context."""

    def __init__(self, units, kernel_initializer, **kwargs):
        super().__init__(**kwargs)
        self.units = check_units(units) if units is not None else None
        self.kernel_initializer = get_initializer(
            "kernel_initializer", kernel_initializer
        )

    def compute_keys(self, values):
        """The part of the score that depends only on the values.

        Args:
            values: `(batch, source_time, value_dim)` encoder outputs.

        Returns:
            `(batch, source_time, key_dim)` keys.
        """
        raise NotImplementedError

    def score(self, query, keys):
        """Unnormalized scores `e_j` of one query against every key.

        Args:
            query: `(batch, query_dim)`.
            keys: `(batch, source_time, key_dim)` from `compute_keys`.

        Returns:
            `(batch, source_time)` scores.
        """
        raise NotImplementedError

    def prepare(self, values, mask=None):
        """Builds the `AttentionMemory` for a batch of encoder outputs.

        Args:
            values: `(batch, source_time, value_dim)` encoder outputs.
            mask: `(batch, source_time)` boolean, True on real positions.

        Returns:
            `AttentionMemory(values, keys, mask)`.
        """
        if mask is not None:
            mask = ops.cast(mask, "bool")
        return AttentionMemory(values, self.compute_keys(values), mask)

    def call(self, query, values, values_mask=None, keys=None):
        """Attends with `query` over `values`.

        Args:
            query: `(batch, query_dim)`.
            values: `(batch, source_time, value_dim)`.
            values_mask: `(batch, source_time)` boolean, True on real
                positions (not named `mask`: that is Keras's propagated mask).
            keys: optional precomputed `compute_keys(values)`.

        Returns:
            `(context, weights)`: `(batch, value_dim)` context vector and
            `(batch, source_time)` float32 alignment weights.
        """
        if keys is None:
            keys = self.compute_keys(values)
        weights = masked_softmax(self.score(query, keys), values_mask)
        # (batch, 1, source_time) @ (batch, source_time, value_dim)
        context = ops.matmul(
            ops.expand_dims(ops.cast(weights, values.dtype), 1), values
        )
        return ops.squeeze(context, 1), weights

    def compute_output_spec(self, query, values, values_mask=None, keys=None):
        batch, time = values.shape[0], values.shape[1]
        return (
            keras.KerasTensor((batch, values.shape[-1]), dtype=self.compute_dtype),
            keras.KerasTensor((batch, time), dtype="float32"),
        )

    def get_config(self):
        config = {
            "units": self.units,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="keras_rnn")
class BahdanauAttention(_AttentionMechanism):
    """Additive attention (Bahdanau, Cho & Bengio 2015).

    Scores each encoder output `h_j` against the query `s` with

        e_j = v^T tanh(W s + U h_j)

    or, with `normalize=True` (weight normalization, Salimans & Kingma 2016,
    as in TF Addons' `normalize=True`),

        e_j = (g * v / ||v||)^T tanh(W s + U h_j + b)

    then `alpha = softmax(e)` over the unpadded positions and
    `c = sum_j alpha_j h_j`. `U h_j` is computed once per batch
    (`compute_keys`).

    Args:
        units: width of the hidden layer of the score (`W`, `U`, `v`).
        normalize: weight-normalize `v` and add the bias `b`.
        kernel_initializer: initializer for `W`, `U` and `v`.

    Call arguments:
        query: `(batch, query_dim)`.
        values: `(batch, source_time, value_dim)`.
        values_mask: `(batch, source_time)` boolean, True on real positions.
        keys: optional precomputed `compute_keys(values)`.

    Returns:
        `(context, weights)`, `(batch, value_dim)` and `(batch, source_time)`.

    Example:

    >>> attention = keras_rnn.BahdanauAttention(16)
    >>> context, weights = attention(np.ones((2, 8)), np.ones((2, 5, 12)))
    >>> context.shape, weights.shape
    ((2, 12), (2, 5))
    """

    def __init__(self, units, normalize=False,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(units, kernel_initializer, **kwargs)
        self.normalize = bool(normalize)

    def build(self, query_shape, values_shape):
        self.query_kernel = self.add_weight(
            name="query_kernel", shape=(query_shape[-1], self.units),
            initializer=self.kernel_initializer,
        )
        self.memory_kernel = self.add_weight(
            name="memory_kernel", shape=(values_shape[-1], self.units),
            initializer=self.kernel_initializer,
        )
        self.attention_v = self.add_weight(
            name="attention_v", shape=(self.units,),
            initializer=self.kernel_initializer,
        )
        if self.normalize:
            self.attention_g = self.add_weight(
                name="attention_g", shape=(),
                initializer=keras.initializers.Constant((1.0 / self.units) ** 0.5),
            )
            self.attention_b = self.add_weight(
                name="attention_b", shape=(self.units,), initializer="zeros"
            )
        self.built = True

    def compute_keys(self, values):
        return ops.matmul(values, self.memory_kernel)  # (batch, time, units)

    def score(self, query, keys):
        processed_query = ops.matmul(query, self.query_kernel)  # (batch, units)
        hidden = keys + ops.expand_dims(processed_query, 1)  # (batch, time, units)
        v = self.attention_v
        if self.normalize:
            hidden = hidden + self.attention_b
            v = self.attention_g * v / ops.sqrt(ops.sum(ops.square(v)))
        # A broadcast product and a sum, not a (batch, time, units) @ (units,)
        # matmul: TensorFlow lowers that to a Tensordot whose reshapes XLA
        # cannot compile inside a loop over batches of unknown shape.
        return ops.sum(ops.tanh(hidden) * v, axis=-1)  # (batch, time)

    def get_config(self):
        return {**super().get_config(), "normalize": self.normalize}


@keras.saving.register_keras_serializable(package="keras_rnn")
class LuongAttention(_AttentionMechanism):
    """Multiplicative attention (Luong, Pham & Manning 2015).

    Scores each encoder output `h_j` against the query `s` with one of

        dot:     e_j = s^T h_j                      (needs value_dim == query_dim)
        general: e_j = s^T W h_j
        concat:  e_j = v^T tanh(W [s; h_j]) = v^T tanh(W_s s + W_h h_j)

    optionally times a learned scalar `g` (`scale=True`, as TF Addons), then
    `alpha = softmax(e)` over the unpadded positions and
    `c = sum_j alpha_j h_j`. `W h_j` / `W_h h_j` are computed once per batch.

    Args:
        score_mode: "dot", "general" (TF Addons' `LuongAttention`) or
            "concat".
        units: hidden width of the "concat" score; unused otherwise.
        scale: multiply the score by a learned scalar `g` (initialized to 1).
        kernel_initializer: initializer for `W` (and `v`).

    Call arguments and returns: as `BahdanauAttention`.

    Example:

    >>> attention = keras_rnn.LuongAttention("general")
    >>> context, weights = attention(np.ones((2, 8)), np.ones((2, 5, 12)))
    >>> context.shape, weights.shape
    ((2, 12), (2, 5))
    """

    score_modes = ("dot", "general", "concat")

    def __init__(self, score_mode="general", units=None, scale=False,
                 kernel_initializer="glorot_uniform", **kwargs):
        if score_mode not in self.score_modes:
            raise ValueError(
                f"score_mode must be one of {self.score_modes}; got {score_mode!r}."
            )
        if score_mode == "concat" and units is None:
            raise ValueError("units is required with score_mode='concat'.")
        super().__init__(units, kernel_initializer, **kwargs)
        self.score_mode = score_mode
        self.scale = bool(scale)

    def build(self, query_shape, values_shape):
        query_dim, value_dim = query_shape[-1], values_shape[-1]
        if self.score_mode == "dot" and query_dim != value_dim:
            raise ValueError(
                "LuongAttention(score_mode='dot') needs queries and values of "
                f"the same width; got query_dim={query_dim}, "
                f"value_dim={value_dim}. Use score_mode='general'."
            )
        if self.score_mode == "general":
            self.memory_kernel = self.add_weight(
                name="memory_kernel", shape=(value_dim, query_dim),
                initializer=self.kernel_initializer,
            )
        elif self.score_mode == "concat":
            self.query_kernel = self.add_weight(
                name="query_kernel", shape=(query_dim, self.units),
                initializer=self.kernel_initializer,
            )
            self.memory_kernel = self.add_weight(
                name="memory_kernel", shape=(value_dim, self.units),
                initializer=self.kernel_initializer,
            )
            self.attention_v = self.add_weight(
                name="attention_v", shape=(self.units,),
                initializer=self.kernel_initializer,
            )
        if self.scale:
            self.attention_g = self.add_weight(
                name="attention_g", shape=(), initializer="ones"
            )
        self.built = True

    def compute_keys(self, values):
        if self.score_mode == "dot":
            return values
        return ops.matmul(values, self.memory_kernel)  # (batch, time, key_dim)

    def score(self, query, keys):
        if self.score_mode == "concat":
            processed_query = ops.matmul(query, self.query_kernel)
            hidden = ops.tanh(keys + ops.expand_dims(processed_query, 1))
            scores = ops.sum(hidden * self.attention_v, axis=-1)  # (batch, time)
        else:
            # (batch, time, key_dim) @ (batch, key_dim, 1)
            scores = ops.squeeze(ops.matmul(keys, ops.expand_dims(query, -1)), -1)
        if self.scale:
            scores = self.attention_g * scores
        return scores

    def get_config(self):
        return {
            **super().get_config(),
            "score_mode": self.score_mode,
            "scale": self.scale,
        }
