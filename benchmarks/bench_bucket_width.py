"""Training throughput of several `bucket_width`s, interleaved in one process.

    KERAS_BACKEND=tensorflow python benchmarks/bench_bucket_width.py \
        training/configs/multi30k_de_en.yaml --widths 2,4,8 --rounds 5 --block 6

One model trains on the streams of one `BatchPlan` per width (the config's
`max_tokens` and seed), a block of `--block` steps of each width in turn
per round, so every width sees the same stretch of a shared or virtual
machine. Every bucket shape of every width is stepped once before timing
(XLA compiles per shape; TensorFlow without XLA traces the step for the
first few shapes, then one shape-relaxed graph). Reports, per width, real
and padded target tokens/s, the padding share, the steps per epoch and the
number of bucket shapes, and the time per padded token of each bucket
length, which separates what padding costs from what a length costs.
"""

import argparse
import collections
import sys
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--widths", default="2,4,8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=6)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()

    import keras

    from bench_training import one_batch_per_shape, set_up
    from keras_rnn.training.model import jit_compile_for
    from keras_rnn.training.pipeline import BatchPlan

    config, run = set_up(args.config, args.set)
    t = config.training
    model, data = run.model, run.corpus.train
    widths = [int(w) for w in args.widths.split(",")]
    plans = {w: BatchPlan(data.lengths(), t.max_tokens, w, seed=t.seed) for w in widths}
    start = time.perf_counter()
    for plan in plans.values():  # every shape once, untimed
        for batch in one_batch_per_shape(data, plan):
            model.train_on_batch(*batch)
    warm = time.perf_counter() - start
    streams = {w: plan.stream(0) for w, plan in plans.items()}
    totals = {w: collections.Counter() for w in widths}
    per_length = collections.defaultdict(list)  # length -> seconds per padded token
    for r in range(args.rounds):
        line = []
        for w in widths:
            batches = [(length, data.batch(chunk, length)) for _, length, chunk in
                       (next(streams[w]) for _ in range(args.block))]
            for length, (inputs, labels) in batches:
                begin = time.perf_counter()
                model.train_on_batch(inputs, labels)
                seconds = time.perf_counter() - begin
                padded = labels.size
                totals[w].update(seconds=seconds, real=int(np.count_nonzero(labels)),
                                 padded=padded)
                per_length[int(length)].append(seconds / padded)
            line.append(f"w{w} {totals[w]['real'] / totals[w]['seconds']:5.0f}")
        print(f"round {r + 1}: real target tok/s so far: " + ", ".join(line), flush=True)
    print(f"backend {keras.backend.backend()}, XLA {jit_compile_for(t.jit_compile)[0]}, "
          f"max_tokens {t.max_tokens}; every shape stepped first in {warm:.0f} s")
    for w in widths:
        c, plan = totals[w], plans[w]
        print(f"bucket_width {w}: {c['real'] / c['seconds']:.0f} real, "
              f"{c['padded'] / c['seconds']:.0f} padded target tok/s "
              f"(padding {100 * (1 - c['real'] / c['padded']):.1f}%), "
              f"{plan.steps_per_pass()} steps an epoch, {len(np.unique(plan.padded))} shapes")
    print("padded target tok/s by bucket length (all widths): " + ", ".join(
        f"{length}: {1 / np.median(v):.0f}" for length, v in sorted(per_length.items())))


if __name__ == "__main__":
    sys.exit(main())
