"""What a training run reports: console lines, `history.jsonl`, TensorBoard,
and tokens/s over each logging window.

Every record is one JSON line in `history.jsonl` (`kind` "train": a window of
`log_every` steps; `kind` "epoch": a validated epoch) and, where TensorFlow and
TensorBoard are installed (the `tensorboard` extra), the same scalars in
TensorBoard event files under `logs/`.
"""

import importlib.util
import json
import os
import time

import numpy as np


def log(message):
    """One line on stdout, flushed (the run's console log)."""
    print(message, flush=True)


def format_record(record):
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in record.items() if k != "kind")


class History:
    """Appends records to `history.jsonl` and, with TensorFlow and TensorBoard,
    to TensorBoard event files.

    Args:
        directory: the run directory.
    """

    def __init__(self, directory):
        self.directory = directory
        self._writer = None

    @staticmethod
    def tensorboard_available():
        """Whether `tf.summary` can write: it needs TensorFlow and TensorBoard
        (TensorFlow 2.21 no longer depends on TensorBoard)."""
        return all(importlib.util.find_spec(name) is not None
                   for name in ("tensorflow", "tensorboard"))

    def truncate(self, step, epoch):
        """Drops the records after `step` (train) and `epoch` (epoch), on resume."""
        path = self.directory / "history.jsonl"
        if not path.exists():
            return
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            if (record["step"] <= step if record.get("kind") == "train"
                    else record.get("epoch", 0) <= epoch):
                kept.append(line)
        if kept != lines:
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
            os.replace(temporary, path)

    def record(self, record):
        with open(self.directory / "history.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if not self.tensorboard_available():
            return
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.directory / "logs"))
        with self._writer.as_default(step=record["step"]):
            for key, value in record.items():
                if key not in ("kind", "step", "epoch") and np.isfinite(value):
                    tf.summary.scalar(key if record["kind"] == "epoch" else f"train/{key}", value)


class Throughput:
    """Real target tokens per second since the start of the current window."""

    def __init__(self):
        self.reset()

    def reset(self):
        self._clock, self._tokens = None, 0

    def start(self):
        if self._clock is None:
            self._clock, self._tokens = time.perf_counter(), 0

    def add(self, tokens):
        """Counts a step's tokens; returns the window's tokens/s so far."""
        self._tokens += tokens
        elapsed = time.perf_counter() - self._clock
        return self._tokens / elapsed if elapsed > 0 else 0.0

    def restart(self):
        self._clock, self._tokens = time.perf_counter(), 0

