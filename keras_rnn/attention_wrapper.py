"""`AttentionWrapper`: a recurrent cell (or stack) with attention and input
feeding, or a conditional decoder (two transitions around the attention) —
the decoder cell of `Seq2Seq`.

The Keras 3 successor to TF Addons' `tfa.seq2seq.AttentionWrapper`; the
mechanisms are in `keras_rnn.attention`. Tests:
`tests/keras_rnn/test_attention.py` (with the mechanisms).
"""

from typing import NamedTuple

import keras
from keras import ops

from keras_rnn._cell import RecurrentCell
from keras_rnn._checks import check_positive_int
from keras_rnn._checks import get_initializer


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

    With a `conditional_cell`, the decoder is conditional (Sennrich et al.
    2017, Nematus' "cGRU"; Firat & Cho 2016): a second transition reads the
    context and continues from the first one's state,

        o'_t, s'_t   = cells(x'_t, s_{t-1})          (first transition)
        c_t, alpha_t = attention(query=o'_t, memory)
        o_t, s_t     = conditional_cell(c_t, s'_t)    (second transition)
        a_t          = tanh(W_c [o_t; c_t])

    where `s'_t` is the top cell's new state and `s_t` replaces it in the
    wrapper's state (the lower cells keep theirs), so the next step's first
    transition continues from `s_t`. Input feeding is then usually off: the
    context already enters the recurrence.

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
        conditional_cell: optional second transition (a cell with the top
            cell's state sizes; a `GRUCell` for the cGRU).

    Call arguments:
        inputs: `(batch, input_dim)`.
        state: `AttentionWrapperState`.
        memory: `AttentionMemory`.
        training: Python bool.
        noise: optional sequence, per cell, of this step's `CellNoise` (None
            for a cell without one), from `draw_noise` before the caller's
            time loop; without it each cell draws its own (`cell.call`).

    Returns:
        `(output, new_state)`.

    Example:

    >>> encoder_outputs = np.ones((2, 5, 12), "float32")  # (batch, time, 12)
    >>> source_mask, x_t = np.ones((2, 5), bool), np.ones((2, 7), "float32")
    >>> mechanism = keras_rnn.BahdanauAttention(16)
    >>> wrapper = keras_rnn.AttentionWrapper(
    ...     keras_rnn.GRUCell(32), mechanism, attention_layer_size=24)
    >>> wrapper.build((None, 7), 12)  # step inputs of 7, values of 12
    >>> memory = mechanism.prepare(encoder_outputs, source_mask)
    >>> state = wrapper.get_initial_state(memory)
    >>> output, state = wrapper(x_t, state, memory)
    >>> output.shape, state.alignments.shape
    ((2, 24), (2, 5))

    (TF Addons' calling convention — the memory set on the mechanism, the
    wrapper a `keras.layers.RNN` cell — is `keras_rnn.seq2seq.AttentionWrapper`.)
    """

    def __init__(self, cells, attention_mechanism, attention_layer_size=None,
                 attention_activation="tanh", output_attention=True,
                 input_feeding=True, kernel_initializer="glorot_uniform",
                 conditional_cell=None, **kwargs):
        super().__init__(**kwargs)
        self.cells = list(cells) if isinstance(cells, (list, tuple)) else [cells]
        if not self.cells:
            raise ValueError("cells must hold at least one recurrent cell.")
        self.attention_mechanism = attention_mechanism
        if isinstance(conditional_cell, dict):
            conditional_cell = keras.saving.deserialize_keras_object(conditional_cell)
        if conditional_cell is not None and (
            state_sizes(conditional_cell) != state_sizes(self.cells[-1])
        ):
            raise ValueError(
                "conditional_cell must have the state sizes of the top cell "
                f"({state_sizes(self.cells[-1])}); got "
                f"{state_sizes(conditional_cell)}."
            )
        self.conditional_cell = conditional_cell
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
        cells = self._all_cells()
        for cell, width in zip(cells, self._input_widths(input_dim, value_dim)):
            cell.build((batch, width))
        query_dim = _output_size(self.cells[-1])
        self.attention_mechanism.build((batch, query_dim), (batch, None, value_dim))
        if self.attention_layer is not None:
            self.attention_layer.build((batch, _output_size(cells[-1]) + value_dim))
        self.built = True

    def _input_widths(self, input_dim, value_dim):
        """The step input width of each cell of `_all_cells`: `x'_t` for
        the first, the output of the one below for the others, the context
        for the conditional cell."""
        width = input_dim + (
            self.attention_size(value_dim) if self.input_feeding else 0
        )
        widths = [width] + [_output_size(cell) for cell in self.cells[:-1]]
        return widths + ([value_dim] if self.conditional_cell is not None else [])

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

    def draw_noise(self, batch_size, input_dim, value_dim, training,
                   steps=None):
        """Draws every cell's noise for one sequence, before a time loop.

        Each keras_rnn cell draws its `CellNoise` (`RecurrentCell.draw_noise`)
        for inputs of the width it sees (input feeding included). Other Keras
        cells with dropout get their masks drawn and cached on them, as
        `keras.layers.RNN` does, and read them in their `call`. Call
        `reset_noise` after the loop.

        Args:
            batch_size: batch size.
            input_dim: width of the step input `x_t`.
            value_dim: width of the encoder outputs.
            training: Python bool.
            steps: number of time steps (zoneout masks for each), or None
                for one step.

        Returns:
            tuple, per cell (the conditional cell last), of its
            `CellNoise` (None for other cells), to
            pass (sliced per step, see `keras_rnn._cell.per_step_noise`) as
            `call(..., noise=...)`.
        """
        noises = []
        widths = self._input_widths(input_dim, value_dim)
        for cell, width in zip(self._all_cells(), widths):
            step_input = ops.zeros((batch_size, width), self.compute_dtype)
            state = ops.zeros(
                (batch_size, state_sizes(cell)[0]), self.compute_dtype
            )
            if isinstance(cell, RecurrentCell):
                noises.append(cell.draw_noise(step_input, state, training, steps))
            else:
                if training and getattr(cell, "dropout", 0) > 0:
                    cell.get_dropout_mask(step_input)
                if training and getattr(cell, "recurrent_dropout", 0) > 0:
                    cell.get_recurrent_dropout_mask(state)
                noises.append(None)
        return tuple(noises)

    def _all_cells(self):
        """The cells in step order: the stack, then the conditional cell."""
        return self.cells + (
            [self.conditional_cell] if self.conditional_cell is not None else []
        )

    def reset_noise(self):
        """Clears the dropout masks cached on the cells by `draw_noise`."""
        for cell in self._all_cells():
            if hasattr(cell, "reset_dropout_mask"):
                cell.reset_dropout_mask()
                cell.reset_recurrent_dropout_mask()

    def call(self, inputs, state, memory, training=False, noise=None):
        x = inputs
        if self.input_feeding:
            x = ops.concatenate([x, ops.cast(state.attention, x.dtype)], axis=-1)
        noise = noise if noise is not None else (None,) * len(self._all_cells())
        new_cell_state = []
        for cell, cell_state, cell_noise in zip(self.cells, state.cell_state, noise):
            x, new = _step(cell, x, cell_state, cell_noise, training)
            new_cell_state.append(new)
        # `call`, not `__call__`: built in `build`, and `values` may carry
        # the encoder's Keras mask, which `memory.mask` already holds.
        context, alignments = self.attention_mechanism.call(
            x, memory.values, values_mask=memory.mask, keys=memory.keys
        )
        if self.conditional_cell is not None:
            x, new_cell_state[-1] = _step(
                self.conditional_cell, context, new_cell_state[-1], noise[-1],
                training,
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
        if self.conditional_cell is not None:
            config["conditional_cell"] = keras.saving.serialize_keras_object(
                self.conditional_cell
            )
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


def _step(cell, x, cell_state, noise, training):
    """One cell's step: `(output, new_state_list)`."""
    if noise is not None:
        # (batch, width) -> the cell's recurrent half, with its noise
        zx = cell.project_inputs(noise.mask_inputs(x))
        x, new = cell.step(zx, list(cell_state), noise)
    else:
        x, new = cell(x, list(cell_state), training=training)
    return x, _as_list(new)


def state_sizes(cell):
    """A cell's state sizes as a list."""
    size = cell.state_size
    return list(size) if isinstance(size, (list, tuple)) else [size]


def _output_size(cell):
    return getattr(cell, "output_size", None) or state_sizes(cell)[0]


def _as_list(states):
    return list(states) if isinstance(states, (list, tuple)) else [states]
