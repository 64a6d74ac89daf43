"""Loads, warms, serves and hot-reloads versioned SavedModels, with
TensorFlow Serving's version lifecycle (its file-system source and
`AvailabilityPreservingPolicy`).

    manager = ModelManager({"de_en": "exports/de_en"}, policy="latest")
    manager = ModelManager({}, base_dir="exports")    # every model folder there
    manager.poll()                          # load what is on disk
    with manager.acquire("de_en") as servable:
        outputs = servable.predict(contract.DEFAULT_SIGNATURE, {"inputs": sentences})

Each model directory holds integer version subdirectories (TensorFlow
Serving's layout); anything else there (the exporter's hidden `.N.tmp-*`
directories, files) is ignored, and so is a version directory without a
`saved_model.pb`. Policy `latest` serves the highest version that loads;
`all` serves every version that loads.

Every poll (`poll`, run by a thread every `poll_seconds`) makes the served
set follow the directories:

- A model folder under `base_dir` is served once it holds a complete
  version; a missing or empty `base_dir` is polled until one appears (no
  model: `ready()` is False, requests get NOT_FOUND saying that no model
  is there, and one WARNING line, `base_dir_empty` or `base_dir_missing`,
  says so once per poller, not every poll).
- A new version is loaded and warmed up (`assets.extra/
  tf_serving_warmup_requests`) before it is published; the version it
  replaces stops taking new requests and is unloaded once its in-flight
  requests have finished, so no request fails during the switch.
- A version whose directory was removed is unloaded the same way, after the
  newest remaining version was (re)loaded in its place, and is no longer
  reported.
- A version that fails to load (or breaks the contract, `ContractError`) is
  logged once, reported as END with its error, and retried when any file
  of its directory changes (a version still being copied in loads once the
  copy is complete); the versions already served keep serving.
"""

import contextlib
import dataclasses
import functools
import logging
import os
import re
import threading
import time
from pathlib import Path

from keras_rnn.serving import contract
from keras_rnn.serving.errors import (  # noqa: F401 - raised here, re-exported
    ContractError, ModelNotFoundError, ModelUnavailableError, bounded)
from keras_rnn.serving.servable import Servable, release_memory  # noqa: F401 - re-exported

log = logging.getLogger("keras_rnn.serving")


# tensorflow.serving.ModelVersionStatus.State values.
START, LOADING, AVAILABLE, UNLOADING, END = 10, 20, 30, 40, 50
# Status codes (google.rpc.Code) of a version that did not load.
UNKNOWN, FAILED_PRECONDITION = 2, 9


@dataclasses.dataclass
class VersionStatus:
    """What `GetModelStatus` reports for one version.

    Attributes:
        version: the integer version.
        state: one of START, LOADING, AVAILABLE, UNLOADING, END.
        error_code: 0 (OK) or a `grpc.StatusCode` value's integer code.
        error_message: why loading failed ("" when it did not).
    """

    version: int
    state: int
    error_code: int = 0
    error_message: str = ""


def list_versions(model_dir):
    """Integer version directories of a model directory that look complete.

    Args:
        model_dir: a model directory.

    Returns:
        dict of version -> Path, for subdirectories named by an integer that
        hold a `saved_model.pb` or `saved_model.pbtxt`; names like the
        exporter's `.3.tmp-x` (still being written) are ignored.
    """
    versions = {}
    try:
        entries = list(os.scandir(model_dir))
    except (FileNotFoundError, NotADirectoryError):
        return versions
    for entry in entries:
        if re.fullmatch(r"\d+", entry.name) and entry.is_dir():
            path = Path(entry.path)
            if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
                versions[int(entry.name)] = path
    return versions


def fingerprint(path):
    """What changes when any file of a version directory changes: the sorted
    (relative path, size, mtime) of every file under it."""
    files = []
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except FileNotFoundError:
                continue
            files.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(files))


class ModelManager:
    """Serves the versions of several models and follows them on disk.

    Args:
        models: dict of model name -> model directory (version subdirs).
        policy: "latest" (serve the highest version that loads) or "all".
        warmup: replay warm-up requests before publishing a version.
        base_dir: optional model base directory: each poll, every folder in
            it (not hidden) that holds a complete version becomes a model.
        load: `load(name, version, path)` -> a `Servable` (the server's
            passes its batching options and metrics). Default: a `Servable`
            checked against the translator contract; a version that breaks
            it (`ContractError`) is refused (reported END with
            FAILED_PRECONDITION and its problems, logged once) and the
            served version stays.
    """

    def __init__(self, models, policy="latest", warmup=True, base_dir=None,
                 load=functools.partial(Servable, check=contract.check_signature_defs)):
        if policy not in ("latest", "all"):
            raise ValueError(f"version policy must be 'latest' or 'all'; got {policy!r}")
        self.models = {name: Path(path) for name, path in models.items()}
        self.base_dir = Path(base_dir) if base_dir else None
        self.policy = policy
        self._warmup = warmup
        self._new_servable = load
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._served = {name: {} for name in self.models}  # name -> {version: Servable}
        self._status = {name: {} for name in self.models}  # name -> {version: VersionStatus}
        self._failed = {}  # (name, version) -> fingerprint of the failed attempt
        self._said = set()  # one-time log lines already written
        self._stop = threading.Event()
        self._thread = None

    # ------------------------------------------------------------ queries

    def model_names(self):
        with self._lock:
            return sorted(self.models)

    def ready(self):
        """True when there is a model and every model serves a version."""
        with self._lock:
            return bool(self.models) and all(self._served[name] for name in self.models)

    def served_versions(self, name):
        with self._lock:
            return sorted(self._served.get(name, {}))

    def status(self, name, version=None):
        """`VersionStatus`es of a model, newest first.

        Raises:
            ModelNotFoundError: unknown model, or `version` never seen.
        """
        with self._lock:
            name = self.resolve_name(name)
            statuses = self._status[name]
            if version is not None:
                if version not in statuses:
                    raise ModelNotFoundError(f"model {name!r} has no version {version} "
                                             f"(versions: {sorted(statuses)})")
                return [statuses[version]]
            return [statuses[v] for v in sorted(statuses, reverse=True)]

    def resolve_name(self, name):
        """The model name to use: `name`, or the only model if it is empty.

        Raises:
            ModelNotFoundError: unknown name, empty with several models, or
                no model found in `base_dir` yet (the message says so).
        """
        with self._lock:
            if not self.models and self.base_dir is not None:
                raise ModelNotFoundError(
                    f"model {bounded(name or '')} is not served: no model found in the model "
                    "base directory yet (it needs NAME/VERSION/saved_model.pb)")
            if not name:
                if len(self.models) == 1:
                    return next(iter(self.models))
                raise ModelNotFoundError(  # the names are not told to clients
                    f"model_spec.name is empty and the server serves {len(self.models)} "
                    "models; name one")
            if name not in self.models:
                raise ModelNotFoundError(f"model {bounded(name)} is not served")
            return name

    @contextlib.contextmanager
    def acquire(self, name, version=None):
        """The `Servable` of a model (newest served version by default),
        held in flight for the duration of the block.

        Raises:
            ModelNotFoundError: unknown model or version.
            ModelUnavailableError: no version of the model loaded (yet).
        """
        with self._lock:
            name = self.resolve_name(name)
            served = self._served[name]
            if version is None:
                if not served:
                    raise ModelUnavailableError(f"model {name!r} has no version loaded yet")
                servable = served[max(served)]
            elif version in served:
                servable = served[version]
            else:
                raise ModelNotFoundError(
                    f"model {name!r} version {version} is not served "
                    f"(served versions: {sorted(served)})")
            context = servable.use()
            context.__enter__()  # counted in flight before the lock is released
        try:
            yield servable
        finally:
            context.__exit__(None, None, None)

    # ------------------------------------------------------------ loading

    def _say_once(self, key, level, message, **fields):
        if key not in self._said:
            self._said.add(key)
            log.log(level, message, extra={"fields": {"event": key[0], **fields}})

    def _discover(self):
        """Adds the models of `base_dir` that hold a complete version."""
        if self.base_dir is None:
            return
        try:
            folders = [p for p in sorted(self.base_dir.iterdir())
                       if p.is_dir() and not p.name.startswith(".")]
        except (FileNotFoundError, NotADirectoryError):
            self._say_once(("base_dir_missing", str(self.base_dir)), logging.WARNING,
                           "model base directory missing", path=str(self.base_dir))
            return
        self._said.discard(("base_dir_missing", str(self.base_dir)))
        for folder in folders:
            if folder.name not in self.models and list_versions(folder):
                with self._lock:
                    self.models[folder.name] = folder
                    self._served[folder.name] = {}
                    self._status[folder.name] = {}
                log.info("model found", extra={"fields": {
                    "event": "model_found", "model": folder.name, "path": str(folder)}})
        if not self.models:
            self._say_once(("base_dir_empty", str(self.base_dir)), logging.WARNING,
                           "no model in the model base directory: nothing to serve until "
                           "NAME/VERSION/saved_model.pb appears there (health NOT_SERVING)",
                           path=str(self.base_dir),
                           entries=[p.name for p in folders][:10])

    def poll(self):
        """Makes the served versions follow the directories (see the module
        docstring).

        Returns:
            True if what is served changed.
        """
        with self._poll_lock:
            self._discover()
            changed = False
            for name, model_dir in list(self.models.items()):
                changed |= self._poll_model(name, model_dir)
            return changed

    def _poll_model(self, name, model_dir):
        on_disk = list_versions(model_dir)
        with self._lock:
            served = dict(self._served[name])
        loaded = {}
        for version in sorted(on_disk, reverse=True):
            if version in served:
                if self.policy == "latest":
                    break  # older versions are not loaded while a newer one serves
                continue
            servable = self._load(name, version, on_disk[version])
            if servable is not None:
                loaded[version] = servable
                if self.policy == "latest":
                    break
        with self._lock:
            current = self._served[name]
            current.update(loaded)
            keep = set(current) & set(on_disk)
            if self.policy == "latest" and keep:
                keep = {max(keep)}
            retired = [current.pop(v) for v in list(current) if v not in keep]
            for servable in retired:
                self._status[name][servable.version] = VersionStatus(servable.version, UNLOADING)
            # Versions gone from disk that are not loaded are no longer reported.
            for version in list(self._status[name]):
                if version not in on_disk and version not in current and \
                        self._status[name][version].state != UNLOADING:
                    del self._status[name][version]
                    self._failed.pop((name, version), None)
        for version in loaded:
            log.info("version published", extra={"fields": {
                "event": "version_published", "model": name, "version": version}})
        for servable in retired:
            if servable.version not in on_disk:
                log.info("version removed", extra={"fields": {
                    "event": "version_removed", "model": name, "version": servable.version}})
            threading.Thread(target=self._unload, args=(servable, None, servable.version
                                                        not in on_disk), daemon=True,
                             name=f"unload-{name}-{servable.version}").start()
        return bool(loaded or retired)

    def _load(self, name, version, path):
        key = (name, version)
        contents = fingerprint(path)
        if key in self._failed and self._failed[key] == contents:
            return None  # failed before and unchanged on disk
        with self._lock:
            self._status[name][version] = VersionStatus(version, LOADING)
        start = time.perf_counter()
        servable = None
        try:
            servable = self._new_servable(name, version, path)
            loaded = time.perf_counter()
            warmed = servable.warm_up() if self._warmup else 0
        except Exception as error:  # noqa: BLE001 - a bad version must not stop serving
            if servable is not None:
                servable.close(0)  # its batcher's threads
            self._failed[key] = contents
            message = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:500]}" \
                if str(error).strip() else type(error).__name__
            refused = isinstance(error, ContractError)
            with self._lock:
                self._status[name][version] = VersionStatus(
                    version, END, FAILED_PRECONDITION if refused else UNKNOWN, message)
            log.error("version refused" if refused else "version failed to load",
                      extra={"fields": {
                          "event": "version_refused" if refused else "version_load_failed",
                          "model": name, "version": version, "path": str(path),
                          "error": message}})
            return None
        self._failed.pop(key, None)
        with self._lock:
            self._status[name][version] = VersionStatus(version, AVAILABLE)
        log.info("version loaded", extra={"fields": {
            "event": "version_loaded", "model": name, "version": version, "path": str(path),
            "warmup_requests": warmed,
            "quantization": servable.metadata.get("quantization", "float32"),
            "load_ms": round(1000 * (time.perf_counter() - start), 1),
            "warmup_ms": round(1000 * (time.perf_counter() - loaded), 1)}})
        return servable

    def _unload(self, servable, timeout=None, forget=False):
        servable.close(timeout)
        trimmed = release_memory()
        with self._lock:
            statuses = self._status[servable.name]
            if forget:  # its directory is gone: no longer reported
                statuses.pop(servable.version, None)
            else:
                statuses[servable.version] = VersionStatus(servable.version, END)
        log.info("version unloaded", extra={"fields": {
            "event": "version_unloaded", "model": servable.name, "version": servable.version,
            "memory_trimmed": trimmed}})

    # ------------------------------------------------------------ polling

    def start_polling(self, interval, first=False, after_poll=None):
        """Polls on a daemon thread.

        Args:
            interval: seconds between polls (0: poll only once if `first`).
            first: poll immediately (the initial load) instead of after
                one interval.
            after_poll: optional `after_poll()` called after every poll.
        """

        def poll():
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - keep polling; the error is logged
                log.exception("poll failed", extra={"fields": {"event": "poll_failed"}})
            if after_poll is not None:
                after_poll()

        def loop():
            if first:
                poll()
            while interval > 0 and not self._stop.wait(interval):
                poll()

        self._thread = threading.Thread(target=loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout=None):
        """Stops polling and unloads every version (after in-flight work)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            servables = [s for served in self._served.values() for s in served.values()]
            for served in self._served.values():
                served.clear()
        for servable in servables:
            self._unload(servable, timeout)
