"""Attention mechanisms and the attention-wrapping decoder cell.

The Keras 3 successor to TensorFlow Addons' `BahdanauAttention`,
`LuongAttention` and `AttentionWrapper` (`tfa.seq2seq.attention_wrapper`).

An attention mechanism scores a query `s` (the decoder's state or output)
against every encoder output `h_j` ("values" or "memory"), turns the scores
into weights with a softmax over the unpadded source positions, and returns
the weighted sum of the values (the context vector):

    e_j = score(s, h_j),  alpha_j = softmax_j(e_j),  c = sum_j alpha_j h_j

Everything in `score` that depends only on `h_j` (the "keys", e.g. `U h_j`) is
computed once per source sentence by `compute_keys`, not at every decoder
step.
"""

from typing import NamedTuple

import keras
from keras import ops

from keras_rnn._base import get_initializer
from keras_rnn._base import RecurrentCell
from keras_rnn._base import check_positive_int
from keras_rnn._base import check_units

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


class AttentionWrapperState(NamedTuple):
    """The state of `AttentionWrapper` between decoder steps.

    Attributes:
        cell_state: tuple with one entry per wrapped cell, each the list of
            that cell's `(batch, units)` states (`[h, c]` for an LSTM, `[h]`
            for a GRU or simple RNN).
        attention: `(batch, attention_size)` the attention vector of the
            previous step (fed to the next step with input feeding).
        alignments: `(batch, source_time)` float32 alignment weights of the
            previous step (zeros before the first step).
    """

    cell_state: tuple
    attention: object
    alignments: object


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


@keras.saving.register_keras_serializable(package="keras_rnn")
class AttentionWrapper(keras.layers.Layer):
    """A recurrent cell (or stack of cells) with attention and input feeding.

    The role of TF Addons' `AttentionWrapper`, with its step order (Luong et
    al. 2015, "input feeding"): at decoder step t, with input `x_t`,

        x'_t      = [x_t; a_{t-1}]                  (input feeding)
        o_t, s_t  = cells(x'_t, s_{t-1})             (stacked: bottom to top)
        c_t, alpha_t = attention(query=o_t, memory)
        a_t       = tanh(W_c [o_t; c_t])             (attention_layer_size)
                    or c_t                           (attention_layer_size=None)

    and the step's output is `a_t` (`output_attention=True`) or `o_t`.

    The memory (encoder outputs, their keys and padding mask) is passed to
    every call as an `AttentionMemory` from `attention_mechanism.prepare`, so
    the query-independent half of the score is computed once per batch. The
    state is an `AttentionWrapperState(cell_state, attention, alignments)`.

    Args:
        cells: a recurrent cell or a list of cells (stacked; layer l's output
            is layer l+1's input). `keras_rnn` cells or any Keras RNN cell.
        attention_mechanism: a `BahdanauAttention` / `LuongAttention`.
        attention_layer_size: width of `a_t`; None uses the context `c_t`.
        attention_activation: activation of the attention layer ("tanh").
        output_attention: output `a_t` (True, Luong) or the top cell's `o_t`.
        input_feeding: concatenate `a_{t-1}` to the input.
        kernel_initializer: initializer for `W_c`.

    Call arguments:
        inputs: `(batch, input_dim)`.
        state: `AttentionWrapperState`.
        memory: `AttentionMemory`.
        training: Python bool.
        zoneout: optional list, per cell, of the zoneout factor for this step
            (see `RecurrentCell.zoneout_factor`), drawn by the caller outside
            its time loop.

    Returns:
        `(output, new_state)`.

    Example:

    >>> mechanism = keras_rnn.BahdanauAttention(16)
    >>> wrapper = keras_rnn.AttentionWrapper(
    ...     keras_rnn.GRUCell(32), mechanism, attention_layer_size=24)
    >>> memory = mechanism.prepare(encoder_outputs, source_mask)
    >>> state = wrapper.get_initial_state(batch_size, memory)
    >>> output, state = wrapper(x_t, state, memory)
    >>> output.shape, state.alignments.shape
    ((batch, 24), (batch, source_time))
    """

    def __init__(self, cells, attention_mechanism, attention_layer_size=None,
                 attention_activation="tanh", output_attention=True,
                 input_feeding=True, kernel_initializer="glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        self.cells = list(cells) if isinstance(cells, (list, tuple)) else [cells]
        if not self.cells:
            raise ValueError("cells must hold at least one recurrent cell.")
        self.attention_mechanism = attention_mechanism
        if attention_layer_size is not None:
            attention_layer_size = check_positive_int(
                "attention_layer_size", attention_layer_size
            )
        self.attention_layer_size = attention_layer_size
        self.attention_activation = keras.activations.get(attention_activation)
        self.output_attention = bool(output_attention)
        self.input_feeding = bool(input_feeding)
        self.kernel_initializer = get_initializer(
            "kernel_initializer", kernel_initializer
        )
        self.attention_layer = None
        if attention_layer_size is not None:
            self.attention_layer = keras.layers.Dense(
                attention_layer_size, activation=self.attention_activation,
                use_bias=False, kernel_initializer=self.kernel_initializer,
                name="attention_layer",
            )

    def attention_size(self, value_dim):
        """Width of `a_t` for values of width `value_dim`."""
        return self.attention_layer_size or value_dim

    def build(self, inputs_shape, value_dim):
        """Builds the cells, the mechanism and the attention layer.

        Args:
            inputs_shape: `(batch, input_dim)` of the step input `x_t`.
            value_dim: width of the encoder outputs.
        """
        batch, input_dim = inputs_shape[0], inputs_shape[-1]
        width = input_dim
        if self.input_feeding:
            width += self.attention_size(value_dim)
        for cell in self.cells:
            cell.build((batch, width))
            width = _output_size(cell)
        self.attention_mechanism.build((batch, width), (batch, None, value_dim))
        if self.attention_layer is not None:
            self.attention_layer.build((batch, width + value_dim))
        self.built = True

    def get_initial_state(self, memory, cell_state=None):
        """The state before the first step.

        Args:
            memory: `AttentionMemory`.
            cell_state: optional per-cell list of state lists (e.g. bridged
                from the encoder); zeros when None.

        Returns:
            `AttentionWrapperState` with zero attention and alignments.
        """
        values = memory.values
        batch = ops.shape(values)[0]
        if cell_state is None:
            cell_state = tuple(
                _as_list(cell.get_initial_state(batch)) for cell in self.cells
            )
        attention = ops.zeros(
            (batch, self.attention_size(values.shape[-1])), dtype=values.dtype
        )
        alignments = ops.zeros(ops.shape(values)[:2], dtype="float32")
        return AttentionWrapperState(tuple(cell_state), attention, alignments)

    def prepare_dropout(self, batch_size, input_dim, value_dim, training):
        """Draws each cell's variational dropout masks before a time loop.

        Keras's `DropoutRNNCell` caches one mask per sequence on first use;
        inside a compiled loop that first use must happen outside the loop.
        Call `reset_dropout` after the loop.
        """
        if not training:
            return
        width = input_dim + (
            self.attention_size(value_dim) if self.input_feeding else 0
        )
        for cell in self.cells:
            if getattr(cell, "dropout", 0) > 0:
                cell.get_dropout_mask(ops.zeros((batch_size, width), self.compute_dtype))
            if getattr(cell, "recurrent_dropout", 0) > 0:
                cell.get_recurrent_dropout_mask(
                    ops.zeros((batch_size, _state_size(cell)[0]), self.compute_dtype)
                )
            width = _output_size(cell)

    def reset_dropout(self):
        for cell in self.cells:
            if hasattr(cell, "reset_dropout_mask"):
                cell.reset_dropout_mask()
                cell.reset_recurrent_dropout_mask()

    def draw_zoneout(self, steps, batch_size, training):
        """Per-step zoneout factors for every cell, drawn before a loop.

        Returns:
            list, per cell, of a `(steps, batch, n_states * units)` 0/1 keep
            mask (training), a constant (inference) or None.
        """
        factors = []
        for cell in self.cells:
            if isinstance(cell, RecurrentCell):
                shape = (steps, batch_size) if training else (batch_size,)
                factors.append(cell.zoneout_factor(shape, training))
            else:
                factors.append(None)
        return factors

    def call(self, inputs, state, memory, training=False, zoneout=None):
        x = inputs
        if self.input_feeding:
            x = ops.concatenate([x, ops.cast(state.attention, x.dtype)], axis=-1)
        new_cell_state = []
        for i, (cell, cell_state) in enumerate(zip(self.cells, state.cell_state)):
            if isinstance(cell, RecurrentCell) and zoneout is not None:
                x, new = _recurrent_step(cell, x, cell_state, training, zoneout[i])
            else:
                x, new = cell(x, list(cell_state), training=training)
            new_cell_state.append(_as_list(new))
        # `call`, not `__call__`: built in `build`, and `values` may carry
        # the encoder's Keras mask, which `memory.mask` already holds.
        context, alignments = self.attention_mechanism.call(
            x, memory.values, values_mask=memory.mask, keys=memory.keys
        )
        attention = context
        if self.attention_layer is not None:
            attention = self.attention_layer(ops.concatenate([x, context], axis=-1))
        output = attention if self.output_attention else x
        return output, AttentionWrapperState(tuple(new_cell_state), attention, alignments)

    def get_config(self):
        config = {
            "cells": [keras.saving.serialize_keras_object(c) for c in self.cells],
            "attention_mechanism": keras.saving.serialize_keras_object(
                self.attention_mechanism
            ),
            "attention_layer_size": self.attention_layer_size,
            "attention_activation": keras.activations.serialize(
                self.attention_activation
            ),
            "output_attention": self.output_attention,
            "input_feeding": self.input_feeding,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
        }
        return {**super().get_config(), **config}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["cells"] = [
            keras.saving.deserialize_keras_object(c) for c in config["cells"]
        ]
        config["attention_mechanism"] = keras.saving.deserialize_keras_object(
            config["attention_mechanism"]
        )
        return cls(**config)


def _recurrent_step(cell, x, states, training, zoneout):
    """`cell.call` with a zoneout factor drawn by the caller."""
    states = list(states)
    if training and cell.dropout > 0:
        x = x * cell.get_dropout_mask(x)
    recurrent_mask = None
    if training and cell.recurrent_dropout > 0:
        recurrent_mask = cell.get_recurrent_dropout_mask(states[0])
    return cell.step(cell.project_inputs(x), states, recurrent_mask, zoneout)


def _state_size(cell):
    size = cell.state_size
    return list(size) if isinstance(size, (list, tuple)) else [size]


def _output_size(cell):
    return getattr(cell, "output_size", None) or _state_size(cell)[0]


def _as_list(states):
    return list(states) if isinstance(states, (list, tuple)) else [states]
