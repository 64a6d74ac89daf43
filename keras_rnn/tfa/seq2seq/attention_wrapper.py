"""TF Addons' `tfa.seq2seq.AttentionWrapper` and `AttentionWrapperState`
over the keras_rnn wrapper.

The attention step and the attention layer are the core's
(`keras_rnn.attention_wrapper`); this class adds TF Addons' calling
convention: the wrapper is a real RNN cell (`state_size`,
`get_initial_state(batch_size=, dtype=)`) over a mechanism that holds its
memory (`attention_mechanism.py`), usable in `keras.layers.RNN`,
`BasicDecoder` and `BeamSearchDecoder`. Tests:
`tests/keras_rnn/tfa/test_seq2seq.py`.
"""

from typing import NamedTuple

import keras
from keras import ops

from keras_rnn import attention_wrapper
# Where TF Addons' users import them from (`tfa.seq2seq.attention_wrapper`).
from keras_rnn.tfa.seq2seq.attention_mechanism import BahdanauAttention  # noqa: F401
from keras_rnn.tfa.seq2seq.attention_mechanism import LuongAttention  # noqa: F401
from keras_rnn.tfa.seq2seq.attention_mechanism import sequence_mask  # noqa: F401


class AttentionWrapperState(NamedTuple):
    """`tfa.seq2seq.AttentionWrapperState`.

    Attributes:
        cell_state: the wrapped cell's state (e.g. `[h, c]`).
        attention: `(batch, attention_layer_size or depth)` the previous
            attention vector.
        alignments: `(batch, max_time)` the previous alignments, in the
            dtype of the initial state's (the compute dtype by default).
        alignment_history: `()` inside the cell; `dynamic_decode` returns
            the stacked `(time, batch, max_time)` alignments here when the
            wrapper has `alignment_history=True` (TF Addons: a TensorArray).
        attention_state: `(batch, max_time)` the mechanism's state (its
            alignments, as in TF Addons' Bahdanau and Luong).
    """

    cell_state: object
    attention: object
    alignments: object
    alignment_history: object
    attention_state: object

    def clone(self, **kwargs):
        """A copy with some fields replaced (TF Addons' `clone`)."""
        return self._replace(**kwargs)


@keras.saving.register_keras_serializable(package="keras_rnn.seq2seq")
class AttentionWrapper(attention_wrapper.AttentionWrapper):
    """`tfa.seq2seq.AttentionWrapper`: a cell with attention, a real RNN cell.

    TF Addons' step, computed by the core `keras_rnn.AttentionWrapper`:

        cell_output, cell_state = cell([inputs; attention_{t-1}], cell_state)
        context, alignments = mechanism(cell_output, memory)
        attention = W_a [cell_output; context]     (attention_layer_size)
                    or context                      (None)
        output = attention if output_attention else cell_output

    (`W_a` has no bias and no activation, as in TF Addons.) The memory is the
    mechanism's (`memory=` / `setup_memory`); set it before the first call.

    Args:
        cell: a Keras RNN cell (keras_rnn's or `keras.layers.LSTMCell`, ...).
        attention_mechanism: a `keras_rnn.seq2seq` `BahdanauAttention` or
            `LuongAttention` (one; TF Addons' lists of mechanisms are not
            carried over).
        attention_layer_size: width of the attention layer, or None.
        alignment_history: collect every step's alignments (returned by
            `dynamic_decode` in the final state's `alignment_history`).
        cell_input_fn: only None (TF Addons' default, concatenation).
        output_attention: output the attention (True) or the cell output.
        initial_cell_state: optional cell state for `get_initial_state`.
        name: layer name.
        attention_layer: not carried over (None only).
        attention_fn: not carried over (None only).

    Call arguments:
        inputs: `(batch, input_depth)`.
        state: `AttentionWrapperState`, or its fields as a list (as
            `keras.layers.RNN` passes them).

    Returns:
        `(output, next_state)`, `next_state` as `state` was given.

    Example:

    >>> mechanism = BahdanauAttention(8, memory=np.ones((2, 5, 6)))
    >>> cell = AttentionWrapper(keras.layers.LSTMCell(4), mechanism, 3)
    >>> keras.layers.RNN(cell)(np.ones((2, 7, 5))).shape
    (2, 3)
    """

    def __init__(self, cell, attention_mechanism, attention_layer_size=None,
                 alignment_history=False, cell_input_fn=None,
                 output_attention=True, initial_cell_state=None, name=None,
                 attention_layer=None, attention_fn=None, **kwargs):
        for option, value in (("cell_input_fn", cell_input_fn),
                              ("attention_layer", attention_layer),
                              ("attention_fn", attention_fn)):
            if value is not None:
                raise ValueError(
                    f"AttentionWrapper: `{option}` is not carried over from "
                    "TF Addons; leave it None (docs/MIGRATION.md).")
        if isinstance(attention_mechanism, (list, tuple)):
            raise ValueError(
                "AttentionWrapper takes one attention mechanism; TF Addons' "
                "lists of mechanisms are not carried over.")
        if isinstance(attention_layer_size, (list, tuple)):
            (attention_layer_size,) = attention_layer_size
        kwargs.pop("cells", None)
        kwargs.pop("attention_activation", None)
        kwargs.pop("input_feeding", None)
        super().__init__(
            cell, attention_mechanism, attention_layer_size=attention_layer_size,
            attention_activation=None, output_attention=output_attention,
            input_feeding=True, name=name, **kwargs)
        self.cell = cell
        self.alignment_history = bool(alignment_history)
        self.initial_cell_state = initial_cell_state

    # -- the RNN-cell interface ------------------------------------------

    def _depth(self):
        self.attention_mechanism._check_memory()
        return self.attention_mechanism.values.shape[-1]

    @property
    def output_size(self):
        if self.output_attention:
            return self.attention_size(self._depth())
        return attention_wrapper._output_size(self.cell)

    @property
    def state_size(self):
        alignments = self.attention_mechanism.alignments_size
        return AttentionWrapperState(
            cell_state=self.cell.state_size,
            attention=self.attention_size(self._depth()),
            alignments=alignments,
            alignment_history=(),
            attention_state=alignments,
        )

    def build(self, inputs_shape):
        super().build(inputs_shape, self._depth())

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        """TF Addons' zero state: the cell's (or `initial_cell_state`), zero
        attention and alignments.

        Args:
            inputs: optional tensor whose first dimension is the batch size.
            batch_size: the batch size (for beam search: batch * beam_width).
            dtype: dtype of the attention vector and the alignments
                (default the layer's compute dtype, as TF Addons).
        """
        if batch_size is None:
            batch_size = ops.shape(inputs)[0]
        dtype = dtype or self.compute_dtype
        mechanism = self.attention_mechanism
        mechanism._check_memory()
        cell_state = self.initial_cell_state
        if cell_state is None:
            cell_state = self.cell.get_initial_state(batch_size=batch_size)
        alignments = mechanism.initial_alignments(batch_size, dtype)
        return AttentionWrapperState(
            cell_state=cell_state,
            attention=ops.zeros(
                (batch_size, self.attention_size(self._depth())), dtype),
            alignments=alignments,
            alignment_history=(),
            attention_state=alignments,
        )

    def call(self, inputs, state, training=False):
        given_as_list = not isinstance(state, AttentionWrapperState)
        state = AttentionWrapperState(*state)
        if not self.built:
            self.build(inputs.shape)
        mechanism = self.attention_mechanism
        mechanism._check_memory()
        cell_state = state.cell_state
        core_state = attention_wrapper.AttentionWrapperState(
            (attention_wrapper._as_list(cell_state),), state.attention,
            state.alignments)
        if mechanism.probability_fn == "softmax":
            output, new = super().call(inputs, core_state, mechanism.memory,
                                       training=training)
            alignments, attention = new.alignments, new.attention
            (new_cell_state,) = new.cell_state
        else:  # the same step, with TF Addons' other probability functions
            x = ops.concatenate(
                [inputs, ops.cast(state.attention, inputs.dtype)], axis=-1)
            cell_output, new_cell_state = self.cell(
                x, attention_wrapper._as_list(cell_state), training=training)
            context, alignments = mechanism.attend(cell_output)
            attention = context
            if self.attention_layer is not None:
                attention = self.attention_layer(
                    ops.concatenate([cell_output, context], axis=-1))
            output = attention if self.output_attention else cell_output
            new_cell_state = attention_wrapper._as_list(new_cell_state)
        if not isinstance(cell_state, (list, tuple)):
            (new_cell_state,) = new_cell_state
        # In the state's dtype (the compute dtype, as TF Addons', unless the
        # initial state was made in another): a loop's state keeps its dtype.
        alignments = ops.cast(alignments, state.alignments.dtype)
        next_state = AttentionWrapperState(
            cell_state=new_cell_state, attention=attention,
            alignments=alignments, alignment_history=(),
            attention_state=alignments)
        return output, (list(next_state) if given_as_list else next_state)

    def get_config(self):
        config = super().get_config()
        config["cell"] = config.pop("cells")[0]
        config.pop("attention_activation")
        config.pop("input_feeding")
        config["alignment_history"] = self.alignment_history
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["cell"] = keras.saving.deserialize_keras_object(config["cell"])
        config["attention_mechanism"] = keras.saving.deserialize_keras_object(
            config["attention_mechanism"])
        return cls(**config)
