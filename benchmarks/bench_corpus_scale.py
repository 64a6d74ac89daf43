"""Corpus scale and processes (issue 24): the token cache on a large synthetic
corpus, and one vs two JAX processes on one machine.

Part 1, `scale`: a synthetic corpus of `--pairs` pairs (Multi30k's training
lines repeated, each repetition shuffled with its own seed, so the same
`--pairs` always gives the same bytes), written as train.de/train.en in
`--work`/data with Multi30k's val split copied beside it. 8k-piece
SentencePiece tokenizers are trained once on Multi30k's train split (timed,
reported apart) and copied into each run directory, so no run trains a
tokenizer. A tiny model (embedding 16, units 32, a few steps, validation_bleu
false) is trained twice under `/usr/bin/time -v`:

    cold  the token cache is empty: the run tokenizes the corpus into it
    warm  a second run (new run directory, same data and tokenizers): it
          memory-maps the cache

For each: time from process start to the first step's log line (stdout is
read line by line and time-stamped here), the cache build time the run logs
("Tokenized train: ... in X s"), peak RSS, and the cache's size on disk.

Part 2, `processes`: the quick config's model sizes (embedding 128, units
256, GRU, Bahdanau) on Multi30k's train split, max_tokens 1536, JAX, 40
steps: 1 process with 1 device vs 2 processes with 1 device each (localhost
coordinator, training.distribution data_parallel, the same global batch).
tokens/s is the mean of history.jsonl's train windows after the first
(which holds the compilation).

Commands (every one under nice, since the machine is shared):

    KERAS_BACKEND=jax nice -n 19 .venv/bin/python benchmarks/bench_corpus_scale.py scale \\
        --pairs 5000000 --work /tmp/scale5m
    KERAS_BACKEND=jax nice -n 19 .venv/bin/python benchmarks/bench_corpus_scale.py scale \\
        --pairs 1000000 --work /tmp/scale1m
    KERAS_BACKEND=jax nice -n 19 .venv/bin/python benchmarks/bench_corpus_scale.py processes \\
        --work /tmp/scale5m --steps 40

(`processes` reuses the tokenizers in `--work`, training them if missing;
it reads Multi30k's own train split, not the synthetic corpus.) The
corpus needs ~130 bytes a pair on disk (650 MiB for 5M), the cache ~75.

Each prints one JSON object per measurement and writes them all to
`--work`/results-<part>.json.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"
sys.path.insert(0, str(ROOT))

FIRST_STEP = re.compile(r"^step=1 ")
TOKENIZED = re.compile(r"^Tokenized (\w+): ([\d,]+) pairs in ([\d.]+) s")


def make_corpus(work, pairs):
    """train.de/train.en of `pairs` pairs, and Multi30k's val split, in work/data."""
    data = work / "data"
    done = data / f".complete-{pairs}"
    if done.exists():
        return data
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    de = (MULTI30K / "train.de").read_text(encoding="utf-8").splitlines()
    en = (MULTI30K / "train.en").read_text(encoding="utf-8").splitlines()
    assert len(de) == len(en)
    with open(data / "train.de", "w", encoding="utf-8") as fde, \
            open(data / "train.en", "w", encoding="utf-8") as fen:
        written, repetition = 0, 0
        while written < pairs:
            order = np.random.default_rng(repetition).permutation(len(de))[:pairs - written]
            fde.write("".join(de[i] + "\n" for i in order))
            fen.write("".join(en[i] + "\n" for i in order))
            written += len(order)
            repetition += 1
    for lang in ("de", "en"):
        shutil.copy(MULTI30K / f"val.{lang}", data / f"val.{lang}")
    done.touch()
    return data


def tokenizers(work, size=8000):
    """8k-piece tokenizers trained on Multi30k's train split; seconds taken."""
    from keras_rnn.training.tokenizer import train_tokenizer
    directory = work / f"tokenizers-{size}"
    seconds = 0.0
    for lang in ("de", "en"):
        path = directory / f"tokenizer.{lang}.model"
        if not path.exists():
            directory.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            train_tokenizer([MULTI30K / f"train.{lang}"], path, vocab_size=size)
            seconds += time.perf_counter() - start
    return directory, seconds


def write_config(work, name, tokenizer_dir, data_dir, train_split, sections):
    run_dir = work / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    for model in tokenizer_dir.glob("tokenizer.*.model"):
        shutil.copy(model, run_dir / model.name)
    config = {
        "name": name, "output_dir": str(run_dir),
        "data": {"dir": str(data_dir), "train_split": train_split, "valid_split": "val",
                 "max_length": 40, "cache_dir": str(work / "cache")},
        "tokenizer": {"source_vocab_size": 8000, "target_vocab_size": 8000},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, run_dir


def start(config, env=None, timed=False):
    command = [sys.executable, "-m", "keras_rnn.cli", "train", str(config)]
    if timed:
        command = ["/usr/bin/time", "-v", *command]
    environment = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
                   "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(command, cwd=ROOT, env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def timed_run(config, label):
    """One run under /usr/bin/time -v: first-step time, cache build, peak RSS."""
    begin = time.perf_counter()
    process = start(config, timed=True)
    first_step, built, lines = None, None, []
    for line in process.stdout:
        lines.append(line)
        if first_step is None and FIRST_STEP.match(line):
            first_step = time.perf_counter() - begin
        match = TOKENIZED.match(line)
        if match and match.group(1) == "train":
            built = float(match.group(3))
    stderr = process.stderr.read()
    process.wait()
    total = time.perf_counter() - begin
    if process.returncode != 0:
        sys.exit(f"{label} failed:\n{''.join(lines)}\n{stderr[-4000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return {"run": label, "first_step_s": round(first_step, 1),
            "cache_build_s": built, "total_s": round(total, 1),
            "peak_rss_mib": round(int(rss.group(1)) / 1024) if rss else None}


def du(path):
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def scale(args):
    work = args.work
    results = []
    begin = time.perf_counter()
    data = make_corpus(work, args.pairs)
    results.append({"corpus_pairs": args.pairs, "corpus_write_s": round(time.perf_counter() - begin, 1),
                    "corpus_mib": round(du(data) / 2**20)})
    tokenizer_dir, seconds = tokenizers(work)
    results.append({"tokenizers_8k_on_multi30k_train_s": round(seconds, 1)})
    shutil.rmtree(work / "cache", ignore_errors=True)  # cold: no cache
    sections = {
        "model": {"embedding_dim": 16, "units": 32, "encoder_units": 16},
        "training": {"epochs": 1, "steps_per_epoch": 5, "log_every": 1, "checkpoint_every": 5,
                     "max_tokens": 1536, "validation_bleu": False, "jit_compile": True},
    }
    for label in ("cold", "warm"):
        config, _ = write_config(work, f"scale-{label}", tokenizer_dir, data, "train", sections)
        result = timed_run(config, label)
        result["cache_mib"] = round(du(work / "cache") / 2**20)
        results.append(result)
        print(json.dumps(result), flush=True)
    return results


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def windows(run_dir):
    records = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return [r["tokens_per_second"] for r in records if r["kind"] == "train"]


def processes(args):
    work = args.work
    tokenizer_dir, _ = tokenizers(work)
    sections = {
        "model": {"embedding_dim": 128, "units": 256, "encoder_units": 128,
                  "cell": "gru", "attention": "bahdanau"},
        "training": {"epochs": 1, "steps_per_epoch": args.steps, "log_every": 10,
                     "checkpoint_every": args.steps, "max_tokens": 1536,
                     "validation_bleu": False, "jit_compile": True},
    }
    results = []
    for count in (1, 2):
        name = f"processes-{count}"
        extra = {"training": {**sections["training"],
                              "distribution": "data_parallel" if count > 1 else "none"}}
        config, run_dir = write_config(work, name, tokenizer_dir, MULTI30K, "train",
                                       {**sections, **extra})
        begin = time.perf_counter()
        port = free_port()
        started = []
        for index in range(count):
            env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
            if count > 1:
                env.update(KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
                           KERAS_DISTRIBUTION_NUM_PROCESSES=str(count),
                           KERAS_DISTRIBUTION_PROCESS_ID=str(index))
            started.append(start(config, env=env))
        for process in started:
            stdout, stderr = process.communicate(timeout=1200)
            if process.returncode != 0:
                sys.exit(f"{name} failed:\n{stdout}\n{stderr[-4000:]}")
        rates = windows(run_dir)
        result = {"processes": count, "steps": args.steps, "wall_s": round(time.perf_counter() - begin, 1),
                  "tokens_per_second_windows": [round(r) for r in rates],
                  "tokens_per_second_after_first": round(float(np.mean(rates[1:]))) if len(rates) > 1 else None}
        results.append(result)
        print(json.dumps(result), flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=("scale", "processes"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/scale5m"))
    parser.add_argument("--pairs", type=int, default=5_000_000)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    before = os.getloadavg()
    results = scale(args) if args.part == "scale" else processes(args)
    results.insert(0, {"load_average_start": before, "load_average_end": os.getloadavg(),
                       "cpus": os.cpu_count()})
    (args.work / f"results-{args.part}.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
