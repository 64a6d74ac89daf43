"""How long `keras-rnn` commands take to start on JAX, with and without the
persistent compilation cache (`--no-compile-cache` is the behaviour before
the cache), against TensorFlow, on a tiny translator.

    KERAS_BACKEND=jax python benchmarks/bench_startup.py [--data-dir DIR] [--rounds 2]

For each backend setting it times, as subprocesses (wall clock, the whole
command, imports included):

- `keras-rnn train` of a tiny config (1 epoch of 6 steps), first with an
  empty cache, then again into a new run folder (the cache now warm);
- `keras-rnn translate RUN SENTENCE` (beam 3), first with the cache the
  training left, then again.

Prints one JSON line per command and a summary table.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "multi30k"
SENTENCE = "Ein Mann fährt Fahrrad."


def tiny_config(folder, data_dir, name):
    config = {
        "name": name, "output_dir": str(folder / name),
        "data": {"dir": str(data_dir), "train_split": "val", "valid_split": "test_2016_flickr",
                 "max_length": 24},
        "tokenizer": {"source_vocab_size": 300, "target_vocab_size": 300},
        "model": {"embedding_dim": 16, "units": 32, "encoder_units": 16},
        "training": {"epochs": 1, "steps_per_epoch": 6, "max_tokens": 384, "bucket_width": 8,
                     "warmup_steps": 4, "learning_rate": 0.01, "checkpoint_every": 6,
                     "log_every": 6},
        "evaluation": {"beam_size": 3, "batch_size": 256},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def timed(args, env):
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "keras_rnn.cli", *map(str, args)],
                            env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{args} failed:\n{result.stdout}\n{result.stderr}")
    return seconds


def measure(backend, cache, data_dir, work):
    """[(what, seconds)] for one backend setting, from an empty cache."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               XDG_CACHE_HOME=str(work / "cache"))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    flags = [] if cache else ["--no-compile-cache"]
    rows = []
    for attempt in ("first", "second"):
        name = f"tiny-{attempt}"
        config = tiny_config(work, data_dir, name)
        rows.append((f"train, {attempt}", timed([*flags, "train", config], env)))
    run = work / "tiny-first"
    for attempt in ("first", "second"):
        rows.append((f"translate RUN, {attempt}",
                     timed([*flags, "translate", run, SENTENCE, "--beam-size", "3"], env)))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(DATA))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--settings", nargs="+", default=["jax-cache", "jax-no-cache",
                                                          "tensorflow"])
    args = parser.parse_args(argv)
    table = {}
    for round_ in range(args.rounds):
        for setting in args.settings:
            backend = setting.split("-")[0]
            cache = not setting.endswith("no-cache")
            work = Path(tempfile.mkdtemp(prefix=f"startup-{setting}-"))
            try:
                for what, seconds in measure(backend, cache, Path(args.data_dir), work):
                    print(json.dumps({"round": round_, "setting": setting, "what": what,
                                      "seconds": round(seconds, 1)}), flush=True)
                    table.setdefault(what, {}).setdefault(setting, []).append(seconds)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    print()
    print("| command | " + " | ".join(args.settings) + " |")
    print("|---|" + "---:|" * len(args.settings))
    for what, by_setting in table.items():
        cells = [", ".join(f"{s:.0f} s" for s in by_setting.get(setting, []))
                 for setting in args.settings]
        print(f"| {what} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
