"""TF Addons' `BasicDecoder` and `dynamic_decode` in `keras.ops`.

`dynamic_decode` runs a decoder's `step` in one loop with fixed-shape output
buffers, so it compiles (`tf.function(jit_compile=True)`, `jax.jit`):

- with a training sampler (`TrainingSampler`,
  `ScheduledEmbeddingTrainingSampler`) every step's input is known, so it runs
  exactly `max_time` steps in `keras.ops.fori_loop`, which JAX can
  differentiate (`lax.while_loop` cannot be);
- otherwise a `keras.ops.while_loop` that stops when every sequence is
  finished or after `maximum_iterations` steps;
- a `BeamSearchDecoder` is handed to the core beam search
  (`keras_rnn.decoding.beam_search`), the one implementation of beam search.

Outputs are batch-major unless `output_time_major`; when the loop's step
count is concrete (eager) they are cut to the steps run, as TF Addons'
TensorArrays are; inside `jax.jit` they keep the `maximum_iterations` length
(finished steps hold zeros with `impute_finished`, else what the decoder
produced). Tests: `tests/keras_rnn/tfa/test_seq2seq.py`.
"""

from typing import NamedTuple

import keras
import numpy as np
from keras import ops

# Steps run when `maximum_iterations` is None and nothing else bounds the
# loop (TF Addons ran until every sequence finished: the core loop needs a
# fixed-size buffer).
DEFAULT_MAXIMUM_ITERATIONS = 100


class BasicDecoderOutput(NamedTuple):
    """`tfa.seq2seq.BasicDecoderOutput`: `rnn_output` `(batch, time, depth)`
    (the output layer's output, e.g. logits) and `sample_id`
    `(batch, time)` int32."""

    rnn_output: object
    sample_id: object


def concrete_int(value):
    """`int(value)` when it is known now (eager), else None (traced)."""
    value = concrete_array(value)
    return None if value is None else int(value)


def concrete_array(value):
    """`value` as a NumPy array when it is known now (eager), else None
    (a graph tensor or a tracer)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # `np.asarray` of a graph tensor fails late

        if tf.is_tensor(value):
            return tf.get_static_value(value)
    try:
        return np.asarray(ops.convert_to_numpy(value))
    except Exception:  # a JAX tracer
        return None


@keras.saving.register_keras_serializable(package="keras_rnn.seq2seq")
class BasicDecoder(keras.layers.Layer):
    """`tfa.seq2seq.BasicDecoder`: a cell, a sampler and an output layer.

    `decoder(inputs, initial_state=..., **sampler_kwargs)` runs
    `dynamic_decode` and returns `(BasicDecoderOutput, final_state,
    final_sequence_lengths)`; `inputs` and the keyword arguments go to
    `sampler.initialize` (a `TrainingSampler` takes the embedded targets and
    `sequence_length`; a `GreedyEmbeddingSampler` the embedding matrix,
    `start_tokens` and `end_token`).

    Args:
        cell: a Keras RNN cell (e.g. `keras_rnn.seq2seq.AttentionWrapper`).
        sampler: a `keras_rnn.seq2seq` sampler.
        output_layer: optional layer applied to the cell output (logits).
        output_time_major, impute_finished, maximum_iterations: as
            `dynamic_decode`.
        **kwargs: TF Addons' `parallel_iterations`, `swap_memory` (ignored:
            graph-runtime knobs) and layer arguments.
    """

    def __init__(self, cell, sampler, output_layer=None,
                 output_time_major=False, impute_finished=False,
                 maximum_iterations=None, parallel_iterations=32,
                 swap_memory=False, **kwargs):
        super().__init__(**kwargs)
        self.cell = cell
        self.sampler = sampler
        self.output_layer = output_layer
        self.output_time_major = output_time_major
        self.impute_finished = impute_finished
        self.maximum_iterations = maximum_iterations

    def build(self, *args, **kwargs):
        self.built = True

    def initialize(self, inputs, initial_state=None, **kwargs):
        """`(finished, first_inputs, initial_state)` (TF Addons' API)."""
        # TF Addons: the outputs' dtype is the initial state's first entry's.
        leaves = keras.tree.flatten(initial_state)
        if leaves:
            self._cell_dtype = keras.backend.standardize_dtype(
                ops.convert_to_tensor(leaves[0]).dtype)
        finished, first_inputs = self.sampler.initialize(inputs, **kwargs)
        return finished, first_inputs, initial_state

    @property
    def batch_size(self):
        return self.sampler.batch_size

    def _rnn_output_size(self):
        """The shape of one step's `rnn_output` without the batch axis."""
        size = self.cell.output_size
        shape = tuple(size) if isinstance(size, (list, tuple)) else (size,)
        if self.output_layer is None:
            return shape
        return tuple(self.output_layer.compute_output_shape((None,) + shape)[1:])

    @property
    def output_size(self):
        """`BasicDecoderOutput` of the per-step shapes without the batch
        axis (TF Addons' `output_size`; tuples for its `TensorShape`s):
        `rnn_output` `(depth,)` (the output layer's), `sample_id` `()`."""
        return BasicDecoderOutput(rnn_output=self._rnn_output_size(),
                                  sample_id=self.sampler.sample_ids_shape)

    @property
    def output_dtype(self):
        """`BasicDecoderOutput` of the outputs' dtypes (TF Addons'
        `output_dtype`): `rnn_output` the initial state's dtype (before
        `initialize`, the output layer's or the cell's compute dtype),
        `sample_id` the sampler's `sample_ids_dtype`."""
        dtype = getattr(self, "_cell_dtype", None)
        if dtype is None:
            dtype = (self.output_layer or self.cell).compute_dtype
        return BasicDecoderOutput(rnn_output=dtype,
                                  sample_id=self.sampler.sample_ids_dtype)

    def step(self, time, inputs, state, training=None):
        """One step: `(BasicDecoderOutput, next_state, next_inputs,
        finished)` (TF Addons' API)."""
        kwargs = {} if training is None else {"training": training}
        cell_outputs, cell_state = self.cell(inputs, state, **kwargs)
        if self.output_layer is not None:
            cell_outputs = self.output_layer(cell_outputs)
        sample_ids = self.sampler.sample(time, cell_outputs, cell_state)
        finished, next_inputs, cell_state = self.sampler.next_inputs(
            time, cell_outputs, cell_state, sample_ids)
        return (BasicDecoderOutput(cell_outputs, sample_ids), cell_state,
                next_inputs, finished)

    def finalize(self, outputs, final_state, sequence_lengths):
        return outputs, final_state

    @property
    def tracks_own_finished(self):
        return False

    def __call__(self, *args, **kwargs):
        # Straight to `call`: its keyword arguments are the sampler's (or the
        # search's) mix of tensors and Python values, which Keras's
        # `Layer.__call__` refuses in one nest; nothing here needs Keras's
        # symbolic call.
        return self.call(*args, **kwargs)

    def call(self, inputs, initial_state=None, training=None, **kwargs):
        return dynamic_decode(
            self, output_time_major=self.output_time_major,
            impute_finished=self.impute_finished,
            maximum_iterations=self.maximum_iterations, training=training,
            decoder_init_input=inputs,
            decoder_init_kwargs=dict(kwargs, initial_state=initial_state))


def dynamic_decode(decoder, output_time_major=False, impute_finished=False,
                   maximum_iterations=None, parallel_iterations=32,
                   swap_memory=False, training=None, scope=None,
                   enable_tflite_convertible=False, **kwargs):
    """`tfa.seq2seq.dynamic_decode`: runs `decoder` until every sequence is
    finished or `maximum_iterations` steps.

    Args:
        decoder: a `BasicDecoder` or `BeamSearchDecoder`.
        output_time_major: return `(time, batch, ...)` outputs.
        impute_finished: finished sequences output zeros and keep their
            state (TF Addons' rule).
        maximum_iterations: int, most steps (default: the inputs' length for
            training samplers, else `DEFAULT_MAXIMUM_ITERATIONS`).
        parallel_iterations, swap_memory, scope, enable_tflite_convertible:
            accepted and ignored (TF graph-runtime knobs).
        training: passed to the cell.
        **kwargs: `decoder_init_input`, `decoder_init_kwargs` (TF Addons'),
            or keyword arguments of `decoder.initialize`.

    Returns:
        `(final_outputs, final_state, final_sequence_lengths)`.
    """
    init_input = kwargs.pop("decoder_init_input", None)
    init_kwargs = dict(kwargs.pop("decoder_init_kwargs", None) or {})
    init_kwargs.update(kwargs)
    if hasattr(decoder, "decode_with_core"):  # BeamSearchDecoder
        return decoder.decode_with_core(
            init_input, maximum_iterations=maximum_iterations,
            output_time_major=output_time_major, **init_kwargs)
    finished, inputs, state = decoder.initialize(init_input, **init_kwargs)
    trains = getattr(decoder.sampler, "trains", False)
    steps = None if maximum_iterations is None else int(maximum_iterations)
    if trains:
        # The inputs' length: an int, or a scalar tensor inside a
        # `tf.function` whose time dimension is unknown (the buffers and the
        # loop then take a dynamic length).
        max_time = decoder.sampler.max_time
        if steps is None:
            steps = max_time
        elif isinstance(max_time, int):
            steps = min(steps, max_time)
        else:
            steps = ops.minimum(steps, max_time)
    elif steps is None:
        steps = DEFAULT_MAXIMUM_ITERATIONS
    history = getattr(decoder.cell, "alignment_history", False) is True

    def advance(time, finished, inputs, state, lengths):
        outputs, next_state, next_inputs, decoder_finished = decoder.step(
            time, inputs, state, training)
        next_finished = decoder_finished if decoder.tracks_own_finished else (
            ops.logical_or(finished, decoder_finished))
        lengths = ops.where(finished, lengths, time + 1)
        if impute_finished:
            outputs = keras.tree.map_structure(
                lambda x: ops.where(_rows(finished, x), ops.zeros_like(x), x),
                outputs)
            next_state = keras.tree.map_structure(
                lambda new, old: ops.where(_rows(finished, new), old, new),
                next_state, state)
        return outputs, next_finished, next_inputs, next_state, lengths

    # Step 0 outside the loop: its outputs give the buffers' shapes.
    lengths = ops.zeros(ops.shape(finished), "int32")
    outputs, finished, inputs, state, lengths = advance(
        ops.convert_to_tensor(0, "int32"), finished, inputs, state, lengths)

    def buffer(x):  # (steps, batch, ...) with step 0 written
        zeros = ops.zeros((steps - 1,) + tuple(ops.shape(x)), x.dtype)
        return ops.concatenate([ops.expand_dims(x, 0), zeros], axis=0)

    buffers = keras.tree.map_structure(buffer, outputs)
    align = buffer(state.alignments) if history else ()

    def write(buffers, values, time):
        if trains:
            # A select, not `slice_update`: TensorFlow has no gradient for
            # XLA's dynamic-update-slice, and training differentiates this.
            def put(b, v):
                at = ops.reshape(ops.equal(ops.arange(steps), time),
                                 (steps,) + (1,) * len(v.shape))
                return ops.where(at, ops.expand_dims(v, 0), b)
        else:
            def put(b, v):
                return ops.slice_update(
                    b, (time,) + (0,) * len(v.shape), ops.expand_dims(v, 0))
        return keras.tree.map_structure(put, buffers, values)

    def body(time, carry):
        finished, inputs, state, lengths, buffers, align = carry
        outputs, finished, inputs, state, lengths = advance(
            time, finished, inputs, state, lengths)
        buffers = write(buffers, outputs, time)
        if history:
            align = write(align, state.alignments, time)
        return finished, inputs, state, lengths, buffers, align

    carry = (finished, inputs, state, lengths, buffers, align)
    if trains:
        carry = ops.fori_loop(1, steps, body, carry)
        time = steps
    else:
        def cond(time, *carry):
            return ops.logical_and(time < steps,
                                   ops.logical_not(ops.all(carry[0])))

        time, *carry = ops.while_loop(
            cond, lambda time, *c: (time + 1, *body(time, c)),
            (ops.convert_to_tensor(1, "int32"), *carry))
        carry = tuple(carry)
    finished, inputs, state, lengths, buffers, align = carry
    run = concrete_int(time)
    if run is not None:
        buffers = keras.tree.map_structure(lambda b: b[:run], buffers)
        align = align[:run] if history else align
    if history:
        state = state._replace(alignment_history=align)
    final_outputs, state = decoder.finalize(buffers, state, lengths)
    if not output_time_major:
        final_outputs = keras.tree.map_structure(
            lambda b: ops.swapaxes(b, 0, 1), final_outputs)
    return final_outputs, state, lengths


def _rows(finished, x):
    """`finished` `(batch,)` broadcast against `x` `(batch, ...)`."""
    return ops.reshape(finished, ops.shape(finished) + (1,) * (len(x.shape) - 1))
