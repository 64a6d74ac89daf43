"""The pure pieces of beam search, each unit-tested on hand-built values.

Scoring (Wu et al. 2016, "Google's Neural Machine Translation System", eq.
14; TF Addons' `length_penalty_weight` / `coverage_penalty_weight`):

    s(Y, X) = log P(Y | X) / lp(Y) + cp(X; Y)
    lp(Y)   = ((5 + |Y|) / 6) ** alpha
    cp      = beta * sum_j log(min(sum_t alpha_tj, 1))    (unpadded j)

used both to rank the candidates at every step and to order the n-best
list.
"""

import keras
from keras import ops

# Log-probability of impossible continuations. Finite, so sums and the
# length-penalty division never produce NaN.
NEG_INF = -1e30
# Coverage below this counts as this in cp's log (log 0 is -inf).
_MIN_COVERAGE = 1e-10


def tile_batch(x, multiplier):
    """Repeats each batch entry `multiplier` times: `(B, ...)` -> `(B*K, ...)`.

    Entry `b * K + k` is a copy of entry `b` (TF Addons' `tile_batch`).
    """
    return ops.repeat(x, multiplier, axis=0)


def length_penalty(lengths, alpha):
    """GNMT length penalty `((5 + |Y|) / 6) ** alpha`.

    Args:
        lengths: int tensor of hypothesis lengths.
        alpha: Python float; 0 disables the penalty (returns ones).

    Returns:
        float32 tensor shaped like `lengths`.
    """
    lengths = ops.cast(lengths, "float32")
    if not alpha:
        return ops.ones_like(lengths)
    return ops.power((5.0 + lengths) / 6.0, alpha)


def coverage_penalty(coverage, source_mask, beta):
    """GNMT coverage penalty `beta * sum_j log(min(coverage_j, 1))`.

    Args:
        coverage: `(..., S)` float32 summed attention per source position.
        source_mask: `(..., S)` boolean (True on real positions), or None.
        beta: Python float; 0 disables the penalty (returns zeros).

    Returns:
        float32 `(...)` penalty (<= 0); padded positions contribute nothing.
    """
    if not beta:
        return ops.zeros(ops.shape(coverage)[:-1], "float32")
    logs = ops.log(ops.clip(coverage, _MIN_COVERAGE, 1.0))
    if source_mask is not None:
        logs = ops.where(source_mask, logs, 0.0)
    return beta * ops.sum(logs, axis=-1)


def hypothesis_scores(log_probs, lengths, coverage, source_mask, alpha, beta):
    """`s(Y, X) = log P / lp(|Y|) + cp`, elementwise over hypotheses."""
    return log_probs / length_penalty(lengths, alpha) + coverage_penalty(
        coverage, source_mask, beta
    )


def restrict_log_probs(log_probs, step, finished, limits, *, pad_id, bos_id,
                       eos_id, min_length):
    """Applies the decoding rules to one step's log-probabilities.

    - `pad_id` and `bos_id` are never generated;
    - EOS is forbidden before `min_length` tokens;
    - only EOS is allowed at the hypothesis's length limit;
    - a finished hypothesis can only "extend" by EOS with log-prob 0, so its
      score never changes (and its length does not grow, see `beam_search`).

    Args:
        log_probs: `(..., V)` float32 log-softmax of the step's logits.
        step: int scalar, 0-based index of the token being produced.
        finished: `(...)` bool.
        limits: `(...)` int32 maximum number of tokens (including EOS).
        pad_id, bos_id, eos_id: special token ids.
        min_length: minimum number of tokens, including EOS.

    Returns:
        float32 `(..., V)`.
    """
    vocab = ops.shape(log_probs)[-1]
    ids = ops.arange(vocab, dtype="int32")
    is_eos = ops.equal(ids, eos_id)
    never = ops.logical_or(ops.equal(ids, pad_id), ops.equal(ids, bos_id))
    log_probs = ops.where(never, NEG_INF, log_probs)
    produced = step + 1  # tokens after this step
    if min_length > 1:
        log_probs = ops.where(
            ops.logical_and(is_eos, produced < min_length), NEG_INF, log_probs
        )
    at_limit = ops.expand_dims(produced >= limits, -1)
    log_probs = ops.where(
        ops.logical_and(at_limit, ops.logical_not(is_eos)), NEG_INF, log_probs
    )
    finished_row = ops.where(is_eos, 0.0, NEG_INF)  # (V,)
    return ops.where(ops.expand_dims(finished, -1), finished_row, log_probs)


def top_k(x, k):
    """`ops.top_k` over the last axis, ties to the lower index on every backend.

    TensorFlow's and JAX's `top_k` break ties that way; `torch.topk` leaves
    their order unspecified (on a CPU it does not keep the index order), so
    on PyTorch this is a stable descending sort cut to `k`.

    Returns:
        `(values, indices)`, best first.
    """
    if keras.backend.backend() != "torch":
        return ops.top_k(x, k)
    indices = ops.argsort(-x)[..., :k]  # stable: equal values keep index order
    return ops.take_along_axis(x, indices, axis=-1), indices


def top_candidates(ranking, k):
    """The `k` best of each sentence's `K * V` candidates, in two stages.

    The best `k` of every slot first (`(B, K, V)` -> `(B, K, k)`), then the
    best `k` of those `K * k`: the same candidates, in the same order (ties
    go to the lower slot, then the lower token, as a flat `top_k` would), as
    one `top_k` over `K * V` values, but much cheaper for large vocabularies.

    Args:
        ranking: `(B, K, V)` float32 candidate scores.
        k: number of candidates to keep.

    Returns:
        `(parents, tokens)`, `(B, k)` int32 slot and token of each, best first.
    """
    batch, beam, vocab = ops.shape(ranking)
    per_slot = min(k, ranking.shape[-1])
    values, tokens = top_k(ranking, per_slot)  # (B, K, per_slot)
    _, best = top_k(ops.reshape(values, (batch, beam * per_slot)), k)  # (B, k)
    best = ops.cast(best, "int32")
    tokens = ops.take_along_axis(
        ops.reshape(ops.cast(tokens, "int32"), (batch, beam * per_slot)), best, axis=1
    )
    return best // per_slot, tokens


def gather_tree(step_ids, parent_ids):
    """Back-tracks beam-search parent pointers into whole hypotheses.

    The ordinary-ops replacement for TF Addons' `gather_tree` custom op: the
    hypothesis in final slot k is followed backwards through `parent_ids`.

    Args:
        step_ids: `(B, K, T)` int token chosen at step t by slot k.
        parent_ids: `(B, K, T)` int slot at step t-1 that slot k at step t
            extended.

    Returns:
        `(ids, path)`: `(B, K, T)` the token sequence of the hypothesis that
        ends in slot k, and `(B, K, T)` int32 the slot it occupied at each
        step (use it to gather any other per-step, per-slot quantity).

    Example:

    >>> step_ids = [[[2, 5], [3, 6], [4, 7]]]   # (1, K=3, T=2)
    >>> parent_ids = [[[0, 2], [0, 0], [0, 1]]]
    >>> gather_tree(step_ids, parent_ids)[0]
    [[[4, 5], [2, 6], [3, 7]]]
    """
    step_ids = ops.convert_to_tensor(step_ids, "int32")
    parent_ids = ops.convert_to_tensor(parent_ids, "int32")
    batch, beam, steps = ops.shape(step_ids)
    path = ops.zeros_like(step_ids)
    slot = ops.broadcast_to(ops.arange(beam, dtype="int32"), (batch, beam))

    def body(i, carry):
        path, slot = carry
        t = steps - 1 - i
        path = ops.slice_update(path, (0, 0, t), ops.expand_dims(slot, -1))
        parents_t = ops.take_along_axis(parent_ids[:, :, t], slot, axis=1)
        return path, parents_t

    path, _ = ops.fori_loop(0, steps, body, (path, slot))
    ids = ops.take_along_axis(step_ids, path, axis=1)
    return ids, path


def length_limits(source_lengths, max_length, max_length_ratio=None,
                  max_length_offset=0):
    """Per-sentence token limits, `min(max_length, ceil(a * |x|) + b)`.

    Args:
        source_lengths: `(B,)` int number of real source tokens.
        max_length: absolute limit (Python int >= 1, or a scalar int32
            tensor: an exported graph's input).
        max_length_ratio: `a`, or None for the absolute limit only.
        max_length_offset: `b`.

    Returns:
        `(B,)` int32 limits, at least 1.
    """
    limits = ops.full(ops.shape(source_lengths), max_length, "int32")
    if max_length_ratio is not None:
        relative = ops.cast(
            ops.ceil(max_length_ratio * ops.cast(source_lengths, "float32")),
            "int32",
        ) + max_length_offset
        limits = ops.minimum(limits, relative)
    return ops.maximum(limits, 1)
