"""Training throughput of a config on Multi30k: target tokens per second.

    KERAS_BACKEND=tensorflow python benchmarks/bench_training.py \
        training/configs/multi30k_de_en.yaml --steps 100 [--set training.jit_compile=false]

Builds the config's model and batches exactly as `keras-rnn train` does,
compiles every batch shape first (one step per bucket, not timed), then
times `fit` over `--steps` batches of the real shuffled stream. Reports real
target tokens/s (EOS included, padding excluded), padded tokens/s, the
padding share, and the implied time of one epoch.
"""

import argparse
import tempfile
import time

import numpy as np

from keras_rnn.training.config import Config
from keras_rnn.training.pipeline import tf_dataset
from keras_rnn.training.train import TrainingRun


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Config.load(args.config, overrides=[*args.set, f"output_dir={tmp}"])
        run = TrainingRun(config)
        run.setup()
        model, data, plan = run.model, run.corpus.train, run.plan
        start = time.perf_counter()
        for length in np.unique(plan.padded):  # compile every shape once
            rows = np.flatnonzero(plan.padded == length)[: plan.batch_size(length)]
            rows = np.concatenate([rows, np.full(plan.batch_size(length) - len(rows), -1)])
            model.train_on_batch(*data.batch(rows, int(length)))
        compile_seconds = time.perf_counter() - start
        batches = list(plan.stream(0, args.steps))
        real = sum(int(data.target_lengths[c[c >= 0]].sum()) for _, _, c in batches)
        padded = sum(len(c) * length for _, length, c in batches)
        start = time.perf_counter()
        model.fit(tf_dataset(data, plan, 0, args.steps), steps_per_epoch=args.steps,
                  shuffle=False, verbose=0)
        seconds = time.perf_counter() - start
    import keras

    epoch_tokens = int(data.target_lengths.sum())
    print(f"backend {keras.backend.backend()}, jit_compile {config.training.jit_compile}, "
          f"precision {config.training.precision}, {model.count_params():,} parameters")
    print(f"{args.steps} steps in {seconds:.1f} s (shapes compiled first in {compile_seconds:.0f} s)")
    print(f"target tokens/s: {real / seconds:.0f} real, {padded / seconds:.0f} padded "
          f"(padding {100 * (1 - real / padded):.1f}% of target positions)")
    print(f"one epoch ({epoch_tokens} target tokens): {epoch_tokens / (real / seconds) / 60:.1f} min")


if __name__ == "__main__":
    main()
