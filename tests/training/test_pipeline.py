"""Batching, curriculum and config of the training package (the tokenizer:
`tests/training/test_tokenizer.py`)."""

from pathlib import Path

import numpy as np
import pytest

from keras_rnn.training.config import Config
from keras_rnn.training.pipeline import (BatchPlan, ParallelData, Sequences, competence,
                                          numpy_batches, tf_dataset)
from keras_rnn.training.tokenizer import EOS_ID

# ----------------------------------------------------------------- batching


def test_batch_shifts_target_and_fills_empty_rows():
    data = ParallelData([[5, 6, EOS_ID], [7, EOS_ID]], [[8, EOS_ID], [9, 10, 11, EOS_ID]])
    inputs, labels = data.batch(np.array([1, 0, -1]), length=4)
    np.testing.assert_array_equal(inputs["source"], [[7, 2, 0, 0], [5, 6, 2, 0], [2, 0, 0, 0]])
    np.testing.assert_array_equal(labels, [[9, 10, 11, 2], [8, 2, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(inputs["target"], [[1, 9, 10, 11], [1, 8, 0, 0], [1, 0, 0, 0]])


def test_flat_sequences_index_slice_and_subset_like_lists():
    rows = [[5, 6, EOS_ID], [7, EOS_ID], [8, 9, 10, EOS_ID]]
    seqs = Sequences.from_rows(rows)
    np.testing.assert_array_equal(seqs.offsets, [0, 3, 5, 9])
    assert len(seqs) == 3 and [r.tolist() for r in seqs] == rows
    assert seqs[-1].dtype == np.int32 and [r.tolist() for r in seqs[:2]] == rows[:2]
    np.testing.assert_array_equal(seqs.lengths(), [3, 2, 4])
    sub = seqs.subset([2, 0]).subset([1])
    assert len(sub) == 1 and sub[0].tolist() == rows[0] and sub.lengths().tolist() == [3]
    with pytest.raises(IndexError):
        seqs[3]
    # uint16 storage (the token cache) reads back as the same int32 rows.
    narrow = Sequences(seqs.ids.astype(np.uint16), seqs.offsets)
    data = ParallelData(narrow, seqs)
    wide = ParallelData(rows, rows)
    for a, b in zip(data.batch(np.array([2, -1, 0])), wide.batch(np.array([2, -1, 0]))):
        for x, y in zip(a.values() if isinstance(a, dict) else [a],
                        b.values() if isinstance(b, dict) else [b]):
            assert x.dtype == np.int32
            np.testing.assert_array_equal(x, y)


def random_lengths(n=3000, seed=0):
    return np.random.default_rng(seed).integers(1, 60, n)


@pytest.mark.parametrize("batch_multiple", [1, 2])
def test_bucketing_covers_every_pair_once_per_pass(batch_multiple):
    lengths = random_lengths()
    plan = BatchPlan(lengths, max_tokens=512, bucket_width=4, seed=3,
                     batch_multiple=batch_multiple)
    for pass_index in range(3):
        batches = plan.pass_batches(pass_index)
        seen = np.concatenate([chunk[chunk >= 0] for _, chunk in batches])
        assert len(seen) == len(lengths)
        np.testing.assert_array_equal(np.sort(seen), np.arange(len(lengths)))
        for length, chunk in batches:
            real = chunk[chunk >= 0]
            assert length % 4 == 0 and lengths[real].max() <= length
            assert length - lengths[real].max() < 4  # padded to the bucket only
            assert len(chunk) * length <= 512
            assert len(chunk) == plan.batch_size(length)  # one shape per bucket
            assert len(chunk) % batch_multiple == 0
        assert len(batches) == plan.steps_per_pass()
    # Passes are shuffled differently, reproducibly.
    first = [c.tolist() for _, c in plan.pass_batches(0)]
    assert first != [c.tolist() for _, c in plan.pass_batches(1)]
    again = BatchPlan(lengths, max_tokens=512, bucket_width=4, seed=3,
                      batch_multiple=batch_multiple)
    assert first == [c.tolist() for _, c in again.pass_batches(0)]


def test_stream_resumes_at_any_step():
    plan = BatchPlan(random_lengths(500), max_tokens=256, seed=1)
    full = [(s, c.tolist()) for s, _, c in plan.stream(0, 3 * plan.steps_per_pass())]
    assert [s for s, _ in full] == list(range(len(full)))
    for start in (0, 1, plan.steps_per_pass() - 1, plan.steps_per_pass() + 5):
        resumed = [(s, c.tolist()) for s, _, c in plan.stream(start, len(full))]
        assert resumed == full[start:]


def replayed_stream(plan, start_step, stop_step):
    """The stream as it was first written: replay every pass from pass 0."""
    step, pass_index = 0, 0
    while step < stop_step:
        batches = plan.pass_batches(pass_index)
        if step + len(batches) <= start_step:
            step += len(batches)
            pass_index += 1
            continue
        for length, chunk in batches[max(0, start_step - step):]:
            current = max(step, start_step)
            if current >= stop_step:
                return
            yield current, length, chunk
            step = current + 1
        pass_index += 1


@pytest.mark.parametrize("curriculum_passes, curriculum_start", [(0, 0.2), (3, 0.2), (4, 0.0)])
def test_stream_equals_replay_from_pass_zero(curriculum_passes, curriculum_start):
    """Seeking by arithmetic gives exactly the batches of a replay, at any start."""
    lengths = random_lengths(400, seed=7)
    plan = BatchPlan(lengths, max_tokens=256, seed=5, curriculum_passes=curriculum_passes,
                     curriculum_start=curriculum_start)
    reference = BatchPlan(lengths, max_tokens=256, seed=5, curriculum_passes=curriculum_passes,
                          curriculum_start=curriculum_start)
    stop = (curriculum_passes + 3) * plan.steps_per_pass()
    full = [(s, length, c.tolist()) for s, length, c in replayed_stream(reference, 0, stop)]
    assert [s for s, _, _ in full] == list(range(stop))
    for start in [*range(0, stop, 7), stop - 1]:
        got = [(s, length, c.tolist()) for s, length, c in plan.stream(start, min(start + 40, stop))]
        assert got == full[start:start + 40]
        length, chunk = plan.batch_at(start)
        assert (length, chunk.tolist()) == full[start][1:]
    if curriculum_passes:  # the passes of the curriculum are shorter
        assert plan.pass_start(1) < plan.steps_per_pass()
    for p in range(curriculum_passes + 3):
        assert plan.locate(plan.pass_start(p)) == (p, 0) or plan.pass_length(p) == 0
        assert plan.pass_length(p) == len(reference.pass_batches(p))


@pytest.mark.parametrize("curriculum_passes", [0, 5])
def test_seeking_far_builds_one_pass(monkeypatch, curriculum_passes):
    """Step 1,000,000 or pass 500: a constant number of passes built, not O(step)."""
    plan = BatchPlan(random_lengths(3000), max_tokens=512, seed=2,
                     curriculum_passes=curriculum_passes)
    built = []
    original = np.random.default_rng
    monkeypatch.setattr(np.random, "default_rng",
                        lambda *a, **k: built.append(a) or original(*a, **k))
    step, length, chunk = next(plan.stream(1_000_000))
    assert step == 1_000_000 and len(built) == 1
    pass_index, position = plan.locate(1_000_000)
    assert built == [([2, pass_index],)]
    assert plan.pass_start(pass_index) + position == 1_000_000
    built.clear()
    start = plan.pass_start(500)
    assert start == plan.pass_start(curriculum_passes) + (500 - curriculum_passes) * plan.steps_per_pass()
    steps = list(plan.stream(start - 1, start + 3))
    assert [s for s, _, _ in steps] == list(range(start - 1, start + 3))
    assert built == [([2, 499],), ([2, 500],)]
    # The callback's per-step lookup of the batch trained reuses the cached passes.
    for s in range(start - 1, start + 3):
        plan.batch_at(s)
    assert len(built) == 2


def test_unshuffled_plan_is_one_pass_in_length_order():
    lengths = random_lengths(300)
    plan = BatchPlan(lengths, max_tokens=256, seed=None)
    batches = list(plan.stream())
    assert len(batches) == plan.steps_per_pass()
    assert [length for _, length, _ in batches] == sorted(length for _, length, _ in batches)


def test_tf_dataset_yields_the_numpy_batches_and_knows_their_count():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(5)
    rows = [list(rng.integers(4, 50, n)) + [EOS_ID] for n in rng.integers(1, 20, 200)]
    data = ParallelData(rows, rows[::-1])
    train = BatchPlan(data.lengths(), max_tokens=96, bucket_width=4, seed=2)
    valid = BatchPlan(data.lengths(), max_tokens=96, bucket_width=4, seed=None)
    for plan, start, stop in ((train, 3, train.steps_per_pass() + 7), (valid, 2, None)):
        expected = list(numpy_batches(data, plan, start, stop))
        dataset = tf_dataset(data, plan, start, stop)
        assert int(dataset.cardinality()) == len(expected)
        actual = list(dataset.as_numpy_iterator())
        assert len(actual) == len(expected)
        for (inputs, labels), (want_inputs, want_labels) in zip(actual, expected):
            np.testing.assert_array_equal(inputs["source"], want_inputs["source"])
            np.testing.assert_array_equal(inputs["target"], want_inputs["target"])
            np.testing.assert_array_equal(labels, want_labels)
    assert tf_dataset(data, train).cardinality() == tf.data.INFINITE_CARDINALITY


def test_curriculum_follows_competence_schedule():
    lengths = random_lengths(2000, seed=4)
    passes, start = 4, 0.2
    plan = BatchPlan(lengths, max_tokens=512, seed=0, curriculum_passes=passes,
                     curriculum_start=start)
    expected = [0.2, np.sqrt(0.96 / 4 + 0.04), np.sqrt(2 * 0.96 / 4 + 0.04),
                np.sqrt(3 * 0.96 / 4 + 0.04), 1.0, 1.0]
    order = np.lexsort((np.arange(len(lengths)), lengths))  # easiest first
    for p, c in enumerate(expected):
        assert competence(p, passes, start) == pytest.approx(c)
        seen = np.sort(np.concatenate([k[k >= 0] for _, k in plan.pass_batches(p)]))
        count = int(np.ceil(c * len(lengths) - 1e-9))
        np.testing.assert_array_equal(seen, np.sort(order[:count]))
        # Every pair used is no longer than every pair left out.
        if count < len(lengths):
            assert lengths[seen].max() <= lengths[order[count:]].min()
    sizes = [plan.pass_batches(p) for p in range(5)]
    assert [len(b) for b in sizes] == sorted(len(b) for b in sizes)


def test_batch_plan_errors():
    with pytest.raises(ValueError, match="max_tokens=16 cannot hold"):
        BatchPlan([30], max_tokens=16)
    with pytest.raises(ValueError, match="No sentence pairs"):
        BatchPlan([], max_tokens=16)


# ------------------------------------------------------------------- config


def test_config_round_trip_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntraining:\n  epochs: 3\nmodel:\n  cell: lstm\n")
    config = Config.load(path, overrides=["training.max_tokens=1024", "model.units=64"])
    assert (config.training.epochs, config.training.max_tokens, config.model.units,
            config.model.cell) == (3, 1024, 64, "lstm")
    config.save(tmp_path / "saved.yaml")
    assert Config.load(tmp_path / "saved.yaml") == config
    path.write_text("training:\n  epochz: 3\n")
    with pytest.raises(ValueError, match=r"unknown keys \['epochz'\] in section 'training'"):
        Config.load(path)
    path.write_text("training:\n  precision: float8\n")
    with pytest.raises(ValueError, match="training.precision must be one of"):
        Config.load(path)
    with pytest.raises(FileNotFoundError, match="no such config file"):
        Config.load(tmp_path / "nope.yaml")


def test_shipped_configs_load():
    configs = Path(__file__).resolve().parents[2] / "training" / "configs"
    names = sorted(p.name for p in configs.glob("*.yaml"))
    assert names == ["multi30k_de_en.yaml", "multi30k_en_de.yaml", "quick.yaml"]
    for name in names:
        Config.load(configs / name)
