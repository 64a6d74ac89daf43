"""Batched, compiled decoding vs one sentence at a time.

    KERAS_BACKEND=tensorflow .venv/bin/python benchmarks/bench_decoding.py
    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench_decoding.py
    .venv/bin/python benchmarks/bench_decoding.py --sentences 200 --single 50  # quick

Decodes `--sentences` source sentences (1,000 by default) with greedy search
and beam search (beam 5) through `Seq2Seq.decode` (one compiled
`while_loop` over all sentences and beams of a batch; length-sorted batches
of `--batch-size`, or all 1,000 at once with `--batch-size 0`), and
`--single` of them one sentence per call with the same compiled decoder
(the strict baseline), and `--eager` of them one at a time through the
uncompiled `keras_rnn.beam_search` / `greedy_decode` (what a user gets
without `decode`); prints sentences per second for each and the speed-up
per sentence.

The model is the bentrevett/pytorch-seq2seq size of issue 5 (8,000-token
vocabularies, embeddings 256, bidirectional GRU 256 encoder, GRU 512
decoder, Bahdanau attention), with random weights: a random model rarely
says EOS, so every hypothesis runs to its length limit
`min(100, ceil(1.5 * |x|) + 5)` - the worst case, the same for both ways.
Source lengths are the word counts of Multi30k's German test2016 sentences
(`../shared/data/multi30k/test_2016_flickr.de`; uniform 5-25 if absent);
the ids are random. Compilation is excluded from both timings: the batched
decoder is warmed on the batch, the single-sentence decoder on one sentence
of each length.
"""

import argparse
import json
import os
import platform
import time

import numpy as np

import keras
import keras_rnn

HERE = os.path.dirname(os.path.abspath(__file__))
MULTI30K = os.path.join(HERE, "..", "..", "shared", "data", "multi30k")


def source_lengths(n, rng):
    path = os.path.join(MULTI30K, "test_2016_flickr.de")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            lengths = [len(line.split()) for line in f if line.strip()]
        return np.resize(np.array(lengths), n)
    return rng.integers(5, 26, n)


def make_sources(lengths, vocab, rng):
    sources = np.zeros((len(lengths), lengths.max()), "int32")
    for i, length in enumerate(lengths):
        sources[i, :length] = rng.integers(3, vocab, length)
    return sources


def timed(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--single", type=int, default=100,
                        help="sentences decoded one at a time (timed, then scaled)")
    parser.add_argument("--eager", type=int, default=10,
                        help="sentences decoded one at a time without compiling")
    parser.add_argument("--batch-size", type=int, default=100,
                        help="sentences per compiled call (0: all at once)")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    model = keras_rnn.Seq2Seq(
        args.vocab, args.vocab, embedding_dim=256, units=512, encoder_units=256,
        cell="gru", attention="bahdanau",
        decoding=dict(max_length=100, max_length_ratio=1.5, max_length_offset=5,
                      beam_size=args.beam_size),
    )
    model.build()
    params = model.count_params()
    lengths = source_lengths(args.sentences, rng)
    sources = make_sources(lengths, args.vocab, rng)
    print(f"keras_rnn {keras_rnn.__version__}, backend {keras.backend.backend()}, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); "
          f"model {params / 1e6:.1f}M parameters; {args.sentences} sentences, "
          f"{lengths.mean():.1f} source tokens on average (max {lengths.max()})")

    results = {}
    batch_size = args.batch_size or None
    for method in ("greedy", "beam"):
        model.decode(sources, method=method, batch_size=batch_size)  # compile
        batched = timed(
            lambda: model.decode(sources, method=method, batch_size=batch_size),
            args.repeats,
        )
        singles = sources[: args.single]
        single_lengths = lengths[: args.single]
        for length in sorted(set(single_lengths)):  # compile every length
            model.decode(singles[single_lengths == length][:1, :length], method=method)

        def one_at_a_time():
            for row, length in zip(singles, single_lengths):
                model.decode(row[None, :length], method=method)

        single = timed(one_at_a_time, args.repeats)
        search = keras_rnn.greedy_decode if method == "greedy" else keras_rnn.beam_search
        start = time.perf_counter()
        for row, length in zip(sources[: args.eager], lengths[: args.eager]):
            search(model, row[None, :length])
        eager = time.perf_counter() - start
        batched_rate = args.sentences / batched
        single_rate = args.single / single
        eager_rate = args.eager / eager
        results[method] = dict(
            batch_size=batch_size, batched_seconds=batched,
            batched_sentences_per_second=batched_rate,
            single_seconds=single, single_sentences=args.single,
            single_sentences_per_second=single_rate,
            eager_seconds=eager, eager_sentences=args.eager,
            eager_sentences_per_second=eager_rate,
            speedup=batched_rate / single_rate,
            speedup_over_eager=batched_rate / eager_rate,
        )
        label = "greedy" if method == "greedy" else f"beam {args.beam_size}"
        print(f"{label:>8}: batched {args.sentences} in {batched:6.2f} s = "
              f"{batched_rate:7.1f} sent/s | compiled one at a time "
              f"{single_rate:6.1f} sent/s ({batched_rate / single_rate:4.1f}x) | "
              f"eager one at a time {eager_rate:5.2f} sent/s "
              f"({batched_rate / eager_rate:5.0f}x)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(backend=keras.backend.backend(), params=params,
                           sentences=args.sentences, results=results), f, indent=2)


if __name__ == "__main__":
    main()
