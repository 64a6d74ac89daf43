"""Parallel corpora: reading sentence-aligned files and downloading Multi30k.

A parallel corpus is two UTF-8 text files with one sentence per line, where
line `i` of the source file translates line `i` of the target file. Files
are named `<split>.<lang>` (Multi30k's convention, e.g. `train.de` and
`train.en`); `corpus_paths` builds those names.

Every problem with the data raises `DataError`, whose message names the
file and, where there is one, the 1-based line number, so a bad corpus can
be fixed without a debugger.

Multi30k (Elliott et al. 2016, "Multi30K: Multilingual English-German Image
Descriptions") is fetched from a pinned commit of its GitHub repository and
every file is checked against the SHA-256 in `MULTI30K_SHA256`.
"""

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

MULTI30K_URL = (
    "https://github.com/multi30k/dataset/raw/"
    "a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw/{split}.{lang}.gz"
)

# SHA-256 of the *uncompressed* files, keyed by file name.
MULTI30K_SHA256 = {
    "test_2016_flickr.de": "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
    "test_2016_flickr.en": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
    "test_2016_flickr.fr": "cb3160d69b002bb638e66cc7612fcd56cb0af82eadc9c142dedc438afb885ef6",
    "train.de": "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
    "train.en": "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
    "train.fr": "5925a3c18f1587b6b54b87743106e6e8ab93618edb6f65d19eac0621f853a10d",
    "val.de": "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
    "val.en": "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
    "val.fr": "5304e444d842e962b2dda4d816b70b22a1765b15401642b7ca37a67477e708dc",
}

MULTI30K_SPLITS = ("train", "val", "test_2016_flickr")

_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_EXPECTED = "expected one sentence per line"


class DataError(ValueError):
    """A problem with the data: a missing, malformed or corrupt file.

    The message names the file (or URL) and, when the problem is on one
    line, its 1-based line number.

    Attributes:
        path: the file or URL at fault, as a string (None if there is none).
        line: the 1-based line number at fault, or None.
    """

    def __init__(self, message, path=None, line=None):
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.line = line


# ----------------------------------------------------------------- reading


def _decode_line(raw, path, number, offset_base=0):
    """Decodes one line of bytes as UTF-8.

    Args:
        raw: the line's bytes.
        path: the file, for the error message.
        number: the 1-based line number, for the error message.
        offset_base: bytes already removed from the start of the line (a BOM).

    Returns:
        The decoded line.

    Raises:
        DataError: the bytes are not valid UTF-8.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = raw[e.start:e.end]
        near = raw[max(0, e.start - 16):e.end + 16].rstrip(b"\r\n")
        raise DataError(
            f"{path}: line {number} is not valid UTF-8: invalid byte(s) {bad!r} "
            f"at byte offset {e.start + offset_base} of the line (near {near!r})",
            path, number) from None


def _open_text(path):
    """Opens a corpus file for reading bytes: plain, or gzip if it ends in ".gz".

    Raises:
        DataError: the file is missing, a directory or unreadable.
    """
    path = Path(path)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file ({_EXPECTED})", path) from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a text file ({_EXPECTED})",
                        path) from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}", path) from None
    if path.name.endswith(".gz"):
        return gzip.GzipFile(fileobj=handle, mode="rb"), handle
    return handle, handle


def iter_lines(path):
    """Yields the sentences of a UTF-8 text file (plain or `.gz`), one per line.

    The streaming form of `read_lines`: the same checks and the same
    sentences, without holding the file in memory.

    Args:
        path: the text file; a name ending in ".gz" is read as gzip.

    Yields:
        str: each line without its line ending and surrounding whitespace.

    Raises:
        DataError: as `read_lines` (also for corrupt gzip data).
    """
    path = Path(path)
    stream, raw_handle = _open_text(path)
    number = 0
    with raw_handle, stream:
        try:
            for number, raw in enumerate(stream, start=1):
                skipped = 0
                if number == 1 and raw.startswith(_BOM):
                    raw, skipped = raw[len(_BOM):], len(_BOM)
                sentence = _decode_line(raw, path, number, skipped).strip()
                if not sentence:
                    raise DataError(f"{path}: line {number} is empty ({_EXPECTED})",
                                    path, number)
                yield sentence
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise DataError(f"{path}: corrupt gzip data after line {number}: {e}",
                            path, number + 1) from None
    if number == 0:
        raise DataError(f"{path}: no sentences; the file is empty ({_EXPECTED})", path)


def read_lines(path):
    """Reads a UTF-8 text file of one sentence per line.

    A UTF-8 byte-order mark at the start of the file is dropped, and each
    line loses its line ending ("\\n" or "\\r\\n") and surrounding whitespace.
    A file whose name ends in ".gz" is decompressed.

    Args:
        path: the text file.

    Returns:
        The sentences, one per line, as a list of str (never empty).

    Raises:
        DataError: the file is missing or unreadable, is not UTF-8 (the
            message gives the line, the byte offset within it and the bad
            bytes), has an empty or whitespace-only line, or has no lines.
    """
    return list(iter_lines(path))


def read_parallel(source_path, target_path):
    """Reads a sentence-aligned pair of files.

    Args:
        source_path: the source-language file, one sentence per line.
        target_path: the target-language file, line `i` translating line `i`
            of `source_path`.

    Returns:
        `(sources, targets)`: two lists of str of equal length.

    Raises:
        DataError: either file fails `read_lines`, or the line counts differ
            (the message names both files, both counts and the first line of
            the longer file that has no counterpart).
    """
    sources = read_lines(source_path)
    targets = read_lines(target_path)
    if len(sources) != len(targets):
        longer = source_path if len(sources) > len(targets) else target_path
        first = min(len(sources), len(targets)) + 1
        raise DataError(
            f"{source_path} has {len(sources)} lines but {target_path} has "
            f"{len(targets)}; the files must be line-aligned (line {first} of "
            f"{longer} has no counterpart)", longer, first)
    return sources, targets


def corpus_paths(data_dir, split, source_lang, target_lang):
    """The files of one split of a parallel corpus.

    Args:
        data_dir: the corpus directory.
        split: the split name, e.g. "train", "val", "test_2016_flickr".
        source_lang: the source language code, e.g. "de".
        target_lang: the target language code, e.g. "en".

    Returns:
        `(source_path, target_path)`: `<data_dir>/<split>.<lang>` as Paths.
    """
    data_dir = Path(data_dir)
    return data_dir / f"{split}.{source_lang}", data_dir / f"{split}.{target_lang}"


def split_files(data_dir, splits, lang):
    """The files of one side of a split given as one name or a list of names.

    Each name resolves to `<data_dir>/<name>.<lang>`, or to
    `<data_dir>/<name>.<lang>.gz` where only the gzip file exists; the files
    of a list are read one after another as one corpus.

    Args:
        data_dir: the corpus directory.
        splits: a split name ("train") or a list of them.
        lang: the language code.

    Returns:
        A list of Paths, in the order of `splits`.
    """
    data_dir = Path(data_dir)
    paths = []
    for split in [splits] if isinstance(splits, str) else splits:
        path = data_dir / f"{split}.{lang}"
        gz = path.with_name(path.name + ".gz")
        paths.append(gz if not path.exists() and gz.exists() else path)
    return paths


# ------------------------------------------------------------- downloading


def sha256_file(path):
    """The SHA-256 of a file, read in chunks.

    Args:
        path: the file.

    Returns:
        The hex digest (lower case).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url, out, timeout):
    """Copies the bytes at `url` into the open binary file `out`.

    Raises:
        DataError: the URL cannot be opened or read.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
    except urllib.error.HTTPError as e:
        raise DataError(f"{url}: download failed: HTTP {e.code} {e.reason}", url) from None
    except urllib.error.URLError as e:
        raise DataError(f"{url}: download failed: {e.reason}", url) from None
    except (OSError, ValueError) as e:  # timeouts, resets, malformed URLs
        raise DataError(f"{url}: download failed: {e}", url) from None


def _is_gzip(url, path):
    """Whether the download is gzip: a ".gz" URL or gzip magic bytes."""
    if urllib.parse.urlsplit(url).path.endswith(".gz"):
        return True
    with open(path, "rb") as f:
        return f.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC


def _gunzip(url, src, dst):
    """Decompresses the gzip file `src` into `dst`.

    Raises:
        DataError: `src` is not a valid gzip stream (named by `url`).
    """
    try:
        with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
            for chunk in iter(lambda: fin.read(_CHUNK), b""):
                fout.write(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{url}: corrupt gzip data: {e}", url) from None


def _temp_path(dest, suffix):
    """A new, empty temporary file next to `dest` (same file system)."""
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    return Path(name)


def download(url, dest, sha256=None, timeout=60):
    """Downloads `url` to `dest`, gunzipping and verifying it.

    The bytes go to a temporary file in `dest`'s directory and replace `dest`
    atomically only once complete and verified, so a failed download never
    leaves a partial file nor destroys a good `dest`. Gzip data (a URL ending
    in ".gz", or bytes starting with the gzip magic) is decompressed: `dest`
    is always the uncompressed file, and `sha256` is its digest.

    Args:
        url: any URL `urllib.request.urlopen` accepts (`https://`,
            `file://`, ...).
        dest: the output file; its directory is created if needed.
        sha256: the expected SHA-256 hex digest of the uncompressed bytes,
            or None for no check. With a digest, a `dest` that already
            matches it is kept and nothing is downloaded; without one,
            `dest` is always downloaded afresh.
        timeout: the socket timeout in seconds.

    Returns:
        `dest` as a Path.

    Raises:
        DataError: the download fails (the message names the URL and the
            reason), the gzip data is corrupt, or the checksum does not
            match (the message names the URL and both digests).
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if expected and dest.is_file() and sha256_file(dest) == expected:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    temps = []
    try:
        raw = _temp_path(dest, ".part")
        temps.append(raw)
        with open(raw, "wb") as out:
            _fetch(url, out, timeout)
        result = raw
        if _is_gzip(url, raw):
            result = _temp_path(dest, ".gunzip")
            temps.append(result)
            _gunzip(url, raw, result)
        if expected:
            actual = sha256_file(result)
            if actual != expected:
                raise DataError(
                    f"{url}: SHA-256 mismatch: expected {expected}, got {actual}; "
                    f"{dest} was left unchanged", url)
        os.replace(result, dest)
        temps.remove(result)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    return dest


def download_multi30k(dest_dir, splits=MULTI30K_SPLITS, langs=("de", "en"),
                      url_template=MULTI30K_URL):
    """Downloads Multi30k (task 1) text files into `dest_dir`.

    Each file `<split>.<lang>` is fetched from
    `url_template.format(split=split, lang=lang)`, gunzipped and checked
    against `MULTI30K_SHA256`; files already present with the right
    checksum are not downloaded again. A file name missing from
    `MULTI30K_SHA256` (another split or language) is downloaded without any
    checksum verification, and afresh every time.

    Args:
        dest_dir: the output directory (created if needed).
        splits: the split names, e.g. ("train", "val", "test_2016_flickr").
        langs: the language codes, e.g. ("de", "en"); Multi30k also has
            "fr" (and "cs" for some splits).
        url_template: a `str.format` template with `{split}` and `{lang}`.

    Returns:
        The downloaded files, as Paths, in `splits` x `langs` order.

    Raises:
        DataError: a download fails or a checksum does not match.
    """
    dest_dir = Path(dest_dir)
    paths = []
    for split in splits:
        for lang in langs:
            name = f"{split}.{lang}"
            url = url_template.format(split=split, lang=lang)
            paths.append(download(url, dest_dir / name, MULTI30K_SHA256.get(name)))
    return paths
