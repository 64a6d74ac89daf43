"""Greedy and beam-search decoding: pure pieces on hand-built numbers, the
search against exhaustive enumeration, and its guarantees."""

import itertools
from typing import NamedTuple

import numpy as np
import pytest

import keras
from keras import ops

import keras_rnn
from keras_rnn import decoding
from keras_rnn.attention import AttentionMemory

PAD, BOS, EOS = 0, 1, 2


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


# ---------------------------------------------------------------- pieces


def test_length_penalty_is_the_gnmt_formula():
    lengths = np.array([1, 2, 5, 10])
    np.testing.assert_allclose(_np(decoding.length_penalty(lengths, 0.0)), 1.0)
    np.testing.assert_allclose(
        _np(decoding.length_penalty(lengths, 0.6)), ((5 + lengths) / 6) ** 0.6, rtol=1e-6
    )


def test_coverage_penalty_is_the_gnmt_formula_and_ignores_padding():
    coverage = np.array([[0.5, 2.0, 0.25, 7.0], [1.0, 1.0, 0.0, 0.0]], "float32")
    mask = np.array([[True, True, True, False], [True, True, False, False]])
    got = _np(decoding.coverage_penalty(coverage, mask, 0.4))
    expected = 0.4 * np.array([np.log(0.5) + 0 + np.log(0.25), 0.0])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(_np(decoding.coverage_penalty(coverage, mask, 0.0)), 0.0)


def test_restrict_log_probs_applies_every_rule():
    log_probs = np.log(np.full((4, 5), 0.2, "float32"))
    finished = np.array([False, False, False, True])
    limits = np.array([10, 10, 2, 10])
    out = _np(decoding.restrict_log_probs(
        log_probs, 1, finished, limits, pad_id=PAD, bos_id=BOS, eos_id=EOS,
        min_length=3))
    neg = decoding.NEG_INF
    # pad and bos never; EOS forbidden before min_length (step 1 -> 2 tokens).
    np.testing.assert_allclose(out[0], [neg, neg, neg, np.log(0.2), np.log(0.2)])
    # At the limit only EOS (the limit wins over min_length).
    row = decoding.restrict_log_probs(
        log_probs, 1, finished, limits, pad_id=PAD, bos_id=BOS, eos_id=EOS,
        min_length=0)
    np.testing.assert_allclose(_np(row)[2], [neg, neg, np.log(0.2), neg, neg])
    # A finished hypothesis can only pass EOS through, at no cost.
    np.testing.assert_allclose(out[3], [neg, neg, 0.0, neg, neg])


def test_gather_tree_follows_parents_backwards():
    # One sentence, 3 slots, 3 steps, checked by hand.
    step_ids = np.array([[[3, 5, 7], [4, 6, 8], [9, 10, 11]]])
    parent_ids = np.array([[[0, 1, 0], [0, 0, 2], [0, 2, 1]]])
    ids, path = decoding.gather_tree(step_ids, parent_ids)
    # slot 0: 7 <- slot 0 at t=1 (5) <- its parent slot 1 at t=0 (4)
    # slot 1: 8 <- slot 2 at t=1 (10) <- slot 2 at t=0 (9)
    # slot 2: 11 <- slot 1 at t=1 (6) <- slot 0 at t=0 (3)
    np.testing.assert_array_equal(_np(ids), [[[4, 5, 7], [9, 10, 8], [3, 6, 11]]])
    np.testing.assert_array_equal(_np(path), [[[1, 0, 0], [2, 2, 1], [0, 1, 2]]])


def test_gather_tree_matches_a_python_backtrack():
    rng = np.random.default_rng(0)
    batch, beam, steps = 3, 4, 6
    step_ids = rng.integers(0, 50, (batch, beam, steps))
    parent_ids = rng.integers(0, beam, (batch, beam, steps))
    ids = _np(decoding.gather_tree(step_ids, parent_ids)[0])
    for b in range(batch):
        for k in range(beam):
            slot, expected = k, []
            for t in reversed(range(steps)):
                expected.append(step_ids[b, slot, t])
                slot = parent_ids[b, slot, t]
            np.testing.assert_array_equal(ids[b, k], expected[::-1])


@pytest.mark.parametrize("k,vocab", [(3, 7), (5, 4), (1, 6)])
def test_two_stage_top_k_equals_flat_top_k_including_ties(k, vocab):
    rng = np.random.default_rng(k)
    # Small integers: many ties, which must break as a flat top_k does.
    ranking = rng.integers(0, 4, (6, k, vocab)).astype("float32")
    parents, tokens = decoding.top_candidates(ranking, k)
    # A flat top_k as TensorFlow's and JAX's break ties: lower index first.
    flat = np.argsort(-ranking.reshape(6, k * vocab), axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(_np(parents) * vocab + _np(tokens), flat)
    _, flat_top_k = decoding.top_k(ranking.reshape(6, k * vocab), k)
    np.testing.assert_array_equal(_np(flat_top_k), flat)


def test_length_limits_absolute_and_relative():
    lengths = np.array([1, 4, 10])
    np.testing.assert_array_equal(_np(decoding.length_limits(lengths, 8)), [8, 8, 8])
    np.testing.assert_array_equal(
        _np(decoding.length_limits(lengths, 8, 1.5, 2)), [4, 8, 8])


# ------------------------------------------------- a scripted "model"


class _ScriptState(NamedTuple):
    step: object
    alignments: object


class Scripted:
    """The decoding protocol with hand-built log-probabilities.

    `table[t, prev, :]` are the log-probabilities at step t after token
    `prev`; `align[prev]` the alignment weights of that step.
    """

    pad_id, bos_id, eos_id = PAD, BOS, EOS
    decoding = keras_rnn.DecodingSettings()
    decoding_settings = keras_rnn.Seq2Seq.decoding_settings

    def __init__(self, table, align):
        self.table = np.asarray(table, "float32")
        self.align = np.asarray(align, "float32")
        self.target_vocab_size = self.table.shape[-1]

    def check_source(self, source):
        pass

    def encode(self, source, training=False):
        source = ops.convert_to_tensor(source, "int32")
        batch, time = source.shape
        values = ops.zeros((batch, time, 1))
        memory = AttentionMemory(values, values, ops.not_equal(source, PAD))
        return memory, _ScriptState(ops.zeros((batch,), "int32"),
                                    ops.zeros((batch, time), "float32"))

    def decode_step(self, tokens, state, memory):
        steps, vocab = self.table.shape[0], self.target_vocab_size
        step = ops.minimum(state.step, steps - 1)
        flat = ops.reshape(ops.convert_to_tensor(self.table), (steps * vocab, vocab))
        logits = ops.take(flat, step * vocab + tokens, axis=0)
        alignments = ops.take(ops.convert_to_tensor(self.align), tokens, axis=0)
        return logits, _ScriptState(state.step + 1, alignments)


def _table(rows, steps=4, vocab=5):
    """log-probabilities from {(step, prev): {token: p}}; the rest tiny."""
    table = np.full((steps, vocab, vocab), 1e-6)
    for (step, prev), probs in rows.items():
        for token, p in probs.items():
            table[step, prev, token] = p
    table /= table.sum(-1, keepdims=True)
    return np.log(table)


A, B = 3, 4
# "a eos": 0.5 * 0.6 ; "b b b eos": 0.5 * 0.5 * ~0.95 * ~1
LENGTH_SCRIPT = _table({
    (0, BOS): {A: 0.5, B: 0.5},
    (1, A): {EOS: 0.6, A: 0.2, B: 0.2},
    (1, B): {B: 0.5, EOS: 0.25, A: 0.25},
    (2, B): {B: 0.95, EOS: 0.05},
    (3, B): {EOS: 1.0},
    (2, A): {EOS: 1.0}, (3, A): {EOS: 1.0},
})


def _hypothesis_log_prob(table, tokens):
    prev, total = BOS, 0.0
    for t, token in enumerate(tokens):
        total += table[t, prev, token]
        prev = token
    return total


def test_length_penalty_changes_the_ranking_as_the_formula_says():
    model = Scripted(LENGTH_SCRIPT, np.ones((5, 1)))
    source = np.array([[5]])
    short, long = [A, EOS], [B, B, B, EOS]
    lp_short, lp_long = (_hypothesis_log_prob(LENGTH_SCRIPT, h) for h in (short, long))
    assert lp_short > lp_long  # without a penalty the short one wins ...
    alpha = 2.0
    norm = lambda lp, n: lp / ((5 + n) / 6) ** alpha  # noqa: E731
    assert norm(lp_long, 4) > norm(lp_short, 2)  # ... with alpha=2 the long one

    plain = decoding.beam_search(
        model, source, beam_size=4, n_best=2, max_length=4, length_penalty_alpha=0.0)
    assert list(_np(plain.ids)[0, 0, :2]) == short
    np.testing.assert_allclose(_np(plain.scores)[0, 0], lp_short, rtol=1e-5)

    model_result = decoding.beam_search(
        model, source, beam_size=4, n_best=2, max_length=4, length_penalty_alpha=alpha)
    ids, scores = _np(model_result.ids)[0], _np(model_result.scores)[0]
    assert list(ids[0]) == long and list(ids[1][:2]) == short
    np.testing.assert_allclose(scores, [norm(lp_long, 4), norm(lp_short, 2)], rtol=1e-5)
    np.testing.assert_allclose(_np(model_result.log_probs)[0], [lp_long, lp_short], rtol=1e-5)
    np.testing.assert_array_equal(_np(model_result.lengths)[0], [4, 2])


def test_coverage_penalty_changes_the_ranking_as_the_formula_says():
    table = _table({(0, BOS): {A: 0.6, B: 0.4}, (1, A): {EOS: 1.0}, (1, B): {EOS: 1.0}},
                   steps=2)
    align = np.zeros((5, 2), "float32")
    align[BOS] = [1.0, 0.0]  # step 0 looks at source word 0
    align[A] = [0.9, 0.1]  # after "a": word 0 again -> word 1 uncovered
    align[B] = [0.0, 1.0]  # after "b": word 1 -> everything covered
    model = Scripted(table, align)
    source = np.array([[5, 6]])
    beta = 0.5
    lp_a, lp_b = np.log(0.6), np.log(0.4)
    expected_a = lp_a + beta * (np.log(1.0) + np.log(0.1))  # coverage (1.9, 0.1)
    expected_b = lp_b + beta * (np.log(1.0) + np.log(1.0))  # coverage (1.0, 1.0)
    assert lp_a > lp_b and expected_b > expected_a

    result = decoding.beam_search(model, source, beam_size=2, n_best=2, max_length=2)
    assert list(_np(result.ids)[0, 0]) == [A, EOS]
    result = decoding.beam_search(model, source, beam_size=2, n_best=2, max_length=2,
                                  coverage_penalty_beta=beta)
    np.testing.assert_array_equal(_np(result.ids)[0], [[B, EOS], [A, EOS]])
    np.testing.assert_allclose(_np(result.scores)[0], [expected_b, expected_a], rtol=1e-5)
    # The alignment matrix of each returned hypothesis, step by step.
    np.testing.assert_allclose(_np(result.alignments)[0, 0], [align[BOS], align[B]])
    np.testing.assert_allclose(_np(result.alignments)[0, 1], [align[BOS], align[A]])


def test_finished_hypotheses_stay_finished():
    model = Scripted(LENGTH_SCRIPT, np.ones((5, 1)))
    source = np.array([[5]])
    lp_short = _hypothesis_log_prob(LENGTH_SCRIPT, [A, EOS])
    results = [decoding.beam_search(model, source, beam_size=3, n_best=3, max_length=n)
               for n in (2, 4, 9)]
    for result in results:
        ids = _np(result.ids)[0]
        row = [i for i in range(3) if list(ids[i][:2]) == [A, EOS]][0]
        # Finished at step 2: padding after EOS, the score and length frozen.
        assert np.all(ids[row][2:] == PAD)
        assert _np(result.lengths)[0, row] == 2
        np.testing.assert_allclose(_np(result.scores)[0, row], lp_short, rtol=1e-6)
        np.testing.assert_allclose(_np(result.alignments)[0, row, 2:], 0.0)
        # Every hypothesis ends with exactly one EOS.
        for i in range(3):
            length = _np(result.lengths)[0, i]
            assert ids[i][length - 1] == EOS and EOS not in ids[i][: length - 1]


def test_greedy_on_the_script_takes_the_argmax_path():
    model = Scripted(LENGTH_SCRIPT, np.ones((5, 1)))
    result = decoding.greedy_decode(model, np.array([[5], [6]]), max_length=4)
    # Ties at step 0 go to the lower id (a); then EOS.
    np.testing.assert_array_equal(_np(result.ids)[:, 0], [[A, EOS, 0, 0]] * 2)
    np.testing.assert_allclose(_np(result.scores)[:, 0],
                               _hypothesis_log_prob(LENGTH_SCRIPT, [A, EOS]), rtol=1e-6)


# ------------------------------------------------- on a real Seq2Seq


def _model(vocab=5, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    options = dict(embedding_dim=6, units=8, encoder_units=5, cell="gru")
    options.update(kwargs)
    model = keras_rnn.Seq2Seq(7, vocab, **options)
    model.build()
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        variable.assign(rng.normal(scale=0.8, size=variable.shape).astype("float32"))
    return model


SOURCES = np.array([[3, 4, 5, 6, 0], [6, 5, 0, 0, 0], [4, 4, 4, 4, 4]])


def _exhaustive(model, source, max_length, alpha, beta):
    """Every hypothesis of up to `max_length` tokens ending in EOS, scored
    through the teacher-forced path."""
    words = [t for t in range(model.target_vocab_size) if t not in (PAD, BOS, EOS)]
    hypotheses = []
    for length in range(1, max_length + 1):
        for body in itertools.product(words, repeat=length - 1):
            hypotheses.append(list(body) + [EOS])
    n = len(hypotheses)
    targets = np.zeros((n, max_length), "int32")
    for i, h in enumerate(hypotheses):
        targets[i, 0] = BOS
        targets[i, 1:len(h)] = h[:-1]
    logits, alignments = model.teacher_forced(np.repeat(source[None], n, 0), targets)
    log_p = _np(ops.log_softmax(logits, axis=-1)).astype("float64")
    alignments = _np(alignments).astype("float64")
    mask = source != PAD
    scores, log_probs = [], []
    for i, h in enumerate(hypotheses):
        lp = sum(log_p[i, t, token] for t, token in enumerate(h))
        coverage = alignments[i, : len(h)].sum(0)
        cp = beta * np.sum(np.log(np.clip(coverage, 1e-10, 1.0))[mask])
        scores.append(lp / ((5 + len(h)) / 6) ** alpha + cp)
        log_probs.append(lp)
    order = np.argsort(scores)[::-1]
    return [hypotheses[i] for i in order], np.array(scores)[order], np.array(log_probs)[order]


@pytest.mark.parametrize("alpha,beta", [(0.0, 0.0), (1.0, 0.0), (0.6, 0.4)])
def test_wide_beam_equals_exhaustive_search(alpha, beta):
    model = _model()  # vocabulary of 5: pad, bos, eos and two words
    for source in SOURCES[:2]:
        hypotheses, scores, log_probs = _exhaustive(model, source, 4, alpha, beta)
        assert len(hypotheses) == 15
        # 16 slots: no hypothesis is ever pruned, so the n-best list is exact.
        result = decoding.beam_search(
            model, source[None], beam_size=16, n_best=15, max_length=4,
            length_penalty_alpha=alpha, coverage_penalty_beta=beta)
        ids, got = _np(result.ids)[0], _np(result.scores)[0]
        np.testing.assert_allclose(got, scores, rtol=1e-4, atol=1e-5)
        for k in range(3):  # the best ones, where scores are well separated
            length = int(_np(result.lengths)[0, k])
            assert list(ids[k][:length]) == hypotheses[k]
        # A modest beam still finds the best one here.
        small = decoding.beam_search(
            model, source[None], beam_size=4, max_length=4,
            length_penalty_alpha=alpha, coverage_penalty_beta=beta)
        np.testing.assert_allclose(_np(small.scores)[0, 0], scores[0], rtol=1e-4)


def test_beam_size_one_is_greedy_decoding():
    model = _model(vocab=12, seed=1, cell="lstm", decoder_layers=2)
    greedy = decoding.greedy_decode(model, SOURCES, max_length=9)
    beam = decoding.beam_search(model, SOURCES, beam_size=1, max_length=9)
    for field in ("ids", "lengths"):
        np.testing.assert_array_equal(_np(getattr(beam, field)), _np(getattr(greedy, field)))
    np.testing.assert_array_equal(_np(beam.scores), _np(greedy.scores))
    np.testing.assert_allclose(_np(beam.alignments), _np(greedy.alignments), atol=0)


def test_a_sentence_decodes_the_same_alone_and_in_a_padded_batch():
    model = _model(vocab=12, seed=2, cell="lstm", encoder_layers=2)
    for method in ("greedy", "beam"):
        batch = model.decode(SOURCES, method=method, beam_size=3, n_best=2, max_length=7)
        for i, source in enumerate(SOURCES):
            length = int(np.sum(source != PAD))
            alone = model.decode(source[None, :length], method=method, beam_size=3,
                                 n_best=2, max_length=7)
            np.testing.assert_array_equal(batch.ids[i], alone.ids[0])
            np.testing.assert_allclose(batch.scores[i], alone.scores[0], atol=1e-5)
            np.testing.assert_allclose(batch.alignments[i, ..., :length],
                                       alone.alignments[0], atol=1e-6)
            assert np.all(batch.alignments[i, ..., length:] == 0.0)


def test_length_sorted_chunks_give_the_same_results():
    model = _model(vocab=12, seed=6)
    sources = np.random.default_rng(0).integers(3, 7, (7, 11))
    for i, length in enumerate([11, 1, 3, 9, 2, 6, 4]):
        sources[i, length:] = PAD
    for method in ("greedy", "beam"):
        whole = model.decode(sources, method=method, max_length=6)
        chunked = model.decode(sources, method=method, max_length=6, batch_size=3)
        np.testing.assert_array_equal(chunked.ids, whole.ids)
        np.testing.assert_array_equal(chunked.lengths, whole.lengths)
        np.testing.assert_allclose(chunked.scores, whole.scores, atol=1e-5)
        np.testing.assert_allclose(chunked.alignments, whole.alignments, atol=1e-6)


def test_compiled_decoder_equals_the_eager_one():
    model = _model(vocab=9, seed=3)
    for method, fn in (("beam", decoding.beam_search), ("greedy", decoding.greedy_decode)):
        eager = fn(model, SOURCES, max_length=6)
        compiled = model.decode(SOURCES, method=method, max_length=6)
        np.testing.assert_array_equal(compiled.ids, _np(eager.ids))
        np.testing.assert_allclose(compiled.scores, _np(eager.scores), atol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 0.4])
def test_without_alignments_the_loop_carries_less_and_finds_the_same(monkeypatch, beta):
    carried = []  # float elements the search loop carries from step to step
    loop = ops.while_loop

    def counting(cond, body, loop_vars, **kwargs):
        carried.append(sum(int(np.prod(x.shape)) for x in keras.tree.flatten(loop_vars)
                           if "float" in str(x.dtype)))
        return loop(cond, body, loop_vars, **kwargs)

    monkeypatch.setattr(ops, "while_loop", counting)
    model = _model(vocab=12, seed=7)
    settings = dict(beam_size=3, n_best=3, max_length=6, coverage_penalty_beta=beta,
                    length_penalty_alpha=0.6)
    full = decoding.beam_search(model, SOURCES, **settings)
    lean = decoding.beam_search(model, SOURCES, alignments=False, **settings)
    for field in ("ids", "scores", "log_probs", "lengths"):
        np.testing.assert_array_equal(_np(getattr(lean, field)), _np(getattr(full, field)))
    assert _np(lean.alignments).shape == _np(full.alignments).shape
    assert not _np(lean.alignments).any() and _np(full.alignments).any()
    batch, beam, steps, source_time = _np(full.alignments).shape[:1] + (3, 6, 5)
    assert carried[0] - carried[1] == batch * beam * steps * source_time - 1


def test_length_settings():
    model = _model(vocab=9, seed=4)
    # Make EOS the most likely token everywhere.
    bias = model.output_layer.bias
    bias.assign(_np(bias) + np.eye(9)[EOS] * 50)
    for method in ("greedy", "beam"):
        result = model.decode(SOURCES, method=method, max_length=8)
        np.testing.assert_array_equal(result.lengths, 1)
        result = model.decode(SOURCES, method=method, max_length=8, min_length=3)
        np.testing.assert_array_equal(result.lengths, 3)
    bias.assign(_np(bias) - np.eye(9)[EOS] * 100)  # now EOS never wins
    result = model.decode(SOURCES, max_length=8, max_length_ratio=1.0, max_length_offset=1)
    np.testing.assert_array_equal(result.lengths[:, 0], [5, 3, 6])  # |x| + 1
    assert result.ids.shape[-1] == 6  # ceil(1.0 * 5) + 1 steps at most
    result = model.decode(SOURCES, method="greedy", max_length=4)
    np.testing.assert_array_equal(result.lengths[:, 0], 4)
    assert np.all(result.ids[:, 0, 3] == EOS)


def test_early_stop_when_every_hypothesis_is_finished():
    model = Scripted(LENGTH_SCRIPT, np.ones((5, 1)))
    source = np.array([[5]])
    # All hypotheses finish within 4 steps; a limit of 50 must not change that.
    result = decoding.beam_search(model, source, beam_size=2, max_length=50)
    assert _np(result.lengths).max() <= 4


def test_bad_input_gets_a_clear_error():
    model = _model(vocab=9, seed=5, max_source_length=4)
    with pytest.raises(ValueError, match="empty"):
        model.decode(np.zeros((0, 3), "int32"))
    with pytest.raises(ValueError, match="max_source_length=4"):
        model.decode(np.array([[3, 4, 5, 6, 3]]))
    with pytest.raises(ValueError, match="beam_size"):
        model.decode(SOURCES[:, :4], beam_size=0)
    with pytest.raises(ValueError, match="n_best"):
        model.decode(SOURCES[:, :4], beam_size=2, n_best=3)
    with pytest.raises(ValueError, match="token id 7 at sentence 1, position 2"):
        model.decode(np.array([[3, 4, 0], [5, 6, 7]]))
    with pytest.raises(ValueError, match="token id -1"):
        decoding.beam_search(model, np.array([[3, -1]]))
    with pytest.raises(ValueError, match="shape"):
        model.decode(np.array([3, 4, 5]))
    with pytest.raises(ValueError, match="min_length"):
        model.decode(SOURCES[:, :4], min_length=9, max_length=5)


# ------------------------------------- a decoder without attention (issue 16)


class PlainLSTMDecoder:
    """The decoding protocol over a plain LSTM decoder: the state is the
    cell's `[h, c]` list, with no `alignments` field."""

    pad_id, bos_id, eos_id = PAD, BOS, EOS
    decoding = keras_rnn.DecodingSettings()
    decoding_settings = keras_rnn.Seq2Seq.decoding_settings

    def __init__(self, vocab=5, units=6, seed=0):
        keras.utils.set_random_seed(seed)
        self.target_vocab_size = vocab
        self.embed = keras.layers.Embedding(vocab, 4)
        self.encoder = keras.layers.LSTM(units, return_sequences=True,
                                         return_state=True)
        self.cell = keras.layers.LSTMCell(units)
        self.project = keras.layers.Dense(vocab)
        self.encode(np.array([[3, 4]]))
        self.decode_step(*self._first(np.array([[3, 4]])))
        rng = np.random.default_rng(seed)
        for layer in (self.embed, self.encoder, self.cell, self.project):
            for variable in layer.weights:
                variable.assign(rng.normal(scale=0.8, size=variable.shape))

    def _first(self, source):
        memory, state = self.encode(source)
        return ops.full((source.shape[0],), BOS, "int32"), state, memory

    def check_source(self, source):
        pass

    def encode(self, source, training=False):
        source = ops.convert_to_tensor(source, "int32")
        mask = ops.not_equal(source, PAD)
        values, h, c = self.encoder(self.embed(source), mask=mask)
        return AttentionMemory(values, None, mask), [h, c]

    def decode_step(self, tokens, state, memory):
        h, state = self.cell(self.embed(tokens), state)
        return self.project(h), list(state)


def test_a_decoder_without_attention_beam_searches_exactly():
    model = PlainLSTMDecoder()
    source = np.array([[3, 4, 3]])
    words = [3, 4]
    scored = []
    for length in range(1, 5):
        for body in itertools.product(words, repeat=length - 1):
            hypothesis = list(body) + [EOS]
            tokens, state, memory = model._first(source)
            log_prob = 0.0
            for token in hypothesis:  # (the search forbids, not renormalizes)
                logits, state = model.decode_step(tokens, state, memory)
                log_p = _np(ops.log_softmax(logits, axis=-1))[0].astype("float64")
                log_prob += log_p[token]
                tokens = ops.convert_to_tensor([token], "int32")
            scored.append((log_prob, hypothesis))
    scored.sort(key=lambda pair: -pair[0])
    result = decoding.beam_search(model, source, beam_size=16, n_best=15,
                                  max_length=4)
    np.testing.assert_allclose(_np(result.scores)[0], [s for s, _ in scored],
                               rtol=1e-4, atol=1e-5)
    for k in range(3):
        length = int(_np(result.lengths)[0, k])
        assert list(_np(result.ids)[0, k][:length]) == scored[k][1]
    assert not _np(result.alignments).any()  # no attention: zeros
    greedy = decoding.greedy_decode(model, source, max_length=4)
    beam_one = decoding.beam_search(model, source, beam_size=1, max_length=4)
    np.testing.assert_array_equal(_np(greedy.ids), _np(beam_one.ids))
