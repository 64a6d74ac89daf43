"""Decoding does not depend on what ran before: a property test.

A random sequence of `Seq2Seq.decode` calls (random batch sizes, source
lengths, padding and settings, some repeated with new shapes so the cached
compiled search is called again with another shape) must give, for every
sentence, what decoding that sentence alone gives: same ids, lengths and
(to float32 rounding) scores. The reference is the search run on one
unpadded sentence, uncompiled (`decoding.beam_search` / `greedy_decode`
called directly), so neither the cache, the padding nor the batch can hide
in both sides. The same batches decoded uncompiled must match too.

Before the fix, the second call on TensorFlow with another source length
ran the encoder's time loop for `batch` steps instead of `time` (Keras's
loop read the batch dimension of a time-major input of unknown length),
and every such call returned other, wrong translations.
"""

import numpy as np
import pytest

import keras
from keras import ops

import keras_rnn
from keras_rnn import decoding

PAD, EOS = 0, 2
SOURCE_VOCAB, TARGET_VOCAB = 20, 24
# A small set, so that the same settings (the same compiled function) come
# back with other shapes within one sequence of calls.
SETTINGS = [
    dict(method="beam", beam_size=3, n_best=2, max_length=7, length_penalty_alpha=0.6),
    dict(method="greedy", max_length=7),
    dict(method="beam", beam_size=2, n_best=1, max_length=6),
]


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _model(cell, seed):
    model = keras_rnn.Seq2Seq(SOURCE_VOCAB, TARGET_VOCAB, embedding_dim=8, units=12,
                              cell=cell, seed=seed)
    model.build()
    # Large random weights: decisive logits, so no near-tie can flip.
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if "float" in str(variable.dtype):
            variable.assign(rng.normal(scale=0.8, size=variable.shape).astype(variable.dtype))
    return model


def _pool(rng):
    """Sentences of 2 to 9 tokens with EOS, drawn once per test, so each
    one's single-sentence reference is computed once."""
    return [np.concatenate([rng.integers(3, SOURCE_VOCAB, size=length), [EOS]]).astype("int32")
            for length in (1, 3, 5, 8)]


def _batch(sentences, extra_padding):
    width = max(len(s) for s in sentences) + extra_padding
    batch = np.full((len(sentences), width), PAD, "int32")
    for row, sentence in enumerate(sentences):
        batch[row, :len(sentence)] = sentence
    return batch


def _uncompiled(model, source, settings):
    """The search called directly, outside `decode`'s cache."""
    settings = dict(settings)
    search = decoding.beam_search if settings.pop("method") == "beam" else decoding.greedy_decode
    return decoding.DecodeResult(*[_np(x) for x in search(model, source, **settings)])


def _assert_same(result, row, alone, context):
    """Row `row` of `result` equals the one-sentence result `alone`."""
    steps = max(result.ids.shape[-1], alone.ids.shape[-1])

    def padded(ids):
        return np.pad(ids, [(0, 0), (0, steps - ids.shape[-1])], constant_values=PAD)

    np.testing.assert_array_equal(padded(result.ids[row]), padded(alone.ids[0]), context)
    np.testing.assert_array_equal(result.lengths[row], alone.lengths[0], context)
    np.testing.assert_allclose(result.scores[row], alone.scores[0], atol=2e-4, err_msg=context)


@pytest.mark.parametrize("cell, seed", [("gru", 0), ("lstm", 1)])
def test_a_random_sequence_of_decode_calls_equals_decoding_each_sentence_alone(cell, seed):
    rng = np.random.default_rng(100 + seed)
    model = _model(cell, seed)
    pool = _pool(rng)
    references = {}
    # (settings, batch): settings 0 and 1 come back with other shapes. On
    # JAX every new shape is a compilation (seconds), so fewer calls there;
    # the TensorFlow bug showed at the second call.
    # A (settings, batch) pair that comes back comes with another width,
    # which is what TensorFlow's relaxed retracing keeps dynamic.
    calls = [(0, 1), (0, 1), (1, 2), (1, 2), (0, 3), (2, 1), (1, 3), (0, 1)]
    if keras.backend.backend() == "jax":
        calls = calls[:5]
    widths = {}
    for number, (which, batch_size) in enumerate(calls):
        settings = SETTINGS[which]
        picked = rng.choice(len(pool), size=batch_size, replace=True)
        sentences = [pool[i] for i in picked]
        source = _batch(sentences, extra_padding=int(rng.integers(0, 3)))
        while source.shape[1] in widths.setdefault((which, batch_size), set()):
            source = np.pad(source, [(0, 0), (0, 1)], constant_values=PAD)
        widths[(which, batch_size)].add(source.shape[1])
        chunked = batch_size == 3 and number == 4
        compiled = model.decode(source, batch_size=2 if chunked else None, **settings)
        # Eager TensorFlow runs op by op; on JAX an uncompiled search still
        # compiles its loops, so the batch is checked there through `decode`.
        uncompiled = (_uncompiled(model, source, settings)
                      if keras.backend.backend() != "jax" else None)
        for row, (index, sentence) in enumerate(zip(picked, sentences)):
            key = (which, int(index))
            if key not in references:
                references[key] = _uncompiled(model, sentence[None], settings)
            context = (f"{keras.backend.backend()} call {number} {settings} row {row} of "
                       f"{source.shape}{' in chunks of 2' if chunked else ''}")
            _assert_same(compiled, row, references[key], "compiled, " + context)
            if uncompiled is not None:
                _assert_same(uncompiled, row, references[key], "uncompiled, " + context)


@pytest.mark.skipif(keras.backend.backend() == "torch",
                    reason="keras_rnn decodes eagerly on PyTorch: nothing is compiled")
def test_sentences_of_many_lengths_compile_few_searches():
    # JAX compiles once per input shape, and `decode` rounds shapes up;
    # TensorFlow traces a second time with relaxed dimensions, then reuses it.
    model = _model("gru", 2)
    rng = np.random.default_rng(3)
    for batch_size in (1, 2, 1, 2, 1):
        sentences = [np.concatenate([rng.integers(3, SOURCE_VOCAB, size=n), [EOS]])
                     for n in rng.integers(1, 7, size=batch_size)]
        model.decode(_batch(sentences, 0), method="greedy", max_length=5)
    (decoder,) = model._decoder_cache.values()
    assert decoder.compilations() == 2, decoder.compilations()
