"""training.plots: history reading (resume duplicates, errors) and PNG output."""

import json

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

from keras_rnn.training import plots

PNG_MAGIC = b"\x89PNG"


def _write_history(path, records, extra_lines=()):
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _train(step, loss, epoch=0):
    return {
        "kind": "train",
        "step": step,
        "epoch": epoch,
        "loss": loss,
        "tokens_per_second": 1000.0,
        "learning_rate": 1e-3,
    }


def _epoch(step, epoch, loss, val_loss, val_bleu=None):
    record = {
        "kind": "epoch",
        "step": step,
        "epoch": epoch,
        "loss": loss,
        "val_loss": val_loss,
        "learning_rate": 1e-3,
    }
    if val_bleu is not None:
        record["val_bleu"] = val_bleu
    return record


def _resumed_history():
    # First run logs up to step 40, checkpointed at step 20 (end of epoch 0),
    # then the resumed run repeats steps 30 and 40 with different values.
    return [
        _train(10, 5.0),
        _train(20, 4.0),
        _epoch(20, 0, 4.2, 4.5, val_bleu=3.0),
        _train(30, 3.9, epoch=1),
        _train(40, 3.8, epoch=1),
        _train(30, 3.5, epoch=1),
        _train(40, 3.0, epoch=1),
        _epoch(40, 1, 3.2, 3.6, val_bleu=9.5),
        _train(50, 2.8, epoch=2),
    ]


def _assert_png(path):
    assert path.exists()
    assert path.read_bytes()[:4] == PNG_MAGIC
    image = mpimg.imread(path)
    assert image.ndim == 3
    return image.shape


# ---------------------------------------------------------------- read_history


def test_read_history_keeps_last_duplicate_and_sorts(tmp_path):
    path = _write_history(tmp_path / "history.jsonl", _resumed_history(), extra_lines=["", "  "])
    history = plots.read_history(path)

    assert [(r["kind"], r["step"]) for r in history] == [
        ("train", 10),
        ("train", 20),
        ("epoch", 20),
        ("train", 30),
        ("train", 40),
        ("epoch", 40),
        ("train", 50),
    ]
    by_key = {(r["kind"], r["step"]): r for r in history}
    assert by_key[("train", 30)]["loss"] == 3.5
    assert by_key[("train", 40)]["loss"] == 3.0
    assert by_key[("epoch", 40)]["val_bleu"] == 9.5


def test_read_history_skips_blank_lines(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text("\n" + json.dumps(_train(1, 2.0)) + "\n\n\n", encoding="utf-8")
    assert [r["step"] for r in plots.read_history(path)] == [1]


def test_read_history_malformed_line_names_file_and_line(tmp_path):
    path = _write_history(
        tmp_path / "history.jsonl", [_train(10, 5.0), _train(20, 4.0)], extra_lines=["{oops"]
    )
    with pytest.raises(ValueError, match=r"line 3") as info:
        plots.read_history(path)
    assert "history.jsonl" in str(info.value)


# ---------------------------------------------------------------- plot_history


def test_plot_history_writes_a_wide_png(tmp_path):
    history = plots.read_history(_write_history(tmp_path / "h.jsonl", _resumed_history()))
    target = tmp_path / "nested" / "dir" / "history.png"
    before = plt.get_fignums()

    out = plots.plot_history(history, target, title="run 1")

    assert out == target
    height, width, _ = _assert_png(target)
    assert width > height
    assert height > 100
    assert plt.get_fignums() == before  # figure closed


def test_plot_history_without_bleu(tmp_path):
    history = [_train(1, 5.0), _train(2, 4.0), _epoch(2, 0, 4.1, 4.4)]
    out = plots.plot_history(history, tmp_path / "no_bleu.png")
    height, width, _ = _assert_png(out)
    assert width > height


def test_plot_history_only_train_records(tmp_path):
    out = plots.plot_history([_train(1, 5.0), _train(2, 4.0)], str(tmp_path / "t.png"))
    _assert_png(out)


def test_plot_history_empty_raises(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        plots.plot_history([], tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


# ---------------------------------------------------------------- plot_attention


def _weights(rows, cols, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.random((rows, cols))
    return w / w.sum(axis=1, keepdims=True)


def test_plot_attention_size_grows_with_tokens(tmp_path):
    small_src = ["▁a", "▁b", "▁c", "."]
    small_tgt = ["▁x", "▁y", "."]
    big_src = [f"▁s{i}" for i in range(15)]
    big_tgt = [f"▁t{i}" for i in range(12)]
    before = plt.get_fignums()

    small = plots.plot_attention(small_src, small_tgt, _weights(3, 4), tmp_path / "small.png")
    big = plots.plot_attention(
        big_src, big_tgt, _weights(12, 15), tmp_path / "a" / "big.png", title="alignment"
    )

    small_h, small_w, _ = _assert_png(small)
    big_h, big_w, _ = _assert_png(big)
    assert big_w > small_w
    assert big_h > small_h
    assert plt.get_fignums() == before


def test_plot_attention_crops_padding(tmp_path):
    src = ["▁ein", "▁Hund", "."]
    tgt = ["▁a", "▁dog"]
    padded = np.zeros((6, 9))
    padded[:2, :3] = _weights(2, 3)
    out = plots.plot_attention(src, tgt, padded, tmp_path / "cropped.png")
    reference = plots.plot_attention(src, tgt, padded[:2, :3], tmp_path / "reference.png")
    np.testing.assert_array_equal(mpimg.imread(out), mpimg.imread(reference))


def test_plot_attention_rejects_too_small_weights(tmp_path):
    with pytest.raises(ValueError) as info:
        plots.plot_attention(["a", "b", "c"], ["x", "y"], np.zeros((2, 2)), tmp_path / "bad.png")
    message = str(info.value)
    assert "(2, 2)" in message and "(2, 3)" in message
    assert not (tmp_path / "bad.png").exists()
