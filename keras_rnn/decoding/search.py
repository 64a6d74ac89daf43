"""Greedy and beam-search decoding, each one compiled loop.

The Keras 3 successor to TF Addons' `BeamSearchDecoder` + `dynamic_decode`:
every sentence of a batch and every beam of every sentence advance together
in one `keras.ops.while_loop` with fixed shapes, so the whole search compiles
(XLA under `jax.jit`, a graph under `tf.function`) and exports to a
SavedModel with core TensorFlow ops only. Both work on any model with the
decoding protocol (`keras_rnn.decoding.protocol`). `pad_id` and `bos_id`
are never generated; `eos_id` ends a hypothesis. Lengths count generated
tokens including the EOS, which every returned hypothesis ends with (at
`max_length` the EOS is forced). Scoring: `keras_rnn.decoding.ops`.
"""

from typing import NamedTuple

import numpy as np

import keras
from keras import ops

from keras_rnn.decoding.ops import NEG_INF
from keras_rnn.decoding.ops import coverage_penalty
from keras_rnn.decoding.ops import gather_tree
from keras_rnn.decoding.ops import hypothesis_scores
from keras_rnn.decoding.ops import length_limits
from keras_rnn.decoding.ops import length_penalty
from keras_rnn.decoding.ops import restrict_log_probs
from keras_rnn.decoding.ops import tile_batch
from keras_rnn.decoding.ops import top_candidates
from keras_rnn.decoding.ops import top_k


class DecodeResult(NamedTuple):
    """What `greedy_decode` and `beam_search` return (backend tensors;
    `Seq2Seq.decode` returns the same fields as NumPy arrays).

    Attributes:
        ids: `(batch, n_best, max_length)` int32 token ids, best first; each
            hypothesis ends with EOS and is followed by `pad_id`.
        scores: `(batch, n_best)` float32 `s(Y, X)` (equal to `log_probs`
            when alpha = beta = 0).
        log_probs: `(batch, n_best)` float32 `log P(Y | X)`.
        lengths: `(batch, n_best)` int32 number of tokens including EOS.
        alignments: `(batch, n_best, max_length, source_time)` float32
            attention weights of each generated token over the source
            (zeros after the EOS).
    """

    ids: object
    scores: object
    log_probs: object
    lengths: object
    alignments: object


class BeamState(NamedTuple):
    """The loop variables of `beam_search` (batch B, beam K, source S, T steps).

    Attributes:
        step: int32 scalar, number of steps taken.
        model_state: the model's decoder state, leading dimension B*K.
        tokens: `(B*K,)` int32 token chosen at the last step (the next input).
        log_probs: `(B, K)` float32 cumulative log-probability.
        finished: `(B, K)` bool, the hypothesis has produced EOS.
        lengths: `(B, K)` int32 tokens generated, including EOS.
        coverage: `(B, K, S)` float32 sum of the alignments so far.
        step_ids: `(B, K, T)` int32 token chosen at each step by the beam in
            that slot at that step (before back-tracking).
        parent_ids: `(B, K, T)` int32 the slot each step's beam came from.
        step_alignments: `(B, K, T, S)` float32 alignments per step and slot.
    """

    step: object
    model_state: object
    tokens: object
    log_probs: object
    finished: object
    lengths: object
    coverage: object
    step_ids: object
    parent_ids: object
    step_alignments: object


# ------------------------------------------------------------------ decoders


def _buffer_length(memory, max_length, max_length_ratio, max_length_offset):
    """Static number of decode steps when the source length is static."""
    source_time = memory.values.shape[1]
    if max_length_ratio is None:
        return max_length
    if source_time is None or ops.is_tensor(max_length):
        # Dynamic source length (a TF graph with unknown shape).
        relative = ops.cast(
            ops.ceil(max_length_ratio * ops.cast(ops.shape(memory.values)[1], "float32")),
            "int32",
        ) + max_length_offset
        return ops.maximum(ops.minimum(relative, max_length), 1)
    return static_steps(source_time, max_length, max_length_ratio, max_length_offset)


def static_steps(source_time, max_length, max_length_ratio, max_length_offset):
    """Decode steps for a source of `source_time` tokens (Python ints):
    `max(1, min(max_length, ceil(ratio * source_time) + offset))`, or
    `max_length` without a ratio."""
    if max_length_ratio is None:
        return max_length
    relative = int(np.ceil(max_length_ratio * source_time)) + max_length_offset
    return max(1, min(max_length, relative))


def alignments_of(state, memory):
    """The alignments of a decoder step: `state.alignments`, or zeros for a
    decoder without attention (a state with no `alignments` field, e.g. a
    plain LSTM's `[h, c]`).

    Returns:
        `(rows, source_time)` float32, rows the leading dimension of the state.
    """
    alignments = getattr(state, "alignments", None)
    if alignments is not None:
        return ops.cast(alignments, "float32")
    rows = ops.shape(keras.tree.flatten(state)[0])[0]
    return ops.zeros((rows, ops.shape(memory.values)[1]), "float32")


def _source_lengths(memory):
    if memory.mask is None:
        batch, time = ops.shape(memory.values)[0], ops.shape(memory.values)[1]
        return ops.full((batch,), time, "int32")
    return ops.sum(ops.cast(memory.mask, "int32"), axis=1)


def _start(model, source, settings):
    """Checks the source, encodes, and sets the limits.

    Returns:
        `(memory, state, steps, limits, rules)`: the encoder's memory and
        decoder state, the number of loop steps (static when possible), the
        `(B,)` per-sentence token limits, and `restrict_log_probs`'s rules.
    """
    model.check_source(source)
    memory, state = model.encode(ops.convert_to_tensor(source, "int32"), training=False)
    lengths = (settings.max_length, settings.max_length_ratio,
               settings.max_length_offset)
    steps = _buffer_length(memory, *lengths)
    limits = length_limits(_source_lengths(memory), *lengths)
    rules = dict(pad_id=model.pad_id, bos_id=model.bos_id, eos_id=model.eos_id,
                 min_length=settings.min_length)
    return memory, state, steps, limits, rules


def greedy_decode(model, source, max_length=None, max_length_ratio=None,
                  max_length_offset=None, min_length=None):
    """Greedy decoding: the most probable token at every step.

    One `keras.ops.while_loop` over all sentences at once; it stops when
    every sentence has produced EOS or reached its length limit.

    Args:
        model: a model with the decoding protocol
            (`keras_rnn.decoding.protocol`), e.g. `keras_rnn.Seq2Seq`.
        source: `(batch, source_time)` int source token ids, padded with
            `model.pad_id`.
        max_length: maximum number of generated tokens including EOS;
            defaults to the model's decoding setting.
        max_length_ratio, max_length_offset: per-sentence limit
            `min(max_length, ceil(ratio * |x|) + offset)`.
        min_length: minimum number of tokens including EOS.

    Every argument left None takes the model's decoding setting.

    Returns:
        `DecodeResult` with `n_best = 1`; `scores == log_probs`.
    """
    settings = model.decoding_settings(
        max_length=max_length, max_length_ratio=max_length_ratio,
        max_length_offset=max_length_offset, min_length=min_length,
    )
    memory, state, steps, limits, rules = _start(model, source, settings)
    batch, source_time = ops.shape(memory.values)[0], ops.shape(memory.values)[1]

    def cond(step, state, tokens, finished, *_):
        return ops.logical_and(step < steps, ops.logical_not(ops.all(finished)))

    def body(step, state, tokens, finished, log_probs, lengths, ids, alignments):
        logits, state = model.decode_step(tokens, state, memory)
        step_log_probs = restrict_log_probs(
            ops.log_softmax(ops.cast(logits, "float32"), axis=-1),
            step, finished, limits, **rules,
        )
        new_tokens = ops.cast(ops.argmax(step_log_probs, axis=-1), "int32")
        log_probs = log_probs + ops.take_along_axis(
            step_log_probs, ops.expand_dims(new_tokens, -1), axis=-1
        )[:, 0]
        alive = ops.logical_not(finished)
        lengths = lengths + ops.cast(alive, "int32")
        written = ops.where(alive, new_tokens, model.pad_id)
        ids = ops.slice_update(ids, (0, step), ops.expand_dims(written, -1))
        step_alignments = ops.where(
            ops.expand_dims(alive, -1), alignments_of(state, memory), 0.0
        )
        alignments = ops.slice_update(
            alignments, (0, step, 0), ops.expand_dims(step_alignments, 1)
        )
        finished = ops.logical_or(finished, ops.equal(new_tokens, model.eos_id))
        return (step + 1, state, new_tokens, finished, log_probs, lengths, ids,
                alignments)

    loop_vars = (
        ops.convert_to_tensor(0, "int32"),
        state,
        ops.full((batch,), model.bos_id, "int32"),
        ops.zeros((batch,), "bool"),
        ops.zeros((batch,), "float32"),
        ops.zeros((batch,), "int32"),
        ops.full((batch, steps), model.pad_id, "int32"),
        ops.zeros((batch, steps, source_time), "float32"),
    )
    _, _, _, _, log_probs, lengths, ids, alignments = ops.while_loop(
        cond, body, loop_vars
    )
    return DecodeResult(
        ids=ops.expand_dims(ids, 1),
        scores=ops.expand_dims(log_probs, 1),
        log_probs=ops.expand_dims(log_probs, 1),
        lengths=ops.expand_dims(lengths, 1),
        alignments=ops.expand_dims(alignments, 1),
    )


def beam_search(model, source, beam_size=None, n_best=None, max_length=None,
                max_length_ratio=None, max_length_offset=None, min_length=None,
                length_penalty_alpha=None, coverage_penalty_beta=None, alignments=True):
    """Beam search over all sentences and beams in one compiled loop.

    At step t every live hypothesis (slot) of every sentence is extended by
    every token; the `beam_size` best candidates of each sentence by
    `s(Y, X)` (`keras_rnn.decoding.ops`) become the next slots. Finished hypotheses
    keep their score and compete with the live ones; the loop stops when all
    hypotheses of all sentences are finished or the longest limit is
    reached. Parent pointers are resolved at the end by `gather_tree`.

    Args:
        model: a model with the decoding protocol
            (`keras_rnn.decoding.protocol`).
        source: `(batch, source_time)` int source token ids.
        beam_size: hypotheses kept per sentence (>= 1); `beam_size=1` is
            greedy decoding.
        n_best: hypotheses returned per sentence (1 <= n_best <= beam_size).
        max_length, max_length_ratio, max_length_offset, min_length: as in
            `greedy_decode`.
        length_penalty_alpha: GNMT alpha (0 = none).
        coverage_penalty_beta: GNMT beta (0 = none).
        alignments: keep every step's attention weights for the result.
            False returns zeros there and leaves the `(B, K, T, S)` buffer
            out of the loop (a server that does not return them); the
            hypotheses are the same.

    Every argument left None takes the model's decoding setting. With
    beta = 0 the coverage is neither summed nor added to the ranking
    (adding zeros changes no score).

    Returns:
        `DecodeResult`, `n_best` hypotheses per sentence, best first.
    """
    settings = model.decoding_settings(
        beam_size=beam_size, n_best=n_best, max_length=max_length,
        max_length_ratio=max_length_ratio, max_length_offset=max_length_offset,
        min_length=min_length, length_penalty_alpha=length_penalty_alpha,
        coverage_penalty_beta=coverage_penalty_beta,
    )
    beam_size, n_best = settings.beam_size, settings.n_best
    alpha = float(settings.length_penalty_alpha)
    beta = float(settings.coverage_penalty_beta)
    memory, state, steps, limits, rules = _start(model, source, settings)
    batch, source_time = ops.shape(memory.values)[0], ops.shape(memory.values)[1]
    vocab = model.target_vocab_size

    # Every slot of a sentence starts as the same empty hypothesis; only
    # slot 0 may be extended at the first step, or the beam would fill with
    # copies.
    def tile(x):
        return None if x is None else tile_batch(x, beam_size)

    memory = keras.tree.map_structure(tile, memory)  # keys may be None
    state = keras.tree.map_structure(tile, state)
    source_mask = None
    if memory.mask is not None:
        source_mask = ops.reshape(memory.mask, (batch, beam_size, source_time))
    limits = ops.repeat(ops.expand_dims(limits, 1), beam_size, axis=1)  # (B, K)
    first = ops.concatenate(
        [ops.zeros((1,), "float32"), ops.full((beam_size - 1,), NEG_INF, "float32")]
    )
    # Offsets turn a (B, K) slot index into a row of the (B*K, ...) state.
    offsets = ops.expand_dims(ops.arange(batch, dtype="int32") * beam_size, 1)

    def cond(beam):
        return ops.logical_and(
            beam.step < steps, ops.logical_not(ops.all(beam.finished))
        )

    def body(beam):
        return (_beam_step(beam),)

    def _beam_step(beam):
        step = beam.step
        logits, model_state = model.decode_step(beam.tokens, beam.model_state, memory)
        logits = ops.reshape(ops.cast(logits, "float32"), (batch, beam_size, vocab))
        step_log_probs = restrict_log_probs(
            ops.log_softmax(logits, axis=-1), step, beam.finished, limits, **rules
        )
        total = ops.expand_dims(beam.log_probs, -1) + step_log_probs  # (B, K, V)
        alive = ops.logical_not(beam.finished)
        lengths = beam.lengths + ops.cast(alive, "int32")  # (B, K)
        # The candidates of one slot share its length and coverage.
        ranking = total / ops.expand_dims(length_penalty(lengths, alpha), -1)
        coverage, step_alignments = beam.coverage, beam.step_alignments
        if beta or alignments:
            weights = ops.reshape(
                alignments_of(model_state, memory), (batch, beam_size, source_time)
            )
            weights = ops.where(ops.expand_dims(alive, -1), weights, 0.0)
        if beta:
            coverage = coverage + weights
            ranking = ranking + ops.expand_dims(
                coverage_penalty(coverage, source_mask, beta), -1
            )
        parents, tokens = top_candidates(ranking, beam_size)  # (B, K) each
        # A flat gather of the K chosen of the B*K*V totals (take_along_axis
        # would transpose and copy all of them on TensorFlow).
        top = (ops.expand_dims(ops.arange(batch, dtype="int32"), 1) * beam_size
               + parents) * vocab + tokens  # (B, K)
        log_probs = ops.take(ops.reshape(total, (-1,)), top)
        finished = ops.take_along_axis(beam.finished, parents, axis=1)
        finished = ops.logical_or(finished, ops.equal(tokens, model.eos_id))
        rows = ops.reshape(parents + offsets, (-1,))  # (B*K,) rows to keep
        model_state = keras.tree.map_structure(lambda x: ops.take(x, rows, axis=0), model_state)
        if beta:
            coverage = ops.take_along_axis(coverage, ops.expand_dims(parents, -1), axis=1)
        if alignments:
            # Stored by the slot the hypothesis now occupies, like step_ids.
            step_alignments = ops.slice_update(
                step_alignments, (0, 0, step, 0),
                ops.expand_dims(
                    ops.take_along_axis(weights, ops.expand_dims(parents, -1), axis=1), 2
                ),
            )
        return BeamState(
            step=step + 1,
            model_state=model_state,
            tokens=ops.reshape(tokens, (-1,)),
            log_probs=log_probs,
            finished=finished,
            lengths=ops.take_along_axis(lengths, parents, axis=1),
            coverage=coverage,
            step_ids=ops.slice_update(
                beam.step_ids, (0, 0, step), ops.expand_dims(tokens, -1)
            ),
            parent_ids=ops.slice_update(
                beam.parent_ids, (0, 0, step), ops.expand_dims(parents, -1)
            ),
            step_alignments=step_alignments,
        )

    initial = BeamState(
        step=ops.convert_to_tensor(0, "int32"),
        model_state=state,
        tokens=ops.full((batch * beam_size,), model.bos_id, "int32"),
        log_probs=ops.broadcast_to(first, (batch, beam_size)),
        finished=ops.zeros((batch, beam_size), "bool"),
        lengths=ops.zeros((batch, beam_size), "int32"),
        coverage=ops.zeros((batch, beam_size, source_time), "float32"),
        step_ids=ops.full((batch, beam_size, steps), model.pad_id, "int32"),
        # Steps the early stop skips keep every slot where it is.
        parent_ids=ops.broadcast_to(
            ops.reshape(ops.arange(beam_size, dtype="int32"), (1, beam_size, 1)),
            (batch, beam_size, steps),
        ),
        # (B, K, T, S); without `alignments` a (1, 1, 1, 1) placeholder.
        step_alignments=ops.zeros(
            (batch, beam_size, steps, source_time) if alignments else (1, 1, 1, 1),
            "float32"),
    )
    (final,) = ops.while_loop(cond, body, (initial,))

    ids, path = gather_tree(final.step_ids, final.parent_ids)
    if alignments:
        # Alignments of step t live in the slot the hypothesis held at step t.
        weights = ops.take_along_axis(
            final.step_alignments, ops.expand_dims(path, -1), axis=1
        )
    else:
        weights = ops.zeros((batch, beam_size, steps, source_time), "float32")
    # Tokens after EOS (finished slots pass EOS through) become padding.
    position = ops.arange(steps, dtype="int32")
    after_end = position >= ops.expand_dims(final.lengths, -1)  # (B, K, T)
    ids = ops.where(after_end, model.pad_id, ids)

    scores = hypothesis_scores(final.log_probs, final.lengths, final.coverage,
                               source_mask, alpha, beta)
    best_scores, order = top_k(scores, n_best)  # (B, n_best)
    order = ops.cast(order, "int32")

    def pick(x):
        index = ops.reshape(order, ops.shape(order) + (1,) * (len(x.shape) - 2))
        return ops.take_along_axis(x, index, axis=1)

    return DecodeResult(
        ids=pick(ids),
        scores=best_scores,
        log_probs=pick(final.log_probs),
        lengths=pick(final.lengths),
        alignments=pick(weights),
    )
