"""Plots for the Multi30k training runs: learning curves and attention maps.

Everything here writes PNG files with matplotlib's non-interactive "Agg"
backend, so it works on headless machines, and closes every figure it opens.
"""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read_history(path):
    """Reads a JSON-lines training history, collapsing resumed duplicates.

    Each non-blank line holds one JSON object with at least the keys "kind"
    ("train" or "epoch") and "step". A run resumed from a checkpoint repeats
    the steps logged after that checkpoint; for records with the same
    (kind, step) the later line wins. The result is sorted by step (train
    records before the epoch record of the same step).

    Args:
        path: The `history.jsonl` file (str or Path).

    Returns:
        A list of record dicts, sorted by step.

    Raises:
        ValueError: If a line is not a JSON object with "kind" and "step"; the
            message names the file and the 1-based line number.
    """
    path = Path(path)
    records = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: line {number}: malformed JSON ({error.msg})") from None
            if not isinstance(record, dict) or "kind" not in record or "step" not in record:
                raise ValueError(
                    f"{path}: line {number}: expected a JSON object with 'kind' and 'step'"
                )
            key = (record["kind"], record["step"])
            records.pop(key, None)  # re-insert so the order reflects the last write
            records[key] = record
    kind_order = {"train": 0, "epoch": 1}
    return sorted(
        records.values(),
        key=lambda r: (r["step"], kind_order.get(r["kind"], 2)),
    )


def _finite(value):
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def plot_history(history, path, title=None):
    """Draws the learning curves of a run into one PNG with two panels.

    The left panel shows loss against global step: the logged train losses as
    a thin line, and the epoch-end train and validation losses as markers.
    The right panel shows validation BLEU against step for the epoch records
    that carry "val_bleu"; without any it says "no BLEU recorded".

    Args:
        history: Records as returned by `read_history`.
        path: Where to write the PNG; missing parent directories are created.
        title: Optional title for the whole figure.

    Returns:
        The written path, as a Path.

    Raises:
        ValueError: If `history` has no records.
    """
    history = list(history)
    if not history:
        raise ValueError("plot_history: the history has no records")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    train = [r for r in history if r.get("kind") == "train" and _finite(r.get("loss"))]
    epochs = [r for r in history if r.get("kind") == "epoch"]

    fig, (loss_ax, bleu_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    try:
        if train:
            loss_ax.plot(
                [r["step"] for r in train],
                [r["loss"] for r in train],
                linewidth=0.8,
                alpha=0.6,
                color="tab:blue",
                label="train loss",
            )
        epoch_loss = [r for r in epochs if _finite(r.get("loss"))]
        if epoch_loss:
            loss_ax.plot(
                [r["step"] for r in epoch_loss],
                [r["loss"] for r in epoch_loss],
                "o--",
                color="tab:blue",
                label="train loss (epoch)",
            )
        val_loss = [r for r in epochs if _finite(r.get("val_loss"))]
        if val_loss:
            loss_ax.plot(
                [r["step"] for r in val_loss],
                [r["val_loss"] for r in val_loss],
                "s-",
                color="tab:orange",
                label="validation loss",
            )
        loss_ax.set_xlabel("global step")
        loss_ax.set_ylabel("loss")
        loss_ax.set_title("loss")
        loss_ax.grid(True, alpha=0.3)
        if loss_ax.get_legend_handles_labels()[0]:
            loss_ax.legend()

        bleu = [r for r in epochs if _finite(r.get("val_bleu"))]
        if bleu:
            bleu_ax.plot(
                [r["step"] for r in bleu],
                [r["val_bleu"] for r in bleu],
                "o-",
                color="tab:green",
                label="validation BLEU",
            )
            bleu_ax.legend()
        else:
            bleu_ax.text(
                0.5,
                0.5,
                "no BLEU recorded",
                ha="center",
                va="center",
                transform=bleu_ax.transAxes,
                color="gray",
            )
        bleu_ax.set_xlabel("global step")
        bleu_ax.set_ylabel("BLEU")
        bleu_ax.set_title("validation BLEU")
        bleu_ax.grid(True, alpha=0.3)

        if title:
            fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def plot_attention(source_tokens, target_tokens, weights, path, title=None):
    """Draws an attention alignment matrix as a heat map PNG.

    Rows are target tokens, columns source tokens. Tokens are used as tick
    labels as they are (SentencePiece's leading "▁" included); the source
    labels are rotated 90 degrees. The colour scale is fixed to [0, 1].

    Args:
        source_tokens: The source tokens (columns).
        target_tokens: The target tokens (rows).
        weights: Array-like of shape at least
            (len(target_tokens), len(source_tokens)); extra rows and columns
            (padding) are cropped away.
        path: Where to write the PNG; missing parent directories are created.
        title: Optional title for the plot.

    Returns:
        The written path, as a Path.

    Raises:
        ValueError: If `weights` is not 2-D or is smaller than the tokens need.
    """
    source_tokens = [str(t) for t in source_tokens]
    target_tokens = [str(t) for t in target_tokens]
    weights = np.asarray(weights, dtype="float64")
    needed = (len(target_tokens), len(source_tokens))
    if (
        weights.ndim != 2
        or weights.shape[0] < needed[0]
        or weights.shape[1] < needed[1]
    ):
        raise ValueError(
            f"plot_attention: weights of shape {weights.shape} do not cover "
            f"(len(target_tokens), len(source_tokens)) = {needed}"
        )
    weights = weights[: needed[0], : needed[1]]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    width = 2.5 + 0.4 * max(needed[1], 1)
    height = 2.0 + 0.4 * max(needed[0], 1)
    fig, ax = plt.subplots(figsize=(width, height))
    try:
        image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(needed[1]))
        ax.set_xticklabels(source_tokens, rotation=90)
        ax.set_yticks(range(needed[0]))
        ax.set_yticklabels(target_tokens)
        ax.set_xlabel("source")
        ax.set_ylabel("target")
        fig.colorbar(image, ax=ax)
        if title:
            ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
