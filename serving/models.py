"""Loads, warms, serves and hot-reloads versioned SavedModels.

    manager = ModelManager({"de_en": "exports/de_en"}, policy="latest")
    manager.poll()                          # load what is on disk
    with manager.acquire("de_en") as servable:
        outputs = servable.predict(contract.DEFAULT_SIGNATURE, {"inputs": sentences})

Each model directory holds integer version subdirectories (TensorFlow
Serving's layout); anything else there (the exporter's hidden `.N.tmp-*`
directories, files) is ignored. Policy `latest` serves the highest version
that loaded; `all` serves every version.

Hot reload (`poll`, run by a thread every `poll_seconds`): a new version is
loaded and warmed up with its `assets.extra/tf_serving_warmup_requests`
before it is published; the version it replaces stops taking new requests
and is unloaded once its in-flight requests have finished, so no request
fails during the switch. A version that fails to load is logged, reported
as END with its error (`GetModelStatus`), and retried only when its
`saved_model.pb` changes; the versions already served keep serving.
"""

import contextlib
import dataclasses
import json
import logging
import os
import re
import threading
import time
from pathlib import Path

import numpy as np

from keras_rnn.serving import contract
from keras_rnn.serving.contract import METADATA_DEFAULTS
from keras_rnn.serving.errors import (  # noqa: F401 - raised here, re-exported
    ContractError, ModelNotFoundError, ModelUnavailableError, bounded)

log = logging.getLogger("keras_rnn.serving")

WARMUP_FILE = f"{contract.ASSETS_EXTRA}/{contract.WARMUP_FILE}"
METADATA_FILE = f"{contract.ASSETS_EXTRA}/{contract.METADATA_FILE}"
MAX_WARMUP_RECORDS = 1000

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


class Servable:
    """One loaded SavedModel version.

    Args:
        name: model name.
        version: integer version.
        path: the version directory.
        check: optional `check(signature_defs)` -> list of problems, run on
            the parsed `saved_model.pb` before the graph is loaded
            (`contract.check_signature_defs`).

    Raises:
        ContractError: `check` found problems.

    Attributes:
        signature_defs: dict of signature key -> `SignatureDef` proto (with
            its `defaults` map), as stored in `saved_model.pb`.
        defaults: dict of signature key -> {input name: NumPy value}.
        metadata: the parsed `assets.extra/keras_rnn.json` ({} if absent).
        batcher: the version's `Batcher` (set by the server), or None.
    """

    def __init__(self, name, version, path, check=None):
        import tensorflow as tf
        from tensorflow.python.saved_model import loader_impl

        self.name = name
        self.version = version
        self.path = Path(path)
        start = time.perf_counter()
        saved_model = loader_impl.parse_saved_model(str(self.path))
        self.signature_defs = dict(saved_model.meta_graphs[0].signature_def)
        self.signature_defs.pop("__saved_model_init_op", None)
        problems = check(self.signature_defs) if check is not None else []
        if problems:
            raise ContractError("does not keep the serving contract: " + "; ".join(problems))
        metadata_path = self.path / METADATA_FILE
        self.metadata = json.loads(metadata_path.read_text()) if metadata_path.exists() else {}
        self._loaded = _load_saved_model(tf, self.path)
        self._functions = {key: self._loaded.signatures[key] for key in self.signature_defs}
        self.defaults = {key: self._defaults(sig) for key, sig in self.signature_defs.items()}
        self.load_seconds = time.perf_counter() - start
        self.batcher = None
        self._inflight = 0
        self._cond = threading.Condition()
        self._closing = False

    def _defaults(self, signature_def):
        import tensorflow as tf

        values = {name: tf.make_ndarray(proto) for name, proto in signature_def.defaults.items()}
        for name, source in METADATA_DEFAULTS.items():
            if name in signature_def.inputs and name not in values:
                value = self.metadata.get(source) if isinstance(source, str) else source
                if value is not None:
                    values[name] = np.asarray(value, dtype=tf.as_dtype(
                        signature_def.inputs[name].dtype).as_numpy_dtype)
        return values

    def predict(self, signature, inputs):
        """Runs a signature in process.

        Args:
            signature: signature key.
            inputs: dict of input name -> NumPy array (all inputs present).

        Returns:
            dict of output name -> NumPy array.

        Raises:
            tf.errors.OpError: the graph rejected the input.
        """
        import tensorflow as tf

        function = self._functions[signature]
        spec = self.signature_defs[signature].inputs
        tensors = {name: tf.constant(value, dtype=tf.as_dtype(spec[name].dtype))
                   for name, value in inputs.items()}
        return {name: value.numpy() for name, value in function(**tensors).items()}

    def warm_up(self):
        """Replays `assets.extra/tf_serving_warmup_requests` (Predict logs).

        Returns:
            The number of requests replayed.

        Raises:
            ValueError: a record is not a PredictionLog with a predict_log,
                or names an unknown signature.
        """
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        path = self.path / WARMUP_FILE
        if not path.exists():
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS):
            log_proto = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if not log_proto.HasField("predict_log"):
                raise ValueError(f"{path}: warm-up record {count} is not a predict_log "
                                 "(only Predict warm-up requests are supported)")
            request = log_proto.predict_log.request
            signature = request.model_spec.signature_name or contract.DEFAULT_SIGNATURE
            if signature not in self.signature_defs:
                raise ValueError(f"{path}: warm-up record {count} names signature "
                                 f"{signature!r}; the model has {sorted(self.signature_defs)}")
            inputs = dict(self.defaults[signature])
            inputs.update({k: tf.make_ndarray(v) for k, v in request.inputs.items()})
            self.predict(signature, inputs)
            count += 1
        return count

    @contextlib.contextmanager
    def use(self):
        """Counts an in-flight request for the duration of the block."""
        with self._cond:
            self._inflight += 1
        try:
            yield self
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def close(self, timeout=None):
        """Waits for in-flight requests, then stops the batcher.

        Args:
            timeout: seconds to wait for in-flight requests (None: forever).
        """
        with self._cond:
            self._cond.wait_for(lambda: self._inflight == 0, timeout)
        if self.batcher is not None:
            self.batcher.stop(timeout)
        self._functions = {}
        self._loaded = None


def _load_saved_model(tf, path):
    # Exports tokenize in the graph with TF Text's SentencePiece ops: register
    # them first (also where the tensorflow_text package itself does not
    # import, see training/tokenizer.py).
    from keras_rnn.tokenizer import register_tf_text_ops

    try:
        register_tf_text_ops()
    except ImportError as missing:
        try:
            return tf.saved_model.load(str(path))
        except (RuntimeError, tf.errors.NotFoundError) as error:
            if "Op type not registered" not in str(error):
                raise
            raise RuntimeError(f"{path} uses TensorFlow Text ops: pip install tensorflow-text "
                               f"(the minor version of TensorFlow) ({missing})") from error
    return tf.saved_model.load(str(path))


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
    except FileNotFoundError:
        return versions
    for entry in entries:
        if re.fullmatch(r"\d+", entry.name) and entry.is_dir():
            path = Path(entry.path)
            if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
                versions[int(entry.name)] = path
    return versions


def _fingerprint(path):
    for name in ("saved_model.pb", "saved_model.pbtxt"):
        try:
            stat = (path / name).stat()
        except FileNotFoundError:
            continue
        return name, stat.st_size, stat.st_mtime_ns
    return None


class ModelManager:
    """Serves the versions of several models and reloads them from disk.

    Args:
        models: dict of model name -> model directory (version subdirs).
        policy: "latest" (serve the highest version that loads) or "all".
        on_load: optional `on_load(servable)` called after a version loaded
            and warmed up, before it is published (the server attaches its
            batcher there).
        warmup: replay warm-up requests before publishing a version.
        check: `check(signature_defs)` -> problems; a version with problems
            is refused (reported END with FAILED_PRECONDITION and its
            problems, logged once) and the served version stays. Default:
            the translator contract, `contract.check_signature_defs`.
    """

    def __init__(self, models, policy="latest", on_load=None, warmup=True,
                 check=contract.check_signature_defs):
        if policy not in ("latest", "all"):
            raise ValueError(f"version policy must be 'latest' or 'all'; got {policy!r}")
        self.models = {name: Path(path) for name, path in models.items()}
        self.policy = policy
        self._on_load = on_load
        self._warmup = warmup
        self._check = check
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._served = {name: {} for name in self.models}  # name -> {version: Servable}
        self._status = {name: {} for name in self.models}  # name -> {version: VersionStatus}
        self._failed = {}  # (name, version) -> fingerprint of the failed attempt
        self._stop = threading.Event()
        self._thread = None

    @classmethod
    def from_base_dir(cls, base_dir, **kwargs):
        """Every subdirectory of `base_dir` (not hidden) is a model."""
        base_dir = Path(base_dir)
        if not base_dir.is_dir():
            raise FileNotFoundError(f"model base directory {base_dir} does not exist")
        models = {p.name: p for p in sorted(base_dir.iterdir())
                  if p.is_dir() and not p.name.startswith(".")}
        if not models:
            raise FileNotFoundError(f"model base directory {base_dir} has no model directories")
        return cls(models, **kwargs)

    # ------------------------------------------------------------ queries

    def model_names(self):
        return sorted(self.models)

    def ready(self):
        """True when every model serves at least one version."""
        with self._lock:
            return all(self._served[name] for name in self.models)

    def served_versions(self, name):
        with self._lock:
            return sorted(self._served.get(name, {}))

    def status(self, name, version=None):
        """`VersionStatus`es of a model, newest first.

        Raises:
            ModelNotFoundError: unknown model, or `version` never seen.
        """
        with self._lock:
            if name not in self.models:
                raise ModelNotFoundError(f"model {bounded(name)} is not served "
                                         f"(served: {', '.join(self.model_names())})")
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
            ModelNotFoundError: unknown name, or empty with several models.
        """
        if not name:
            if len(self.models) == 1:
                return next(iter(self.models))
            raise ModelNotFoundError(
                f"model_spec.name is empty and the server serves {len(self.models)} "
                f"models ({', '.join(self.model_names())}); name one")
        if name not in self.models:
            raise ModelNotFoundError(f"model {bounded(name)} is not served "
                                     f"(served: {', '.join(self.model_names())})")
        return name

    @contextlib.contextmanager
    def acquire(self, name, version=None):
        """The `Servable` of a model (newest served version by default),
        held in flight for the duration of the block.

        Raises:
            ModelNotFoundError: unknown model or version, or none loaded.
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

    def poll(self):
        """Loads new versions, publishes them, unloads replaced ones.

        Returns:
            True if what is served changed.
        """
        with self._poll_lock:
            changed = False
            for name, model_dir in self.models.items():
                changed |= self._poll_model(name, model_dir)
            return changed

    def _poll_model(self, name, model_dir):
        on_disk = list_versions(model_dir)
        with self._lock:
            served = dict(self._served[name])
        wanted = sorted(on_disk, reverse=True)
        if self.policy == "latest":
            # The highest version that is newer than what is served; older
            # ones are never loaded while a newer one serves.
            newest = max(served, default=0)
            wanted = [v for v in wanted if v >= newest]
        loaded = {}
        for version in wanted:
            if version in served:
                if self.policy == "latest":
                    break
                continue
            servable = self._load(name, version, on_disk[version])
            if servable is not None:
                loaded[version] = servable
                if self.policy == "latest":
                    break
        with self._lock:
            current = self._served[name]
            current.update(loaded)
            if self.policy == "latest" and current:
                keep = {max(current)}
            else:
                keep = set(on_disk) & set(current) | set(loaded)
            if not keep and current:
                keep = set(current) & set(on_disk)
            retired = [current.pop(v) for v in list(current) if v not in keep]
            for servable in retired:
                self._status[name][servable.version] = VersionStatus(servable.version, UNLOADING)
        for version in loaded:
            log.info("version published", extra={"fields": {
                "event": "version_published", "model": name, "version": version}})
        for servable in retired:
            threading.Thread(target=self._unload, args=(servable,), daemon=True,
                             name=f"unload-{name}-{servable.version}").start()
        return bool(loaded or retired)

    def _load(self, name, version, path):
        key = (name, version)
        fingerprint = _fingerprint(path)
        if key in self._failed and self._failed[key] == fingerprint:
            return None  # failed before and unchanged on disk
        with self._lock:
            self._status[name][version] = VersionStatus(version, LOADING)
        start = time.perf_counter()
        try:
            servable = Servable(name, version, path, check=self._check)
            warmed = servable.warm_up() if self._warmup else 0
            if self._on_load is not None:
                self._on_load(servable)
        except Exception as error:  # noqa: BLE001 - a bad version must not stop serving
            self._failed[key] = fingerprint
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
            "load_ms": round(1000 * (time.perf_counter() - start), 1)}})
        return servable

    def _unload(self, servable, timeout=None):
        servable.close(timeout)
        with self._lock:
            self._status[servable.name][servable.version] = VersionStatus(servable.version, END)
        log.info("version unloaded", extra={"fields": {
            "event": "version_unloaded", "model": servable.name, "version": servable.version}})

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
