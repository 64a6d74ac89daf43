"""TF Addons' `BeamSearchDecoder`, `tile_batch` and `gather_tree`, as a
client of the core beam search.

`BeamSearchDecoder` does not search itself: `dynamic_decode` hands it to
`keras_rnn.decoding.beam_search` (the one beam search: one compiled loop,
GNMT length and coverage penalties) through a small adapter that implements
the decoding protocol (`keras_rnn.decoding.protocol`) with the user's cell,
embedding and output layer, then repackages the result in TF Addons'
`FinalBeamSearchDecoderOutput` / `BeamSearchDecoderState`. Differences from
TF Addons are listed in `docs/MIGRATION.md`. Tests:
`tests/keras_rnn/tfa/test_seq2seq.py`.
"""

from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from keras_rnn.attention import AttentionMemory
from keras_rnn import decoding
from keras_rnn.tfa.seq2seq.decoder import DEFAULT_MAXIMUM_ITERATIONS
from keras_rnn.tfa.seq2seq.decoder import concrete_array
from keras_rnn.tfa.seq2seq.decoder import concrete_int
from keras_rnn.tfa.seq2seq.sampler import _embedding_fn


def tile_batch(t, multiplier, name=None):
    """`tfa.seq2seq.tile_batch`: every tensor of the nest `t` repeated
    `multiplier` times along the batch axis, `(B, ...)` -> `(B*K, ...)`,
    entry `b * K + k` a copy of entry `b` (the core `tile_batch`)."""
    return keras.tree.map_structure(
        lambda x: decoding.tile_batch(ops.convert_to_tensor(x), multiplier), t)


def gather_tree(step_ids, parent_ids, max_sequence_lengths, end_token):
    """`tfa.seq2seq.gather_tree`: back-tracks time-major beam pointers.

    Args:
        step_ids: `(max_time, batch, beam)` int ids chosen at each step.
        parent_ids: `(max_time, batch, beam)` int parent beam of each.
        max_sequence_lengths: `(batch,)` steps to back-track from.
        end_token: id written after the length and after the first EOS.

    Returns:
        `(max_time, batch, beam)` int32 back-tracked ids (the core
        `gather_tree` on batch-major tensors, with TF Addons' end-token
        rules).

    Raises:
        InvalidArgumentError (TensorFlow; `ValueError` on other backends):
            a parent id within a sentence's length is outside
            `[0, beam)`, as TF Addons' op. Only where the values are known
            (eager); inside `tf.function` / `jax.jit` they are not checked and
            an out-of-range parent is clamped into `[0, beam)`.
    """
    _check_parent_ids(parent_ids, max_sequence_lengths)
    step_ids = ops.transpose(ops.convert_to_tensor(step_ids, "int32"), (1, 2, 0))
    parent_ids = ops.transpose(ops.convert_to_tensor(parent_ids, "int32"), (1, 2, 0))
    batch, beam, time = ops.shape(step_ids)
    # Defined on every backend when unchecked (TensorFlow's CPU gather would
    # raise, XLA and JAX clamp, a GPU gather reads zeros).
    parent_ids = ops.clip(parent_ids, 0, beam - 1)
    lengths = ops.convert_to_tensor(max_sequence_lengths, "int32")[:, None, None]
    positions = ops.arange(time, dtype="int32")[None, None, :]  # (1, 1, T)
    beyond = positions >= lengths  # (B, 1, T)
    # Past a sentence's length every slot is its own parent, so tracing back
    # from the last step starts at step `length - 1` in the same slot.
    slots = ops.broadcast_to(ops.arange(beam, dtype="int32")[None, :, None],
                             (batch, beam, time))
    parent_ids = ops.where(beyond, slots, parent_ids)
    ids, _ = decoding.gather_tree(step_ids, parent_ids)
    ids = ops.where(beyond, end_token, ids)
    is_end = ops.cast(ops.equal(ids, end_token), "int32")
    after_end = (ops.cumsum(is_end, axis=-1) - is_end) > 0
    ids = ops.where(after_end, end_token, ids)
    return ops.transpose(ids, (2, 0, 1))


def _check_parent_ids(parent_ids, max_sequence_lengths):
    """Raises like TF Addons' op on a parent id outside `[0, beam)` within a
    sentence's length, when the values are concrete."""
    parents = concrete_array(parent_ids)  # (time, batch, beam)
    lengths = concrete_array(max_sequence_lengths)
    if parents is None or lengths is None:
        return
    time, _, beam = parents.shape
    within = np.arange(time)[:, None] < np.minimum(lengths, time)[None, :]
    bad = within[..., None] & ((parents < 0) | (parents >= beam))
    if not bad.any():
        return
    t, b, k = (int(i) for i in np.argwhere(bad)[0])
    message = (f"gather_tree: parent id {int(parents[t, b, k])} at (time, "
               f"batch, beam) = ({t}, {b}, {k}) is not in [0, {beam}).")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        raise tf.errors.InvalidArgumentError(None, None, message)
    raise ValueError(message)


class BeamSearchDecoderOutput(NamedTuple):
    """`tfa.seq2seq.BeamSearchDecoderOutput`, each `(batch, time, beam)`.

    `predicted_ids` are already back-tracked (so `parent_ids[..., k] == k`);
    `scores[:, t, k]` is hypothesis k's final score at every t (the core
    search does not keep per-step scores).
    """

    scores: object
    predicted_ids: object
    parent_ids: object


class FinalBeamSearchDecoderOutput(NamedTuple):
    """`tfa.seq2seq.FinalBeamSearchDecoderOutput`: `predicted_ids`
    `(batch, time, beam)` int32, best beam first, `end_token` after each
    EOS; `beam_search_decoder_output` a `BeamSearchDecoderOutput`."""

    predicted_ids: object
    beam_search_decoder_output: object


class BeamSearchDecoderState(NamedTuple):
    """`tfa.seq2seq.BeamSearchDecoderState` of the returned hypotheses:
    `log_probs`, `finished`, `lengths` `(batch, beam)`,
    `accumulated_attention_probs` `(batch, beam, max_time)`; `cell_state`
    is None (the core search does not return the final cell states)."""

    cell_state: object
    log_probs: object
    finished: object
    lengths: object
    accumulated_attention_probs: object


def _untile(x, multiplier):
    """Row `b * K` of every sentence `b`: the inverse of `tile_batch`.

    A strided slice, so it reads no static shape: inside `tf.function` with
    unknown dimensions a reshape to `(-1, K) + x.shape[1:]` has None in it.
    """
    return ops.convert_to_tensor(x)[::multiplier]


class _CellModel:
    """The decoding protocol over a cell, an embedding and an output layer.

    `pad_id` and `bos_id` are -1, which no token has: TF Addons forbids no
    token, and the first step's input is `start_tokens` (the core search
    feeds `bos_id`, replaced here).
    """

    pad_id = bos_id = -1

    def __init__(self, decoder, embedding_fn, start_tokens, end_token,
                 initial_state, max_length):
        self.decoder = decoder
        self.embedding_fn = embedding_fn
        self.eos_id = end_token
        self.start_tokens = ops.convert_to_tensor(start_tokens, "int32")
        self.initial_state = initial_state
        self.max_length = max_length
        self.target_vocab_size = decoder.vocab_size()
        width = decoder.beam_width
        self.tiled_start = decoding.tile_batch(self.start_tokens, width)

    def check_source(self, source):
        pass

    def decoding_settings(self, **overrides):
        d = self.decoder
        return decoding.DecodingSettings(
            beam_size=d.beam_width, n_best=d.beam_width,
            max_length=self.max_length,
            length_penalty_alpha=d.length_penalty_weight,
            coverage_penalty_beta=d.coverage_penalty_weight,
        ).replace(**overrides)

    def encode(self, source, training=False):
        width = self.decoder.beam_width
        state = keras.tree.map_structure(
            lambda x: _untile(x, width), self.initial_state)
        batch = ops.shape(self.start_tokens)[0]
        mask, source_time = None, 1
        mechanism = getattr(self.decoder.cell, "attention_mechanism", None)
        if mechanism is not None and getattr(mechanism, "memory", None) is not None:
            source_time = ops.shape(mechanism.values)[1]  # maybe a tensor
            if mechanism.memory.mask is not None:
                mask = _untile(mechanism.memory.mask, width)
        values = ops.zeros((batch, source_time, 1))
        return AttentionMemory(values, None, mask), state

    def decode_step(self, tokens, state, memory):
        tokens = ops.where(tokens < 0, self.tiled_start, tokens)
        outputs, state = self.decoder.cell(self.embedding_fn(tokens), state)
        if self.decoder.output_layer is not None:
            outputs = self.decoder.output_layer(outputs)
        return outputs, state


@keras.saving.register_keras_serializable(package="keras_rnn.seq2seq")
class BeamSearchDecoder(keras.layers.Layer):
    """`tfa.seq2seq.BeamSearchDecoder`, run by the core beam search.

    `decoder(embedding, start_tokens=..., end_token=..., initial_state=...)`
    returns `(FinalBeamSearchDecoderOutput, BeamSearchDecoderState,
    final_sequence_lengths)`. As with TF Addons, the memory of an
    `AttentionWrapper` cell and `initial_state` must be tiled with
    `tile_batch` (batch * beam_width rows).

    Scoring is the core's (Wu et al. 2016): `log P / ((5 + |Y|) / 6) **
    length_penalty_weight + coverage_penalty_weight * sum_j log(min(
    coverage_j, 1))`, where TF Addons also uses `((5 + |Y|) / 6)`.

    Args:
        cell: a Keras RNN cell (e.g. `AttentionWrapper`).
        beam_width: beams per sentence.
        embedding_fn: callable ids -> embeddings (or give the embedding to
            `call`).
        output_layer: layer from the cell output to the logits.
        length_penalty_weight, coverage_penalty_weight: floats.
        reorder_tensor_arrays, output_all_scores: accepted; TF Addons'
            defaults only.
        maximum_iterations: most steps (default
            `DEFAULT_MAXIMUM_ITERATIONS`); at the limit the core search ends
            every hypothesis with `end_token`.
        output_time_major: `(time, batch, beam)` outputs.
        **kwargs: layer arguments, `impute_finished`, `parallel_iterations`,
            `swap_memory` (ignored).
    """

    def __init__(self, cell, beam_width, embedding_fn=None, output_layer=None,
                 length_penalty_weight=0.0, coverage_penalty_weight=0.0,
                 reorder_tensor_arrays=True, output_all_scores=False,
                 maximum_iterations=None, output_time_major=False, **kwargs):
        for key in ("impute_finished", "parallel_iterations", "swap_memory"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        if output_all_scores:
            raise ValueError(
                "BeamSearchDecoder: output_all_scores=True is not carried "
                "over (the core search keeps the chosen scores only).")
        self.cell = cell
        self.beam_width = int(beam_width)
        self.embedding_fn = embedding_fn
        self.output_layer = output_layer
        self.length_penalty_weight = float(length_penalty_weight)
        self.coverage_penalty_weight = float(coverage_penalty_weight)
        self.maximum_iterations = maximum_iterations
        self.output_time_major = output_time_major

    def build(self, *args, **kwargs):
        self.built = True

    @property
    def output_size(self):
        """`BeamSearchDecoderOutput` of the per-step shapes without the batch
        axis (TF Addons' `output_size`): `(beam_width,)` each."""
        shape = (self.beam_width,)
        return BeamSearchDecoderOutput(scores=shape, predicted_ids=shape,
                                       parent_ids=shape)

    @property
    def output_dtype(self):
        """`BeamSearchDecoderOutput` of the outputs' dtypes: `scores`
        float32 (the core search's; TF Addons: the cell state's dtype, the
        same unless the state is not float32), the ids int32."""
        return BeamSearchDecoderOutput(scores="float32", predicted_ids="int32",
                                       parent_ids="int32")

    def vocab_size(self):
        layer = self.output_layer
        size = getattr(layer, "units", None) if layer is not None else getattr(
            self.cell, "output_size", None)
        if not isinstance(size, int):
            raise ValueError(
                "BeamSearchDecoder needs the vocabulary size: give an "
                "output_layer with `units` (e.g. keras.layers.Dense).")
        return size

    def __call__(self, *args, **kwargs):
        # Straight to `call`: its keyword arguments are the sampler's (or the
        # search's) mix of tensors and Python values, which Keras's
        # `Layer.__call__` refuses in one nest; nothing here needs Keras's
        # symbolic call.
        return self.call(*args, **kwargs)

    def call(self, embedding, start_tokens=None, end_token=None,
             initial_state=None, training=None, **kwargs):
        from keras_rnn.tfa.seq2seq.decoder import dynamic_decode

        return dynamic_decode(
            self, output_time_major=self.output_time_major,
            maximum_iterations=self.maximum_iterations, training=training,
            decoder_init_input=embedding,
            decoder_init_kwargs=dict(kwargs, start_tokens=start_tokens,
                                     end_token=end_token,
                                     initial_state=initial_state))

    def decode_with_core(self, embedding, start_tokens=None, end_token=None,
                         initial_state=None, maximum_iterations=None,
                         output_time_major=False):
        """What `dynamic_decode` runs for this decoder (see the module)."""
        steps = maximum_iterations or self.maximum_iterations
        steps = DEFAULT_MAXIMUM_ITERATIONS if steps is None else int(steps)
        model = _CellModel(self, _embedding_fn(self.embedding_fn, embedding),
                           start_tokens, end_token, initial_state, steps)
        batch = ops.shape(model.start_tokens)[0]
        result = decoding.beam_search(model, ops.zeros((batch, 1), "int32"))
        ids = ops.where(result.ids < 0, end_token, result.ids)  # (B, K, T)
        lengths = result.lengths
        run = concrete_int(ops.max(lengths))
        alignments = result.alignments
        if run is not None:
            ids, alignments = ids[:, :, :run], alignments[:, :, :run]
        predicted = ops.transpose(ids, (0, 2, 1))  # (B, T, K)
        time = ops.shape(predicted)[1]
        shape = (batch, time, self.beam_width)
        parents = ops.broadcast_to(
            ops.arange(self.beam_width, dtype="int32"), shape)
        scores = ops.broadcast_to(ops.expand_dims(result.scores, 1), shape)
        if output_time_major:
            predicted, scores, parents = (
                ops.transpose(x, (1, 0, 2)) for x in (predicted, scores, parents))
        outputs = FinalBeamSearchDecoderOutput(
            predicted, BeamSearchDecoderOutput(scores, predicted, parents))
        state = BeamSearchDecoderState(
            cell_state=None, log_probs=result.log_probs,
            finished=ops.ones(ops.shape(lengths), "bool"), lengths=lengths,
            accumulated_attention_probs=ops.sum(alignments, axis=2))
        return outputs, state, lengths
