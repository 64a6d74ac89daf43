"""The token cache (`keras_rnn.training.token_cache`): each split tokenized
once, memory-mapped by every later start, rebuilt when the bytes of a corpus
file or a tokenizer change, never half-built."""

import gzip
import os
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from keras_rnn.training import token_cache
from keras_rnn.training import train as train_lib
from keras_rnn.training.config import Config
from keras_rnn.training.data import DataError, corpus_paths, read_parallel
from keras_rnn.training.pipeline import ParallelData
from keras_rnn.training.tokenizer import Tokenizer, train_tokenizer
from tests.support import MULTI30K, write_config

pytestmark = pytest.mark.skipif(not (MULTI30K / "val.de").exists(),
                                reason="no shared Multi30k copy")


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """Tiny de and en tokenizers, trained once on Multi30k's validation split."""
    directory = tmp_path_factory.mktemp("tokenizers")
    return [train_tokenizer([MULTI30K / f"val.{lang}"], directory / f"tokenizer.{lang}.model",
                            vocab_size=300)
            for lang in ("de", "en")]


@pytest.fixture
def root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(token_cache.ENV, str(root))
    return root


@pytest.fixture
def calls(monkeypatch):
    """Counts `Tokenizer.encode` calls and cache builds."""
    counts = {"encode": 0, "build": 0}
    encode, build = Tokenizer.encode, token_cache.build

    def counting_encode(self, *args, **kwargs):
        counts["encode"] += 1
        return encode(self, *args, **kwargs)

    def counting_build(*args, **kwargs):
        counts["build"] += 1
        return build(*args, **kwargs)

    monkeypatch.setattr(Tokenizer, "encode", counting_encode)
    monkeypatch.setattr(token_cache, "build", counting_build)
    return counts


def val_files(directory=MULTI30K):
    source, target = corpus_paths(directory, "val", "de", "en")
    return [source], [target]


def direct(tokenizers, source_files, target_files):
    """The pairs tokenized without the cache (what runs did before it)."""
    sources, targets = [], []
    for s, t in zip(source_files, target_files):
        lines = read_parallel(s, t)
        sources += lines[0]
        targets += lines[1]
    return ParallelData.encode(*tokenizers, sources, targets)


def assert_same_pairs(cached, expected):
    assert len(cached) == len(expected)
    for i in range(len(expected)):
        assert np.array_equal(cached.source[i], expected.source[i])
        assert np.array_equal(cached.target[i], expected.target[i])
    assert np.array_equal(cached.lengths(), expected.lengths())


def cache_dirs(root):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_the_cache_holds_the_ids_of_direct_tokenization_memory_mapped(tokenizers, root):
    data, meta = token_cache.tokenized_split(root, *val_files(), *tokenizers)
    assert_same_pairs(data, direct(tokenizers, *val_files()))
    for side in (data.source, data.target):
        assert isinstance(side.ids, np.memmap) and isinstance(side.offsets, np.memmap)
        assert side.ids.dtype == np.uint16  # a 300-piece vocabulary fits
    assert meta["pairs"] == 1014 and meta["pairs_per_file"] == [1014]
    (key,) = cache_dirs(root)  # no temporary directory left
    assert not key.startswith(".")
    # The same bytes elsewhere (another run's copy) share the cache.
    copy = root.parent / "copy"
    copy.mkdir()
    for path in sum(val_files(), []):
        shutil.copy(path, copy / path.name)
    token_cache.tokenized_split(root, *val_files(copy), *tokenizers)
    assert cache_dirs(root) == [key]


def test_a_second_start_neither_tokenizes_nor_rebuilds(tokenizers, root, calls):
    token_cache.tokenized_split(root, *val_files(), *tokenizers)
    assert calls["build"] == 1 and calls["encode"] > 0
    (key,) = cache_dirs(root)
    stamp = (root / key / "meta.json").stat().st_mtime_ns
    calls.update(encode=0, build=0)
    data, _ = token_cache.tokenized_split(root, *val_files(), *tokenizers)
    assert calls == {"encode": 0, "build": 0}
    assert (root / key / "meta.json").stat().st_mtime_ns == stamp
    assert isinstance(data.source.ids, np.memmap)


def test_changed_corpus_bytes_or_tokenizer_rebuild(tokenizers, root, calls, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for path in sum(val_files(), []):
        shutil.copy2(path, data_dir / path.name)
    files = val_files(data_dir)
    token_cache.tokenized_split(root, *files, *tokenizers)
    # One byte changed, the size and the modification time kept.
    target = files[1][0]
    stat = target.stat()
    text = target.read_bytes()
    target.write_bytes(text.replace(b"A man", b"A men", 1))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_size == stat.st_size
    changed, _ = token_cache.tokenized_split(root, *files, *tokenizers)
    assert calls["build"] == 2 and len(cache_dirs(root)) == 2
    assert_same_pairs(changed, direct(tokenizers, *files))
    # Another target tokenizer: another cache.
    other = train_tokenizer([MULTI30K / "val.en"], tmp_path / "other.model", vocab_size=200)
    rebuilt, _ = token_cache.tokenized_split(root, *files, tokenizers[0], other)
    assert calls["build"] == 3 and len(cache_dirs(root)) == 3
    assert_same_pairs(rebuilt, direct([tokenizers[0], other], *files))


def test_a_build_killed_midway_leaves_no_cache_that_is_used(tokenizers, root, calls,
                                                             monkeypatch):
    monkeypatch.setattr(token_cache, "CHUNK_LINES", 100)
    write = token_cache._write_npy
    state = {"writes": 0}

    def dies_on_the_second_file(*args):
        state["writes"] += 1
        if state["writes"] == 2:
            raise KeyboardInterrupt  # killed while writing the target ids
        return write(*args)

    monkeypatch.setattr(token_cache, "_write_npy", dies_on_the_second_file)
    with pytest.raises(KeyboardInterrupt):
        token_cache.tokenized_split(root, *val_files(), *tokenizers)
    assert cache_dirs(root) == []  # neither a cache nor its temporary directory
    monkeypatch.setattr(token_cache, "_write_npy", write)
    # A build killed with SIGKILL leaves its temporary directory: never used,
    # removed by the next build of the same cache once its process is gone.
    key = token_cache.cache_key(*val_files(), *tokenizers)
    orphan = root / f".tmp-{key}-999999999-x"
    (orphan / "source.ids.raw").parent.mkdir(parents=True)
    (orphan / "source.ids.raw").write_bytes(b"\0\0")
    # A directory with the cache's name but no meta.json is not a cache.
    (root / key).mkdir()
    (root / key / "source.ids.npy").write_bytes(b"partial")
    calls.update(build=0)
    data, _ = token_cache.tokenized_split(root, *val_files(), *tokenizers)
    assert calls["build"] == 1 and cache_dirs(root) == [key]
    assert_same_pairs(data, direct(tokenizers, *val_files()))


def test_gzip_files_and_a_list_of_splits_are_one_corpus(tokenizers, root, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for lang in ("de", "en"):
        lines = (MULTI30K / f"val.{lang}").read_text(encoding="utf-8").splitlines(True)
        (data_dir / f"a.{lang}").write_text("".join(lines[:600]), encoding="utf-8")
        (data_dir / f"b.{lang}.gz").write_bytes(gzip.compress("".join(lines[600:]).encode()))
    config = Config.load(write_config(tmp_path, "run", data={"dir": str(data_dir),
                                                             "train_split": ["a", "b"]}))
    from keras_rnn.training.data import split_files

    sources = split_files(data_dir, config.data.train_split, "de")
    targets = split_files(data_dir, config.data.train_split, "en")
    assert [p.name for p in sources] == ["a.de", "b.de.gz"]
    data, meta = token_cache.tokenized_split(root, sources, targets, *tokenizers)
    assert meta["pairs_per_file"] == [600, 414]
    assert_same_pairs(data, direct(tokenizers, *val_files()))
    assert token_cache.locate_line(sources, targets, meta, 700) == (
        sources[1], targets[1], 101)
    with pytest.raises(DataError, match=r"has 414 lines but .*b.en.gz has 413.*line 414 of .*b.de.gz has no counterpart"):
        (data_dir / "b.en.gz").write_bytes(gzip.compress("".join(
            (MULTI30K / "val.en").read_text(encoding="utf-8").splitlines(True)[600:-1]).encode()))
        token_cache.tokenized_split(root, sources, targets, *tokenizers)


def synthetic_run(tmp_path, tokenizers, pairs):
    """A run directory whose training split is `pairs` Multi30k lines, repeated."""
    data_dir = tmp_path / f"data{pairs}"
    data_dir.mkdir()
    for lang in ("de", "en"):
        lines = (MULTI30K / f"val.{lang}").read_text(encoding="utf-8").splitlines(True)
        with open(data_dir / f"train.{lang}", "w", encoding="utf-8") as f:
            f.writelines(lines * (pairs // len(lines)) + lines[:pairs % len(lines)])
        shutil.copy(MULTI30K / f"val.{lang}", data_dir / f"val.{lang}")
    config = Config.load(write_config(
        tmp_path, f"run{pairs}", data={"dir": str(data_dir), "train_split": "train", "valid_split": "val"}))
    Path(config.output_dir).mkdir()
    for tokenizer, lang in zip(tokenizers, ("de", "en")):
        (Path(config.output_dir) / f"tokenizer.{lang}.model").write_bytes(tokenizer.model_proto)
    return config


def test_a_resumed_runs_corpus_is_mapped_not_tokenized_whatever_its_size(
        tokenizers, root, calls, tmp_path):
    peaks = {}
    for pairs in (30_000, 300_000):
        config = synthetic_run(tmp_path, tokenizers, pairs)
        first = train_lib.load_corpus(config)  # the first start builds the caches
        # (the second run's validation split is the first's: its cache is shared)
        assert calls["build"] == (2 if pairs == 30_000 else 1)
        assert len(first.train) + first.skipped == pairs
        calls.update(encode=0, build=0)
        tracemalloc.start()
        resumed = train_lib.load_corpus(config)  # what a resume (or a second run) does
        peaks[pairs] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert calls == {"encode": 0, "build": 0}
        for side in (resumed.train.source, resumed.train.target, resumed.valid.source):
            assert isinstance(side.ids, np.memmap) and isinstance(side.offsets, np.memmap)
        assert np.array_equal(resumed.train.lengths(), first.train.lengths())
        i = len(resumed.train) - 1
        assert np.array_equal(resumed.train.target[i], first.train.target[i])
    # Only a few numbers per pair stay in memory (lengths, the kept indices):
    # tens of bytes, not the ~0.9 KiB of a pair of NumPy arrays.
    per_pair = (peaks[300_000] - peaks[30_000]) / 270_000
    assert per_pair < 100, peaks


def test_max_sentences_samples_large_splits_only(tmp_path):
    """`tokenizer.max_sentences`: a smaller split trains as before (all of it,
    from the file); a larger one on a seeded sample."""
    path = MULTI30K / "val.de"
    whole = train_tokenizer([path], tmp_path / "a.model", vocab_size=200)
    default = train_tokenizer([path], tmp_path / "b.model", vocab_size=200,
                              max_sentences=Config().tokenizer.max_sentences)
    assert whole.model_proto == default.model_proto
    gz = tmp_path / "val.de.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    samples = [train_tokenizer([p], tmp_path / f"{i}.model", vocab_size=200,
                               max_sentences=500, seed=3).model_proto
               for i, p in enumerate([path, gz])]
    assert samples[0] == samples[1] != whole.model_proto
