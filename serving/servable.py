"""One loaded SavedModel version: its signatures, defaults, warm-up, batcher
and in-flight count (`Servable`); the model manager (`models.py`) loads them.

    servable = Servable("de_en", 1, "exports/de_en/1", check=contract.check_signature_defs,
                        batching=BatchingOptions(max_batch_size=32))
    servable.warm_up()
    with servable.use():
        outputs = servable.run("serving_default", inputs, deadline)   # batched
        outputs = servable.predict("serving_default", inputs)         # alone
        signature, inputs = servable.translate_inputs(sentences, beam_size=4)  # Translate
"""

import contextlib
import ctypes
import gc
import json
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from keras_rnn.serving import batching as batching_lib
from keras_rnn.serving import contract, validation
from keras_rnn.serving.contract import METADATA_DEFAULTS, METADATA_FILE, WARMUP_FILE
from keras_rnn.serving.errors import ContractError, ServingError
from keras_rnn.serving.observability import log

MAX_WARMUP_RECORDS = 1000


class Servable:
    """One loaded SavedModel version.

    Args:
        name: model name.
        version: integer version.
        path: the version directory.
        check: optional `check(signature_defs)` -> list of problems, run on
            the parsed `saved_model.pb` before the graph is loaded
            (`contract.check_signature_defs`).
        batching: `BatchingOptions` of the version's batcher, or None to
            run each request alone.
        metrics: optional `observability.Metrics` (batch sizes, latencies,
            queue depth, sentences).

    Raises:
        ContractError: `check` found problems.

    Attributes:
        signature_defs: dict of signature key -> `SignatureDef` proto (with
            its `defaults` map), as stored in `saved_model.pb`.
        defaults: dict of signature key -> {input name: NumPy value}.
        batch_inputs: dict of signature key -> the input it is batched on
            (`validation.batch_input`), or None.
        metadata: the parsed `assets.extra/keras_rnn.json` ({} if absent).
        batcher: the version's `Batcher`, or None without batching.
    """

    def __init__(self, name, version, path, check=None, batching=None, metrics=None):
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
        self.batch_inputs = {key: validation.batch_input(sig)
                             for key, sig in self.signature_defs.items()}
        self.load_seconds = time.perf_counter() - start
        self._metrics = metrics
        self.batcher = None if batching is None else batching_lib.Batcher(
            self._run_batch, batching, on_batch=self._on_batch, on_queue=self._on_queue,
            name=f"batcher-{name}-{version}")
        self._inflight = 0
        self._cond = threading.Condition()

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

    def translate_inputs(self, sentences, alignments=False, **options):
        """The signature and inputs that answer a typed `Translate` request.

        `translate_with_alignments` for alignments; else `serving_default`
        when the options are its settings (the export's defaults, so such
        requests batch with plain ones), `translate_with_options` when they
        are not. An export from before `translate_with_options` takes the
        options on `serving_default`.

        Args:
            sentences: NumPy object array of UTF-8 `bytes`.
            alignments: whether alignments are asked for.
            **options: `beam_size`, `max_length`, `n_best`; 0 or None means
                the export's default.

        Returns:
            `(signature key, dict of every input name -> value)`.

        Raises:
            ServingError: FAILED_PRECONDITION when the version has no
                signature for the request, or no default for an input.
        """
        asked = {name: np.int32(value) for name, value in options.items() if value}
        signature = contract.ALIGNMENTS_SIGNATURE if alignments else contract.DEFAULT_SIGNATURE
        default_def = self.signature_defs.get(contract.DEFAULT_SIGNATURE)
        if not alignments and default_def is not None and \
                any(name not in default_def.inputs for name in asked):
            baked = {**self.defaults.get(contract.OPTIONS_SIGNATURE, {}), contract.N_BEST: 1}
            if any(baked.get(name) != value for name, value in asked.items()):
                signature = contract.OPTIONS_SIGNATURE
            else:
                asked = {}  # serving_default decodes with these settings
        if signature not in self.signature_defs:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, (
                f"model {self.name!r} version {self.version} has no {signature!r} signature"
                + (" (no alignments)" if alignments else "")))
        spec = self.signature_defs[signature].inputs
        inputs = dict(self.defaults[signature])
        inputs[contract.SENTENCES_INPUT] = sentences
        inputs.update(asked)
        if contract.N_BEST in spec:
            inputs.setdefault(contract.N_BEST, np.int32(1))
        missing = sorted(set(spec) - set(inputs))
        if missing:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, (
                f"model {self.name!r} has no default for {', '.join(missing)}; set them"))
        return signature, inputs

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

    def run(self, signature, inputs, deadline):
        """Runs a checked request: through the batcher when this version has
        one and the signature can be batched, else alone.

        Args:
            signature: signature key.
            inputs: dict of every input name -> NumPy array.
            deadline: `time.monotonic()` time the request must finish by (a
                request still queued then is dropped).

        Returns:
            dict of output name -> NumPy array (padding trimmed).

        A request of more decoder steps (sentences x beam_size x
        max_length) than the batcher's `max_chunk_cost` (0: no chunks) runs
        in chunks of that cost, interleaved with other requests
        (`batching.Batcher`).

        Raises:
            batching.DeadlineExceededError, batching.QueueFullError: as named.
        """
        batch_input = self.batch_inputs.get(signature)
        if self.batcher is None or batch_input is None:
            outputs = batching_lib.trim_padding(self.predict(signature, inputs))
            if self._metrics is not None:
                self._metrics.batch_size.labels(self.name).observe(
                    len(inputs[batch_input]) if batch_input else 1)
        else:
            scalars = tuple(sorted((k, v.item()) for k, v in inputs.items() if k != batch_input))
            beam_size, max_length, _ = validation.decoding_settings(self, inputs)
            chunk_cost = self.batcher.options.max_chunk_cost
            chunk_size = (max(1, chunk_cost // (beam_size * max_length))
                          if chunk_cost > 0 and beam_size and max_length else None)
            pending = self.batcher.submit((signature, scalars), list(inputs[batch_input]),
                                          deadline, chunk_size)
            outputs = pending.result(timeout=max(0.0, deadline - time.monotonic()))
        if batch_input is not None and self._metrics is not None:
            self._metrics.sentences.labels(self.name).inc(len(inputs[batch_input]))
        return outputs

    def _run_batch(self, key, sentences):
        signature, scalars = key
        inputs = {self.batch_inputs[signature]: sentences, **dict(scalars)}
        return self.predict(signature, validation.typed(self, signature, inputs))

    def _on_batch(self, key, size, seconds):
        if self._metrics is not None:
            self._metrics.batch_size.labels(self.name).observe(size)
            self._metrics.batch_latency.labels(self.name).observe(seconds)
        log.debug("batch", extra={"fields": {
            "event": "batch", "model": self.name, "version": self.version,
            "signature": key[0], "batch_size": size, "latency_ms": round(1000 * seconds, 2)}})

    def _on_queue(self, depth):
        if self._metrics is not None:
            self._metrics.queue_depth.labels(self.name, str(self.version)).set(depth)

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


def release_memory():
    """Hands the heap memory freed by an unloaded version back to the system.

    A loaded version's graph, functions and weights live in many small
    `malloc` blocks. Freed, glibc keeps them in its heap for reuse, so
    without this the server's resident memory stays at its high-water mark
    (two versions' worth, reached while a new version warms up beside the
    old one) after every hot reload. `gc.collect()` first frees the
    SavedModel's reference cycles, then glibc's `malloc_trim(0)` returns the
    free pages.

    Measured (`benchmarks/README.md`, Serving memory): loading and unloading
    the quick model in one process leaves 1,416 MiB resident without the
    trim and 825 MiB with it (699 MiB before the first load).

    Returns:
        Whether memory was trimmed (False where the C library is not glibc).
    """
    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # musl, macOS, Windows: no malloc_trim
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def _load_saved_model(tf, path):
    # Exports tokenize in the graph with TF Text's SentencePiece ops: register
    # them first (also where the tensorflow_text package itself does not
    # import, see training/tokenizer.py).
    from keras_rnn.training.tokenizer import register_tf_text_ops

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
