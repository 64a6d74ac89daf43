"""Tests for training/data.py: reading parallel corpora and downloading.

Fully offline: downloads use `file://` URLs to gzip copies of the shared
Multi30k validation files.
"""

import gzip
import hashlib
from pathlib import Path

import pytest

from keras_rnn.training.data import (
    MULTI30K_SHA256,
    DataError,
    corpus_paths,
    download,
    download_multi30k,
    iter_lines,
    read_lines,
    read_parallel,
    sha256_file,
    split_files,
)

MULTI30K = Path(__file__).resolve().parents[3] / "shared/data/multi30k"
needs_multi30k = pytest.mark.skipif(
    not (MULTI30K / "val.de").is_file(), reason=f"no shared Multi30k copy at {MULTI30K}")


def _write(path, data):
    path.write_bytes(data)
    return path


def _gz(src, dest):
    dest.write_bytes(gzip.compress(Path(src).read_bytes()))
    return dest


def _listing(directory):
    return sorted(p.name for p in directory.iterdir())


# ------------------------------------------------------------------ reading


@needs_multi30k
def test_read_parallel_real_val():
    src, tgt = corpus_paths(MULTI30K, "val", "de", "en")
    assert (src.name, tgt.name) == ("val.de", "val.en")
    sources, targets = read_parallel(src, tgt)
    assert len(sources) == len(targets) == 1014
    first_de = src.read_text(encoding="utf-8").splitlines()[0].strip()
    first_en = tgt.read_text(encoding="utf-8").splitlines()[0].strip()
    assert (sources[0], targets[0]) == (first_de, first_en)


def test_corpus_paths(tmp_path):
    assert corpus_paths(tmp_path, "train", "de", "en") == (
        tmp_path / "train.de", tmp_path / "train.en")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.de"
    with pytest.raises(DataError, match="no such file") as info:
        read_lines(path)
    assert str(path) in str(info.value)
    assert "one sentence per line" in str(info.value)
    assert info.value.path == str(path) and info.value.line is None


def test_mismatched_counts(tmp_path):
    src = _write(tmp_path / "a.de", b"eins\nzwei\ndrei\n")
    tgt = _write(tmp_path / "a.en", b"one\ntwo\n")
    with pytest.raises(DataError) as info:
        read_parallel(src, tgt)
    message = str(info.value)
    assert str(src) in message and str(tgt) in message
    assert "3" in message and "2" in message
    assert "line 3" in message
    assert info.value.line == 3 and info.value.path == str(src)


def test_empty_line(tmp_path):
    path = _write(tmp_path / "e.en", b"one\ntwo\n   \nfour\n")
    with pytest.raises(DataError, match="line 3 is empty") as info:
        read_lines(path)
    assert str(path) in str(info.value)
    assert info.value.line == 3


def test_empty_file(tmp_path):
    path = _write(tmp_path / "empty.en", b"")
    with pytest.raises(DataError, match="no sentences") as info:
        read_lines(path)
    assert str(path) in str(info.value)


def test_non_utf8(tmp_path):
    path = _write(tmp_path / "bad.en", b"ok\nbad \xff\xfe here\n")
    with pytest.raises(DataError) as info:
        read_lines(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 2" in message
    assert "offset 4" in message
    assert r"\xff" in message
    assert info.value.line == 2


def test_crlf_bom_and_whitespace(tmp_path):
    path = _write(tmp_path / "w.en",
                  b"\xef\xbb\xbfHello world\r\n  two  \r\n\xc3\xa9t\xc3\xa9\n")
    assert read_lines(path) == ["Hello world", "two", "été"]


def test_no_trailing_newline(tmp_path):
    path = _write(tmp_path / "n.en", b"one\ntwo")
    assert read_lines(path) == ["one", "two"]


def test_gzip_input_reads_as_plain_and_names_its_lines(tmp_path):
    plain = _write(tmp_path / "g.en", b"\xef\xbb\xbfone\r\n two \n")
    gz = _write(tmp_path / "g2.en.gz", gzip.compress(plain.read_bytes()))
    assert read_lines(gz) == read_lines(plain) == ["one", "two"]
    assert list(iter_lines(gz)) == ["one", "two"]
    bad = _write(tmp_path / "bad.en.gz", gzip.compress(b"ok\n\n"))
    with pytest.raises(DataError, match="line 2 is empty"):
        read_lines(bad)
    truncated = _write(tmp_path / "cut.en.gz", gzip.compress(b"ok\n" * 1000)[:-20])
    with pytest.raises(DataError, match="corrupt gzip data"):
        read_lines(truncated)


def test_split_files_takes_a_name_or_a_list_and_finds_gzip(tmp_path):
    _write(tmp_path / "a.de", b"x\n")
    _write(tmp_path / "b.de.gz", gzip.compress(b"y\n"))
    assert split_files(tmp_path, "a", "de") == [tmp_path / "a.de"]
    assert split_files(tmp_path, ["a", "b"], "de") == [tmp_path / "a.de", tmp_path / "b.de.gz"]
    assert split_files(tmp_path, "c", "de") == [tmp_path / "c.de"]  # missing: named as plain


# -------------------------------------------------------------- downloading


@needs_multi30k
def test_download_gz_file_url(tmp_path):
    gz = _gz(MULTI30K / "val.de", tmp_path / "val.de.gz")
    dest = tmp_path / "out" / "val.de"
    result = download(gz.as_uri(), dest, sha256=MULTI30K_SHA256["val.de"])
    assert result == dest
    assert dest.read_bytes() == (MULTI30K / "val.de").read_bytes()
    assert sha256_file(dest) == MULTI30K_SHA256["val.de"]
    assert _listing(dest.parent) == ["val.de"]


def test_download_gzip_magic_without_gz_suffix(tmp_path):
    src = _write(tmp_path / "blob.bin", gzip.compress(b"hello\n"))
    dest = download(src.as_uri(), tmp_path / "out.txt")
    assert dest.read_bytes() == b"hello\n"


def test_download_plain(tmp_path):
    src = _write(tmp_path / "plain.txt", b"plain\n")
    dest = download(src.as_uri(), tmp_path / "out" / "plain.txt")
    assert dest.read_bytes() == b"plain\n"


def test_download_wrong_checksum_keeps_dest(tmp_path):
    gz = _write(tmp_path / "src.gz", gzip.compress(b"new content\n"))
    out = tmp_path / "out"
    out.mkdir()
    dest = _write(out / "val.de", b"precious old content\n")
    wrong = "0" * 64
    with pytest.raises(DataError) as info:
        download(gz.as_uri(), dest, sha256=wrong)
    message = str(info.value)
    assert gz.as_uri() in message
    assert wrong in message
    assert hashlib.sha256(b"new content\n").hexdigest() in message
    assert dest.read_bytes() == b"precious old content\n"
    assert _listing(out) == ["val.de"]


def test_download_skips_when_dest_valid(tmp_path):
    dest = _write(tmp_path / "ok.txt", b"already here\n")
    digest = sha256_file(dest)
    missing = (tmp_path / "does-not-exist.gz").as_uri()
    assert download(missing, dest, sha256=digest) == dest
    assert dest.read_bytes() == b"already here\n"


def test_download_corrupt_gz(tmp_path):
    src = _write(tmp_path / "broken.gz", b"\x1f\x8b this is not gzip data")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="corrupt gzip") as info:
        download(src.as_uri(), out / "x.txt")
    assert src.as_uri() in str(info.value)
    assert _listing(out) == []


def test_download_truncated_gz(tmp_path):
    data = gzip.compress(b"some sentence\n" * 100)
    src = _write(tmp_path / "trunc.gz", data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt gzip"):
        download(src.as_uri(), tmp_path / "out" / "x.txt")


def test_download_missing_url(tmp_path):
    url = (tmp_path / "missing.gz").as_uri()
    out = tmp_path / "out"
    with pytest.raises(DataError, match="download failed") as info:
        download(url, out / "x.txt")
    assert url in str(info.value)
    assert info.value.path == url
    assert _listing(out) == []


@needs_multi30k
def test_download_multi30k_file_template(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for lang in ("de", "en"):
        _gz(MULTI30K / f"val.{lang}", mirror / f"val.{lang}.gz")
    template = mirror.as_uri() + "/{split}.{lang}.gz"
    dest_dir = tmp_path / "data"
    paths = download_multi30k(dest_dir, splits=("val",), url_template=template)
    assert paths == [dest_dir / "val.de", dest_dir / "val.en"]
    for path in paths:
        assert sha256_file(path) == MULTI30K_SHA256[path.name]
    sources, targets = read_parallel(*paths)
    assert len(sources) == len(targets) == 1014
    # A second call finds the files valid and fetches nothing.
    for gz in mirror.iterdir():
        gz.unlink()
    assert download_multi30k(dest_dir, splits=("val",), url_template=template) == paths


def test_multi30k_checksums_match_shared_sums():
    sums = MULTI30K / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip(f"no {sums}")
    table = dict(reversed(line.split()) for line in sums.read_text().splitlines()
                 if line.strip())
    assert table == MULTI30K_SHA256
