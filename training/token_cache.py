"""The token cache: each split tokenized once, then memory-mapped.

A split (its source and target files, the two SentencePiece models) is
tokenized once into a directory of four NumPy `.npy` files:

    source.ids.npy      every source sentence's ids, EOS included, end to end
    source.offsets.npy  int64 `(pairs + 1,)`: sentence `i` is
                        `ids[offsets[i]:offsets[i + 1]]`
    target.ids.npy, target.offsets.npy   the same for the target side
    meta.json           pairs per file, dtypes, vocabularies (written last)

Ids are uint16 when the vocabulary fits (< 65,536 pieces), else int32.
Runs open the arrays with `np.load(mmap_mode="r")`: only the pages of the
sentences a batch reads are in memory, and the operating system shares them
between runs, so a run's memory does not grow with the corpus (beyond a few
int64 numbers per pair: lengths, the batch plan) and a resumed run neither
re-reads the text nor calls the tokenizer.

Why plain `.npy` memory maps rather than ArrayRecord or Grain: they need no
dependency beyond NumPy, give O(1) random access to any sentence (the batch
plan reads pairs in a shuffled order), and are plain NumPy arrays on every
Keras backend (TensorFlow's `tf.data` generator, JAX and PyTorch alike).

The directory's name is a SHA-256 of the bytes of the corpus files and of
the two tokenizer models (streamed; sizes and modification times are not
enough), so a changed file or tokenizer builds a new cache and the same data
and tokenizers, in any run, reuse one. It lives in `data.cache_dir`, else
`$KERAS_RNN_CACHE_DIR`, else `$XDG_CACHE_HOME/keras-rnn/tokens` (by default
`~/.cache/keras-rnn/tokens`). A cache is built in a temporary directory
beside it and renamed into place once complete: a build killed at any
moment leaves no cache that a later run would use.

Tokenization runs on every core through SentencePiece's own thread pool
(`encode(..., num_threads=N)`, the C++ encoder without the GIL) on chunks
of lines, with a progress line every few seconds.
"""

import hashlib
import json
import os
import shutil
import tempfile
import time
from itertools import chain, zip_longest
from pathlib import Path

import numpy as np

from keras_rnn.training import data as data_lib
from keras_rnn.training.history import log as default_log
from keras_rnn.training.pipeline import ParallelData, Sequences
from keras_rnn.training.tokenizer import EOS_ID

VERSION = 1
ENV = "KERAS_RNN_CACHE_DIR"
CHUNK_LINES = 20_000  # lines per SentencePiece call
_READ = 1 << 20
_SIDES = ("source", "target")


def cache_root(configured=None):
    """The directory that holds token caches.

    Args:
        configured: `data.cache_dir` of the config, or None.

    Returns:
        `configured`, else `$KERAS_RNN_CACHE_DIR`, else
        `$XDG_CACHE_HOME/keras-rnn/tokens` (`~/.cache/...` by default), as a Path.
    """
    if configured:
        return Path(configured).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "keras-rnn" / "tokens"


def cache_key(source_files, target_files, source_tokenizer, target_tokenizer):
    """The SHA-256 naming a split's cache: the files' and models' bytes.

    Args:
        source_files, target_files: the split's files, in order.
        source_tokenizer, target_tokenizer: `Tokenizer`s (their `model_proto`).

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256(f"keras-rnn token cache {VERSION}\n".encode())
    for side, files, tokenizer in (("source", source_files, source_tokenizer),
                                   ("target", target_files, target_tokenizer)):
        digest.update(f"{side} {len(files)} files\n".encode())
        for path in files:
            size = 0
            try:
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(_READ), b""):
                        digest.update(chunk)
                        size += len(chunk)
            except OSError:
                list(data_lib.iter_lines(path))  # raises the DataError naming the file
                raise
            digest.update(f"\n{size} bytes\n".encode())
        digest.update(hashlib.sha256(tokenizer.model_proto).digest())
    return digest.hexdigest()


def cores():
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _id_dtype(tokenizer):
    return np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32


def _pairs(source_path, target_path):
    """Yields the line pairs of two line-aligned files (checked as `read_parallel`)."""
    missing = object()
    n = 0
    pairs = zip_longest(data_lib.iter_lines(source_path), data_lib.iter_lines(target_path),
                        fillvalue=missing)
    for n, (source, target) in enumerate(pairs, start=1):
        if source is missing or target is missing:
            longer = target_path if source is missing else source_path
            rest = 1 + sum(1 for _ in pairs)
            counts = (n - 1, n - 1 + rest) if source is missing else (n - 1 + rest, n - 1)
            raise data_lib.DataError(
                f"{source_path} has {counts[0]} lines but {target_path} has {counts[1]}; "
                f"the files must be line-aligned (line {n} of {longer} has no counterpart)",
                longer, n)
        yield source, target


def _encode(tokenizer, lines, threads):
    """Ids of `lines` with EOS appended, flat, and each row's length."""
    rows = tokenizer.encode(lines, num_threads=threads)
    lengths = np.fromiter(map(len, rows), np.int64, len(rows)) + 1
    flat = np.full(int(lengths.sum()), EOS_ID, _id_dtype(tokenizer))
    body = np.ones(len(flat), bool)
    body[np.cumsum(lengths) - 1] = False
    flat[body] = np.fromiter(chain.from_iterable(rows), flat.dtype, len(flat) - len(rows))
    return flat, lengths


def _write_npy(raw_path, path, dtype, count):
    """Turns a raw array file into an `.npy` file (header, then the bytes)."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
              "fortran_order": False, "shape": (count,)}
    with open(path, "wb") as out, open(raw_path, "rb") as raw:
        np.lib.format.write_array_header_1_0(out, header)
        shutil.copyfileobj(raw, out, _READ)
    os.unlink(raw_path)


def build(directory, source_files, target_files, source_tokenizer, target_tokenizer,
          threads=None, log=default_log, name="split"):
    """Tokenizes a split into `directory` (see the module docstring).

    Args:
        directory: the cache directory to write (it must not exist yet).
        source_files, target_files: the split's line-aligned files, pairwise.
        source_tokenizer, target_tokenizer: the `Tokenizer`s.
        threads: SentencePiece threads (default: the cores this process may use).
        log: prints the progress lines.
        name: the split's name, for the progress lines.

    Returns:
        The parsed `meta.json`.

    Raises:
        DataError: a file fails the checks of `read_parallel`; nothing is
            left behind.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    threads = threads or cores()
    tokenizers = dict(source=source_tokenizer, target=target_tokenizer)
    started = last = time.monotonic()
    temporary = Path(tempfile.mkdtemp(prefix=f".tmp-{directory.name}-{os.getpid()}-",
                                      dir=directory.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o777 & ~umask)  # mkdtemp's 0700 would keep a shared cache private
    try:
        raws = {side: open(temporary / f"{side}.ids.raw", "wb") for side in _SIDES}
        lengths = {side: [] for side in _SIDES}
        counts, total = [], 0
        with raws["source"], raws["target"]:
            for source_path, target_path in zip(source_files, target_files):
                pairs = _pairs(source_path, target_path)
                before = total
                while True:
                    chunk = [pair for _, pair in zip(range(CHUNK_LINES), pairs)]
                    if not chunk:
                        break
                    for side, lines in zip(_SIDES, zip(*chunk)):
                        flat, rows = _encode(tokenizers[side], list(lines), threads)
                        flat.tofile(raws[side])
                        lengths[side].append(rows)
                    total += len(chunk)
                    if time.monotonic() - last > 5:
                        last = time.monotonic()
                        log(f"Tokenizing {name}: {total:,} pairs "
                            f"({total / (last - started):,.0f} pairs/s, {threads} threads)")
                counts.append(total - before)
        meta = {"version": VERSION, "pairs": total, "pairs_per_file": counts,
                "built_from": [str(p) for p in chain(source_files, target_files)]}
        for side in _SIDES:
            offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths[side]))])
            dtype = _id_dtype(tokenizers[side])
            _write_npy(temporary / f"{side}.ids.raw", temporary / f"{side}.ids.npy",
                       dtype, int(offsets[-1]))
            np.save(temporary / f"{side}.offsets.npy", offsets.astype(np.int64))
            meta[side] = {"dtype": np.dtype(dtype).name, "tokens": int(offsets[-1]),
                          "vocab_size": tokenizers[side].vocab_size}
        meta["seconds"] = round(time.monotonic() - started, 2)
        (temporary / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(temporary, directory)
        except OSError:
            if not (directory / "meta.json").exists():
                raise
            # Another process built the same cache meanwhile: keep theirs.
        size = sum(f.stat().st_size for f in directory.iterdir())
        log(f"Tokenized {name}: {total:,} pairs in {meta['seconds']:.1f} s "
            f"({threads} threads), cached in {directory} ({size / 2 ** 20:,.1f} MiB)")
        return meta
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def open_cache(directory):
    """Memory-maps a built cache.

    Args:
        directory: a directory written by `build`.

    Returns:
        `(ParallelData, meta)`, the data's ids and offsets read-only
        `np.memmap`s; None if the directory is missing, incomplete or of
        another version.
    """
    directory = Path(directory)
    try:
        meta = json.loads((directory / "meta.json").read_text())
        if meta.get("version") != VERSION:
            return None
        sides = []
        for side in _SIDES:
            ids = np.load(directory / f"{side}.ids.npy", mmap_mode="r")
            offsets = np.load(directory / f"{side}.offsets.npy", mmap_mode="r")
            if len(offsets) != meta["pairs"] + 1 or len(ids) != offsets[-1]:
                return None
            sides.append(Sequences(ids, offsets))
    except (OSError, ValueError, KeyError):
        return None
    return ParallelData(*sides), meta


def remove_stale(root, key):
    """Removes temporary directories of builds of `key` whose process is gone."""
    for path in Path(root).glob(f".tmp-{key}-*"):
        try:
            pid = int(path.name[len(f".tmp-{key}-"):].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            pass


def tokenized_split(root, source_files, target_files, source_tokenizer, target_tokenizer,
                    name="split", log=default_log):
    """A split's tokenized pairs, from the cache (built on first use).

    Args:
        root: the cache root (`cache_root`).
        source_files, target_files: the split's line-aligned files, pairwise.
        source_tokenizer, target_tokenizer: the `Tokenizer`s.
        name: the split's name, for the log lines.
        log: prints the progress lines.

    Returns:
        `(ParallelData, meta)`: memory-mapped pairs and the cache's `meta.json`.

    Raises:
        DataError: the files fail the checks of `read_parallel`.
    """
    key = cache_key(source_files, target_files, source_tokenizer, target_tokenizer)
    directory = Path(root) / key
    opened = open_cache(directory)
    if opened is not None:
        return opened
    if directory.exists():  # incomplete or of another version: rebuild it
        stale = directory.with_name(f".tmp-{key}-old-{os.getpid()}")
        os.rename(directory, stale)
        shutil.rmtree(stale, ignore_errors=True)
    remove_stale(root, key)
    build(directory, source_files, target_files, source_tokenizer, target_tokenizer,
          log=log, name=name)
    opened = open_cache(directory)
    if opened is None:
        raise RuntimeError(f"{directory}: the token cache just built does not open.")
    return opened


def locate_line(source_files, target_files, meta, index):
    """The files and 1-based line of pair `index` of a cached split.

    Args:
        source_files, target_files: the split's files, pairwise.
        meta: the cache's `meta.json` (its pairs per file).
        index: a 0-based pair index into the whole split.

    Returns:
        `(source_path, target_path, line)`.
    """
    ends = np.cumsum(meta["pairs_per_file"])
    file = int(np.searchsorted(ends, index, side="right"))
    line = index - (int(ends[file - 1]) if file else 0) + 1
    return Path(source_files[file]), Path(target_files[file]), line
