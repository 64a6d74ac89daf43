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


def set_up(config_path, overrides):
    """`(config, run)`: a `TrainingRun` of the config, set up in a temporary
    directory (tokenizers, corpus, batch plan, compiled model)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Config.load(config_path, overrides=[*overrides, f"output_dir={tmp}"])
        run = TrainingRun(config)
        run.setup()
    return config, run


def one_batch_per_shape(data, plan):
    """A full batch `(inputs, labels)` of every bucket length of `plan`, to
    compile (XLA) or trace every shape before timing."""
    for length in np.unique(plan.padded):
        size = plan.batch_size(length)
        rows = np.flatnonzero(plan.padded == length)[:size]
        yield data.batch(np.concatenate([rows, np.full(size - len(rows), -1)]), int(length))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    config, run = set_up(args.config, args.set)
    model, data, plan = run.model, run.corpus.train, run.plan
    start = time.perf_counter()
    for batch in one_batch_per_shape(data, plan):  # compile every shape once
        model.train_on_batch(*batch)
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
