"""Compiled, batched decoding: what `Seq2Seq.decode` runs.

`decode` compiles the whole search once per method and settings
(`tf.function` on TensorFlow, which relaxes to unknown dimensions after a
second shape; `jax.jit` on JAX, once per input shape, which `decode`
rounds up so that few shapes occur), caches it on the model, and decodes
long lists of sentences in length-sorted chunks.
"""

import numpy as np

import keras
from keras import ops

from keras_rnn.decoding.search import DecodeResult
from keras_rnn.decoding.search import beam_search
from keras_rnn.decoding.search import greedy_decode
from keras_rnn.decoding.search import static_steps

METHODS = ("beam", "greedy")
# Settings that greedy decoding does not take.
_BEAM_ONLY = ("beam_size", "n_best", "length_penalty_alpha", "coverage_penalty_beta")


def compile_decoder(model, method, settings):
    """The search for `model` as one compiled function of the source ids.

    Args:
        model: a Keras model with the decoding protocol.
        method: "beam" or "greedy".
        settings: dict of decoding-setting overrides.

    Returns:
        A function `(batch, S) int32 ids -> tuple of DecodeResult fields`
        that reads the model's current weights at every call (on JAX they
        are passed in, so one compilation serves later weight updates).
    """
    fn = beam_search if method == "beam" else greedy_decode
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        function = tf.function(lambda source: tuple(fn(model, source, **settings)),
                               reduce_retracing=True)
        function.compilations = function.experimental_get_tracing_count
        return function
    if backend == "jax":
        import jax

        variables = model.variables

        def pure(values, source):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return tuple(fn(model, source, **settings))

        jitted = jax.jit(pure)

        def decoder(source):
            return jitted([v.value for v in variables], source)

        decoder.compilations = jitted._cache_size  # shapes compiled so far
        return decoder
    return lambda source: tuple(fn(model, source, **settings))


def decode(model, source, method="beam", batch_size=None, **settings):
    """Decodes sentences with a compiled decoder cached on `model`.

    The first call for a given method, settings and input shape traces
    and compiles the whole search; later calls reuse it with the current
    weights.

    With `batch_size`, the sentences are sorted by length and decoded
    `batch_size` at a time, each chunk cut to its own longest sentence
    (rounded up to a multiple of 8, so few shapes get compiled): a batch
    runs until its longest hypothesis ends, so grouping similar lengths
    wastes less. The results come back in the input order, identical to
    decoding each sentence alone.

    Args:
        model: a Keras model with the decoding protocol.
        source: `(batch, S)` int ids (NumPy or tensor), padded at the end.
        method: "beam" or "greedy".
        batch_size: sentences per compiled call, or None for all at once.
        **settings: overrides of the model's decoding settings.

    Returns:
        `DecodeResult` of NumPy arrays (with `batch_size`, `ids` and
        `alignments` padded to the longest chunk).
    """
    if method not in METHODS:
        raise ValueError(f"method must be 'beam' or 'greedy'; got {method!r}.")
    if not isinstance(source, np.ndarray):
        source = np.asarray(ops.convert_to_numpy(source))
    model.check_source(source)
    if not model.built:
        model.build()
    if method == "greedy":
        for name in _BEAM_ONLY:
            settings.pop(name, None)
    key = (method, tuple(sorted(settings.items())))
    cache = model.__dict__.setdefault("_decoder_cache", {})
    if key not in cache:
        cache[key] = compile_decoder(model, method, settings)
    decoder = cache[key]

    def run(batch):
        result = decoder(batch.astype("int32"))
        return [np.asarray(ops.convert_to_numpy(r)) for r in result]

    if batch_size is None or len(source) <= batch_size:
        if keras.backend.backend() != "jax":
            return DecodeResult(*run(source))
        # JAX compiles once per input shape: round the shape up (rows to a
        # power of two, width to a multiple of 8), so that a few compiled
        # searches serve every call. Padding and filler rows change no
        # sentence's result (tests/keras_rnn/test_decoding_calls.py).
        rows = len(source)
        width = -(-source.shape[1] // 8) * 8
        padded = np.full((1 << (rows - 1).bit_length(), width), model.pad_id, source.dtype)
        padded[:rows, :source.shape[1]] = source
        padded[rows:, :source.shape[1]] = source[-1]
        ids, scores, log_probs, lengths, alignments = run(padded)
        # A length ratio sizes the buffer by the (padded) width: cut it to
        # what the unpadded source gives; every sentence ended before.
        limits = model.decoding_settings(**settings)
        steps = min(ids.shape[-1], static_steps(
            source.shape[1], limits.max_length, limits.max_length_ratio,
            limits.max_length_offset))
        return DecodeResult(ids[:rows, :, :steps], scores[:rows], log_probs[:rows],
                            lengths[:rows], alignments[:rows, :, :steps, :source.shape[1]])
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}.")
    real = source != model.pad_id
    extent = np.where(real.any(1), real.shape[1] - np.argmax(real[:, ::-1], 1), 1)
    order = np.argsort(extent, kind="stable")
    parts = []
    for start in range(0, len(source), batch_size):
        rows = order[start:start + batch_size]
        width = min(source.shape[1], -(-int(extent[rows].max()) // 8) * 8)
        chunk = source[rows, :width]
        if len(rows) < batch_size:  # keep one compiled shape per width
            filler = np.repeat(chunk[-1:], batch_size - len(rows), axis=0)
            chunk = np.concatenate([chunk, filler])
        parts.append((rows, [r[: len(rows)] for r in run(chunk)]))
    return _merge(parts, len(source), source.shape[1], model.pad_id)


def _merge(parts, batch, source_time, pad_id):
    """Puts the chunks' results back in input order, padded to the longest."""
    steps = max(part[0].shape[-1] for _, part in parts)
    n_best = parts[0][1][0].shape[1]
    ids = np.full((batch, n_best, steps), pad_id, "int32")
    alignments = np.zeros(ids.shape + (source_time,), "float32")
    scores, log_probs, lengths = (
        np.zeros(ids.shape[:2], dtype) for dtype in ("float32", "float32", "int32")
    )
    for rows, (p_ids, p_scores, p_log_probs, p_lengths, p_align) in parts:
        ids[rows, :, : p_ids.shape[-1]] = p_ids
        alignments[rows, :, : p_align.shape[2], : p_align.shape[3]] = p_align
        scores[rows], log_probs[rows], lengths[rows] = p_scores, p_log_probs, p_lengths
    return DecodeResult(ids, scores, log_probs, lengths, alignments)
