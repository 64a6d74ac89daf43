"""Fills a model base directory from an archive: the init container of the
Kubernetes pods (serving/k8s/), standard library only.

    python fetch_models.py --url https://storage.example/models/quick-1.tar.gz \
        --model-name quick --dest /models [--sha256 HEX]

In the image it is /opt/keras-rnn/fetch_models.py (the Dockerfile copies it
there; run by path, so `keras_rnn` and TensorFlow are not imported). Each
flag defaults to an environment variable (`MODEL_URL`, `MODEL_NAME`,
`MODEL_SHA256`, `MODEL_DIR`), which the manifests set from the
`translation-models` ConfigMap.

The archive (`.tar`, `.tar.gz`, `.tgz`) is a model directory as `keras-rnn
export` writes it, either `NAME/VERSION/saved_model.pb...` (`tar -C models
-czf quick.tar.gz quick`) or `VERSION/saved_model.pb...` (then it becomes
model NAME). URLs: `https://`, `http://`, `file://` or a local path (an
object store's pre-signed HTTPS URL works as is). Extraction refuses
absolute paths, `..`, links out of the tree and device files (tarfile's
`data` filter), and the result must hold NAME/VERSION/saved_model.pb, or
the init container fails with one line saying why: the pod never starts
on an empty or wrong model volume.
"""

import argparse
import hashlib
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ATTEMPTS = 3
TIMEOUT_SECONDS = 60


class FetchError(Exception):
    """The model volume could not be filled (the message says why)."""


def download(url, target, attempts=ATTEMPTS, timeout=TIMEOUT_SECONDS):
    """Copies `url` to the file `target`, retrying network errors.

    Args:
        url: https://, http://, file:// URL or a local path.
        target: the file to write.
        attempts: tries for network URLs.
        timeout: socket timeout per try, in seconds.

    Returns:
        The number of bytes written.

    Raises:
        FetchError: the URL could not be read.
    """
    scheme = urllib.parse.urlparse(url).scheme
    if scheme in ("", "file"):
        source = urllib.parse.urlparse(url).path if scheme else url
        try:
            shutil.copyfile(source, target)
        except OSError as error:
            raise FetchError(f"cannot read {source}: {error}") from error
        return Path(target).stat().st_size
    if scheme not in ("http", "https"):
        raise FetchError(f"unsupported URL scheme {scheme!r}: use https://, http:// or file://")
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, \
                    open(target, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            return Path(target).stat().st_size
        except OSError as error:  # URLError, HTTPError, timeouts
            if attempt == attempts:
                redacted = url.split("?", 1)[0]  # pre-signed URLs carry credentials
                raise FetchError(f"cannot download {redacted}: {error}") from error
            time.sleep(2 ** attempt)
    return 0


def sha256_of(path):
    """The hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_versions(model_dir):
    """The complete versions of a model directory (integer directories with a
    `saved_model.pb`), sorted."""
    return sorted(int(p.name) for p in Path(model_dir).iterdir()
                  if p.is_dir() and re.fullmatch(r"\d+", p.name)
                  and (p / "saved_model.pb").exists())


def fetch(url, dest, model_name, sha256=None):
    """Fills `dest` with the models of the archive at `url`.

    Args:
        url: where the archive is.
        dest: the model base directory (created if missing).
        model_name: the model that must be there afterwards (and the name of
            an archive that holds versions only).
        sha256: optional expected hex SHA-256 of the archive.

    Returns:
        dict of model name -> its versions, as now in `dest`.

    Raises:
        FetchError: download, checksum, archive or layout problem.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest) as work:
        archive = Path(work) / "archive"
        download(url, archive)
        if sha256 and sha256_of(archive) != sha256.strip().lower():
            raise FetchError(f"SHA-256 mismatch: expected {sha256}, got {sha256_of(archive)}")
        tree = Path(work) / "tree"
        tree.mkdir()
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tree, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise FetchError(f"not a usable tar archive: {error}") from error
        entries = [p for p in tree.iterdir() if not p.name.startswith(".")]
        if entries and all(re.fullmatch(r"\d+", p.name) for p in entries):
            wrapped = Path(work) / "wrapped"
            wrapped.mkdir()
            tree.rename(wrapped / model_name)
            tree = wrapped
        models = {p.name: model_versions(p) for p in tree.iterdir()
                  if p.is_dir() and not p.name.startswith(".")}
        models = {name: versions for name, versions in models.items() if versions}
        if model_name not in models:
            raise FetchError(
                f"the archive holds no complete version of model {model_name!r} "
                f"(expected {model_name}/VERSION/saved_model.pb or VERSION/saved_model.pb; "
                f"found models: {sorted(models) or 'none'})")
        for name in models:
            target = dest / name
            if target.exists():
                shutil.rmtree(target)
            (tree / name).rename(target)
    return models


def main(argv=None, environ=None):
    """The init container's command.

    Args:
        argv: the flags (default: `sys.argv[1:]`).
        environ: the environment the flags default to (default: `os.environ`).

    Returns:
        The exit status: 0 filled, 1 failed (one line on stderr says why).
    """
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=environ.get("MODEL_URL", ""))
    parser.add_argument("--model-name", default=environ.get("MODEL_NAME", ""))
    parser.add_argument("--dest", default=environ.get("MODEL_DIR", "/models"))
    parser.add_argument("--sha256", default=environ.get("MODEL_SHA256", ""))
    args = parser.parse_args(argv)
    if not args.url or not args.model_name:
        print("fetch-models: MODEL_URL and MODEL_NAME must be set (the translation-models "
              "ConfigMap): without them the model volume stays empty", file=sys.stderr)
        return 1
    start = time.monotonic()
    try:
        models = fetch(args.url, args.dest, args.model_name, args.sha256)
    except FetchError as error:
        print(f"fetch-models: {error}", file=sys.stderr)
        return 1
    print(f"fetch-models: {args.dest} holds " + ", ".join(
        f"{name} versions {','.join(map(str, versions))}" for name, versions in models.items())
        + f" ({time.monotonic() - start:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
