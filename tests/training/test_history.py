"""`training.history`: records go to history.jsonl always, to TensorBoard only
where TensorFlow and TensorBoard both are (TensorFlow 2.21 installs without
TensorBoard, and `tf.summary.scalar` then raises `TBNotInstalledError`)."""

import importlib.util
import json

import pytest

from keras_rnn.training import history as history_lib


@pytest.mark.parametrize("missing", ["tensorflow", "tensorboard"])
def test_records_without_tensorboard_go_to_history_jsonl_only(tmp_path, monkeypatch, missing):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == missing else find_spec(name, *a))
    history = history_lib.History(tmp_path)
    assert not history.tensorboard_available()
    history.record({"kind": "train", "step": 2, "epoch": 1, "loss": 5.25})
    history.record({"kind": "epoch", "step": 4, "epoch": 1, "val_loss": 4.5})
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"kind": "train", "step": 2, "epoch": 1, "loss": 5.25},
        {"kind": "epoch", "step": 4, "epoch": 1, "val_loss": 4.5}]
    assert not (tmp_path / "logs").exists()


def test_truncate_on_resume_keeps_what_came_before(tmp_path):
    history = history_lib.History(tmp_path)
    path = tmp_path / "history.jsonl"
    records = [{"kind": "train", "step": s, "epoch": 0} for s in (2, 4, 6)]
    records.insert(2, {"kind": "epoch", "step": 4, "epoch": 1})
    records.append({"kind": "epoch", "step": 6, "epoch": 2})
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"kind": "tr')
    history.truncate(step=4, epoch=1)
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert kept == records[:3]
