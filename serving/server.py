"""`keras-rnn serve`: a gRPC server for exported translators.

    keras-rnn serve --model-base-dir exports --port 8500 --metrics-port 9100
    keras-rnn serve --model de_en=exports/de_en --versions all --no-batching
    python -m keras_rnn serve --model-base-dir exports --port 0   # any free port

It speaks TensorFlow Serving's API, so stock clients work unchanged:
`tensorflow.serving.PredictionService` (`Predict`, `GetModelMetadata`;
`Classify`, `Regress`, `MultiInference` answer UNIMPLEMENTED) and
`tensorflow.serving.ModelService` (`GetModelStatus`), plus keras-rnn's own
typed `keras_rnn.serving.Translator` (`serving/protos/`), gRPC health
checking (`grpc.health.v1.Health`) and server reflection (`grpcurl -plaintext
127.0.0.1:8500 list`). Requests for one model version are merged into
batches (`serving/batching.py`); models hot-reload from disk
(`serving/models.py`); Prometheus metrics and JSON logs describe every
request. `serving/README.md` has the flags, status codes and metrics.

Python API:

    server = Server(ServerConfig(model_base_dir="exports", port=0))
    port = server.start()
    server.wait_until_ready(timeout=60)
    ...
    server.stop(grace=10)
"""

import dataclasses
import json
import logging
import signal
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from keras_rnn.serving import batching
from keras_rnn.serving import models as models_lib
from keras_rnn.serving import translator_pb2_grpc
from keras_rnn.serving.config import ServerConfig

# A call without a deadline reports a time_remaining() of centuries, which
# threading waits cannot take (OverflowError); beyond this it means none.
NO_DEADLINE_S = 365 * 24 * 3600.0

log = logging.getLogger("keras_rnn.serving")

DEFAULT_SIGNATURE = "serving_default"
ALIGNMENTS_SIGNATURE = "translate_with_alignments"
SENTENCES_INPUT = "inputs"
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
TRANSLATOR_SERVICE = "keras_rnn.serving.Translator"
SERVICES = (PREDICTION_SERVICE, MODEL_SERVICE, TRANSLATOR_SERVICE)
# Scalar inputs checked against keras_rnn.json before a request is queued:
# name -> (low, metadata key of the high bound or another input's name).
SCALAR_RANGES = {"beam_size": (1, "max_beam_size"), "n_best": (1, "beam_size"),
                 "max_length": (1, "max_length_limit")}


class ServingError(Exception):
    """An RPC error with its gRPC status code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- logging


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, event, message and the
    record's `fields` (model, version, method, code, latency_ms, ...)."""

    def format(self, record):
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_logging(level="INFO", stream=None):
    """Sends the `keras_rnn.serving` logger to `stream` as JSON lines.

    Args:
        level: logging level name.
        stream: default `sys.stderr`.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


# ---------------------------------------------------------------- metrics


class Metrics:
    """The server's Prometheus metrics, in a registry of its own.

    Attributes:
        registry: the `prometheus_client.CollectorRegistry`.
    """

    def __init__(self):
        import prometheus_client as prom

        self.registry = registry = prom.CollectorRegistry()
        self.requests = prom.Counter(
            "keras_rnn_requests", "RPCs answered, by method, model and status code.",
            ["method", "model", "code"], registry=registry)
        self.errors = prom.Counter(
            "keras_rnn_errors", "RPCs answered with a status other than OK.",
            ["method", "model", "code"], registry=registry)
        self.latency = prom.Histogram(
            "keras_rnn_request_latency_seconds", "RPC latency, by method and model.",
            ["method", "model"], registry=registry,
            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.batch_size = prom.Histogram(
            "keras_rnn_batch_size", "Sentences per batch run, by model.", ["model"],
            registry=registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_latency = prom.Histogram(
            "keras_rnn_batch_latency_seconds", "Time to run one batch, by model.",
            ["model"], registry=registry,
            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.queue_depth = prom.Gauge(
            "keras_rnn_queue_depth", "Sentences waiting for a batch, by model and version.",
            ["model", "version"], registry=registry)
        self.sentences = prom.Counter(
            "keras_rnn_sentences", "Sentences translated, by model.", ["model"],
            registry=registry)
        self._http = None

    def serve(self, host, port):
        """Starts the HTTP endpoint (`/metrics`); returns its port."""
        import prometheus_client as prom

        self._http, _ = prom.start_http_server(port, addr=host, registry=self.registry)
        return self._http.server_port

    def close(self):
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


# ---------------------------------------------------------------- errors


_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def status_of(error):
    """The gRPC status code and message for an exception raised serving."""
    import tensorflow as tf

    if isinstance(error, ServingError):
        return error.code, str(error)
    if isinstance(error, models_lib.ModelNotFoundError):
        return grpc.StatusCode.NOT_FOUND, str(error)
    if isinstance(error, models_lib.ModelUnavailableError):
        return grpc.StatusCode.UNAVAILABLE, str(error)
    if isinstance(error, batching.QueueFullError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(error)
    if isinstance(error, batching.DeadlineExceededError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(error)
    if isinstance(error, batching.BatcherStoppedError):
        return grpc.StatusCode.UNAVAILABLE, str(error)
    if isinstance(error, tf.errors.OpError):
        # TensorFlow's error codes are gRPC's. Keep the assertion message,
        # not the graph dump that follows it.
        message = error.message.strip()
        for line in message.splitlines():
            if "assertion failed:" in line or "Condition" in line:
                message = line.strip()
                break
        else:
            message = message.splitlines()[0] if message else type(error).__name__
        code = _STATUS_BY_NUMBER.get(error.error_code, grpc.StatusCode.INTERNAL)
        return code, message[:1000]
    return grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}: {error}"


class _BadMessage:
    """Stands for a request that could not be parsed."""

    def __init__(self, error):
        self.error = error


def _parser(message_class):
    def parse(data):
        try:
            return message_class.FromString(data)
        except Exception as error:  # noqa: BLE001 - answered as INVALID_ARGUMENT
            return _BadMessage(error)
    return parse


# ---------------------------------------------------------------- server


class Server:
    """The gRPC server: services, model manager, batchers, metrics.

    Args:
        config: a `ServerConfig`.
    """

    def __init__(self, config):
        if not config.model_base_dir and not config.models:
            raise ValueError("name the models to serve: model_base_dir or models "
                             "(--model-base-dir DIR or --model NAME=PATH)")
        if bool(config.tls_cert) != bool(config.tls_key):
            raise ValueError("TLS needs both a certificate and a key "
                             "(--tls-cert and --tls-key)")
        if config.tls_client_ca and not config.tls_cert:
            raise ValueError("mutual TLS (--tls-client-ca) needs server TLS "
                             "(--tls-cert and --tls-key)")
        self.config = config
        import tensorflow as tf

        # Process-wide; before any signature runs.
        tf.config.optimizer.set_experimental_options(
            {"disable_meta_optimizer": not config.graph_optimizations})
        models = {}
        if config.model_base_dir:
            base = Path(config.model_base_dir)
            if not base.is_dir():
                raise FileNotFoundError(f"model base directory {base} does not exist")
            models.update({p.name: p for p in sorted(base.iterdir())
                           if p.is_dir() and not p.name.startswith(".")})
        for name, path in config.models.items():
            if not Path(path).is_dir():
                raise FileNotFoundError(f"model {name!r}: directory {path} does not exist")
            models[name] = Path(path)
        if not models:
            raise FileNotFoundError(f"no model directories in {config.model_base_dir}")
        self.metrics = Metrics()
        self.manager = models_lib.ModelManager(
            models, policy=config.versions, on_load=self._attach,
            warmup=config.warmup)
        self.port = None
        self.metrics_port = None
        self._grpc = None
        self._health = None
        self._ready = threading.Event()
        self._started = None
        self.ready_seconds = None

    # ------------------------------------------------------------ lifecycle

    def start(self):
        """Binds the port, starts the services and begins loading models.

        Returns:
            The bound port (useful with port 0).

        Raises:
            RuntimeError: the port could not be bound.
        """
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection

        self._started = time.perf_counter()
        config = self.config
        options = [("grpc.max_receive_message_length", config.max_message_bytes),
                   ("grpc.max_send_message_length", config.max_message_bytes),
                   ("grpc.so_reuseport", 0)]
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.workers,
                                       thread_name_prefix="grpc-handler"),
            options=options, maximum_concurrent_rpcs=config.max_concurrent_rpcs)
        self._grpc.add_generic_rpc_handlers(self._handlers())
        self._health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        for service in ("",) + SERVICES:
            self._health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        reflection.enable_server_reflection(
            SERVICES + (health.SERVICE_NAME, reflection.SERVICE_NAME), self._grpc)
        address = f"{config.host}:{config.port}"
        if config.tls_cert:
            credentials = grpc.ssl_server_credentials(
                [(Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())],
                root_certificates=(Path(config.tls_client_ca).read_bytes()
                                   if config.tls_client_ca else None),
                require_client_auth=bool(config.tls_client_ca))
            port = self._grpc.add_secure_port(address, credentials)
        else:
            port = self._grpc.add_insecure_port(address)
        if not port:
            raise RuntimeError(f"could not listen on {address} (in use?)")
        self.port = port
        self._grpc.start()
        if config.metrics_port:
            self.metrics_port = self.metrics.serve(config.metrics_host, config.metrics_port)
        self.manager.start_polling(config.poll_seconds, first=True,
                                   after_poll=self._update_health)
        log.info("server started", extra={"fields": {
            "event": "server_started", "address": f"{config.host}:{port}",
            "tls": bool(config.tls_cert), "mutual_tls": bool(config.tls_client_ca),
            "metrics_port": self.metrics_port, "models": self.manager.model_names()}})
        return port

    def _update_health(self):
        from grpc_health.v1 import health_pb2

        if self.manager.ready() and not self._ready.is_set():
            for service in ("",) + SERVICES:
                self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
            self.ready_seconds = time.perf_counter() - self._started
            self._ready.set()
            log.info("server ready", extra={"fields": {
                "event": "server_ready", "ready_ms": round(1000 * self.ready_seconds, 1),
                "models": {n: self.manager.served_versions(n)
                           for n in self.manager.model_names()}}})

    def wait_until_ready(self, timeout=None):
        """Blocks until every model serves a version.

        Args:
            timeout: seconds (None: forever).

        Raises:
            TimeoutError: not ready in time; the message has each model's
                version states and load errors.
        """
        if not self._ready.wait(timeout):
            states = {name: [dataclasses.asdict(s) for s in self.manager.status(name)]
                      for name in self.manager.model_names()}
            raise TimeoutError(f"models not ready after {timeout} s: {states}")

    def ready_message(self):
        """'serving NAME version V[, ...] on HOST:PORT'."""
        served = ", ".join(
            f"{name} version{'s' if len(v) > 1 else ''} {','.join(map(str, v))}"
            for name in self.manager.model_names()
            for v in [self.manager.served_versions(name)])
        return f"serving {served} on {self.config.host}:{self.port}"

    def stop(self, grace=10.0):
        """Graceful shutdown: health says NOT_SERVING, new RPCs are refused,
        in-flight RPCs get `grace` seconds to finish, then models unload.

        Args:
            grace: seconds in-flight RPCs may still take.
        """
        if self._grpc is None:
            return
        log.info("server stopping", extra={"fields": {"event": "server_stopping",
                                                      "grace_s": grace}})
        self._health.enter_graceful_shutdown()
        self._grpc.stop(grace).wait()
        self.manager.stop(timeout=grace)
        self.metrics.close()
        self._grpc = None
        log.info("server stopped", extra={"fields": {"event": "server_stopped"}})

    # ------------------------------------------------------------ batching

    def _attach(self, servable):
        """Called for each loaded version: finds the batchable signatures and
        gives the version a batcher."""
        servable.batch_inputs = {key: _batch_input(sig)
                                 for key, sig in servable.signature_defs.items()}
        if not self.config.batching:
            return
        config = self.config
        name, version = servable.name, str(servable.version)

        def run(key, sentences):
            signature, scalars = key
            inputs = {servable.batch_inputs[signature]: sentences, **dict(scalars)}
            return servable.predict(signature, _typed(servable, signature, inputs))

        def on_batch(key, size, seconds):
            self.metrics.batch_size.labels(name).observe(size)
            self.metrics.batch_latency.labels(name).observe(seconds)
            log.debug("batch", extra={"fields": {
                "event": "batch", "model": name, "version": servable.version,
                "signature": key[0], "batch_size": size,
                "latency_ms": round(1000 * seconds, 2)}})

        servable.batcher = batching.Batcher(
            run, batching.BatchingOptions(
                max_batch_size=config.max_batch_size,
                batch_timeout_s=config.batch_timeout_ms / 1000,
                max_enqueued_batches=config.max_enqueued_batches,
                max_queued_sentences=config.max_queued_sentences,
                num_batch_threads=config.num_batch_threads),
            on_batch=on_batch,
            on_queue=lambda depth: self.metrics.queue_depth.labels(name, version).set(depth),
            name=f"batcher-{name}-{version}")

    def run(self, servable, signature, inputs, context):
        """Runs a validated request, batched when the signature allows it.

        Args:
            servable: the `Servable` (held in flight by the caller).
            signature: signature key.
            inputs: dict of every input name -> NumPy array.
            context: the gRPC context (its deadline is honoured).

        Returns:
            dict of output name -> NumPy array (padding trimmed).
        """
        remaining = context.time_remaining() if context is not None else None
        if remaining is not None and remaining > NO_DEADLINE_S:
            remaining = None  # no deadline (stock clients' default): gRPC says ~forever
        if remaining is not None and remaining <= 0:
            raise batching.DeadlineExceededError("the deadline passed before the request ran")
        batch_input = servable.batch_inputs.get(signature)
        if servable.batcher is None or batch_input is None:
            outputs = batching.trim_padding(servable.predict(signature, inputs))
            self.metrics.batch_size.labels(servable.name).observe(len(inputs[batch_input])
                                                                  if batch_input else 1)
        else:
            scalars = tuple(sorted((k, v.item()) for k, v in inputs.items() if k != batch_input))
            deadline = time.monotonic() + remaining if remaining is not None else None
            pending = servable.batcher.submit((signature, scalars),
                                              list(inputs[batch_input]), deadline)
            outputs = pending.result(timeout=remaining)
        if batch_input is not None:
            self.metrics.sentences.labels(servable.name).inc(len(inputs[batch_input]))
        return outputs

    # ------------------------------------------------------------ validation

    def check_inputs(self, servable, signature, request_inputs):
        """Turns request TensorProtos into complete, checked NumPy inputs.

        Args:
            servable: the `Servable`.
            signature: signature key (known to exist).
            request_inputs: map of input name -> `TensorProto`.

        Returns:
            dict of every input name -> NumPy array.

        Raises:
            ServingError: INVALID_ARGUMENT naming the bad input.
        """
        import tensorflow as tf

        invalid = grpc.StatusCode.INVALID_ARGUMENT
        spec = servable.signature_defs[signature].inputs
        inputs = {}
        for name, proto in request_inputs.items():
            if name not in spec:
                raise ServingError(invalid, f"signature {signature!r} has no input {name!r} "
                                            f"(inputs: {', '.join(sorted(spec))})")
            expected = spec[name]
            if proto.dtype != expected.dtype:
                raise ServingError(invalid, (
                    f"input {name!r} must be {tf.as_dtype(expected.dtype).name}; got "
                    f"{_dtype_name(proto.dtype)}"))
            try:
                value = tf.make_ndarray(proto)
            except Exception as error:  # noqa: BLE001 - malformed tensor from the client
                raise ServingError(invalid, f"input {name!r} is not a valid tensor: "
                                            f"{type(error).__name__}: {error}") from None
            _check_shape(name, value.shape, expected.tensor_shape)
            inputs[name] = value
        for name, value in servable.defaults[signature].items():
            inputs.setdefault(name, value)
        missing = sorted(set(spec) - set(inputs))
        if missing:
            raise ServingError(invalid, f"missing input(s) {', '.join(missing)} of signature "
                                        f"{signature!r} (they have no default)")
        batch_input = servable.batch_inputs.get(signature)
        if batch_input is not None and spec[batch_input].dtype == tf.string.as_datatype_enum:
            self.check_sentences(inputs[batch_input])
        self.check_scalars(servable, inputs)
        return inputs

    def check_sentences(self, sentences):
        """Checks batch size, UTF-8 and length of raw sentences (bytes).

        Raises:
            ServingError: INVALID_ARGUMENT naming the sentence.
        """
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        if len(sentences) == 0:
            raise ServingError(invalid, "the batch of sentences is empty")
        limit = self.config.max_request_sentences
        if len(sentences) > limit:
            raise ServingError(invalid, f"{len(sentences)} sentences in one request; the "
                                        f"limit is {limit} (max_request_sentences)")
        for index, sentence in enumerate(sentences):
            try:
                text = sentence.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ServingError(invalid, f"sentence {index} is not valid UTF-8 "
                                            f"({error.reason} at byte {error.start})") from None
            if len(text) > self.config.max_sentence_chars:
                raise ServingError(invalid, (
                    f"sentence {index} has {len(text)} characters; the limit is "
                    f"{self.config.max_sentence_chars} (max_sentence_chars)"))

    @staticmethod
    def check_scalars(servable, inputs):
        """Checks beam_size, n_best and max_length against the export's
        limits in keras_rnn.json (the graph checks them too).

        Raises:
            ServingError: INVALID_ARGUMENT naming the input and its range.
        """
        for name, (low, bound) in SCALAR_RANGES.items():
            if name not in inputs or inputs[name].shape != ():
                continue
            high = inputs[bound] if bound in inputs else servable.metadata.get(bound)
            value = int(inputs[name])
            if value < low or (high is not None and value > int(high)):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"{name}={value} is outside [{low}, {int(high) if high is not None else ''}]"
                    f" ({bound})"))

    # ------------------------------------------------------------ RPC plumbing

    def _handlers(self):
        from google.protobuf import message_factory
        from tensorflow_serving.apis import model_service_pb2, prediction_service_pb2

        from keras_rnn.serving import translator_pb2

        services = {
            PREDICTION_SERVICE: (prediction_service_pb2, PredictionServicer(self)),
            MODEL_SERVICE: (model_service_pb2, ModelServicer(self)),
            TRANSLATOR_SERVICE: (translator_pb2, TranslatorServicer(self)),
        }
        handlers = []
        for full_name, (module, servicer) in services.items():
            descriptor = module.DESCRIPTOR.services_by_name[full_name.rsplit(".", 1)[1]]
            methods = {}
            for method in descriptor.methods:
                request_class = message_factory.GetMessageClass(method.input_type)
                response_class = message_factory.GetMessageClass(method.output_type)
                methods[method.name] = grpc.unary_unary_rpc_method_handler(
                    self._wrap(f"{full_name}/{method.name}", getattr(servicer, method.name)),
                    request_deserializer=_parser(request_class),
                    response_serializer=response_class.SerializeToString)
            handlers.append(grpc.method_handlers_generic_handler(full_name, methods))
        return handlers

    def _wrap(self, method, handler):
        """Adds status mapping, metrics and one JSON log line to a handler."""
        short = method.rsplit("/", 1)[1]

        def call(request, context):
            start = time.perf_counter()
            info = {"model": ""}
            code, message = grpc.StatusCode.OK, ""
            try:
                if isinstance(request, _BadMessage):
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"the request is not a valid {short} request message: "
                                       f"{request.error}")
                return handler(request, context, info)
            except Exception as error:  # noqa: BLE001 - every error becomes a status
                code, message = status_of(error)
                if code == grpc.StatusCode.INTERNAL:
                    log.exception("internal error", extra={"fields": {
                        "event": "internal_error", "method": short, **info}})
                context.abort(code, message)
            finally:
                seconds = time.perf_counter() - start
                model = info.get("model", "")
                self.metrics.requests.labels(short, model, code.name).inc()
                self.metrics.latency.labels(short, model).observe(seconds)
                if code != grpc.StatusCode.OK:
                    self.metrics.errors.labels(short, model, code.name).inc()
                log.info("request", extra={"fields": {
                    "event": "request", "method": short, **info, "code": code.name,
                    "latency_ms": round(1000 * seconds, 2),
                    **({"error": message} if message else {})}})

        return call


def _batch_input(signature_def):
    """The input a signature can be batched on: the only input of shape
    `[-1]` when every other input is a scalar; None otherwise."""
    vectors, scalars = [], []
    for name, info in signature_def.inputs.items():
        dims = [d.size for d in info.tensor_shape.dim]
        if info.tensor_shape.unknown_rank:
            return None
        if dims == [-1]:
            vectors.append(name)
        elif dims == []:
            scalars.append(name)
        else:
            return None
    return vectors[0] if len(vectors) == 1 else None


def _typed(servable, signature, inputs):
    import tensorflow as tf

    spec = servable.signature_defs[signature].inputs
    return {k: np.asarray(v, dtype=tf.as_dtype(spec[k].dtype).as_numpy_dtype)
            if spec[k].dtype != tf.string.as_datatype_enum else v
            for k, v in inputs.items()}


def _dtype_name(enum):
    import tensorflow as tf

    try:
        return tf.as_dtype(enum).name
    except TypeError:
        return f"dtype enum {enum}"


def _check_shape(name, shape, expected):
    if expected.unknown_rank:
        return
    dims = [d.size for d in expected.dim]
    if len(shape) != len(dims) or any(d not in (-1, n) for d, n in zip(dims, shape)):
        want = "[" + ", ".join("?" if d == -1 else str(d) for d in dims) + "]"
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {name!r} must have shape {want}; got {list(shape)}")


def _version_of(model_spec):
    """The requested version, or None; version labels are not supported."""
    if model_spec.HasField("version_label"):
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, (
            f"version labels are not supported (got {model_spec.version_label!r}); "
            "ask for model_spec.version"))
    return model_spec.version.value if model_spec.HasField("version") else None


# ---------------------------------------------------------------- services


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService: Predict and GetModelMetadata.

    Handlers take `(request, context, info)`; `info` collects log fields.
    """

    def __init__(self, server):
        self.server = server

    def Predict(self, request, context, info):  # noqa: N802 - gRPC method name
        from tensorflow_serving.apis import predict_pb2

        server = self.server
        version = _version_of(request.model_spec)
        name = server.manager.resolve_name(request.model_spec.name)
        info["model"] = name
        with server.manager.acquire(name, version) as servable:
            info["version"] = servable.version
            signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
            info["signature"] = signature
            if signature not in servable.signature_defs:
                raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, (
                    f"Serving signature key {signature!r} not found (signatures: "
                    f"{', '.join(sorted(servable.signature_defs))})"))
            outputs_spec = servable.signature_defs[signature].outputs
            wanted = list(request.output_filter) or list(outputs_spec)
            unknown = sorted(set(wanted) - set(outputs_spec))
            if unknown:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"output_filter names unknown output(s) {', '.join(unknown)} (outputs of "
                    f"{signature!r}: {', '.join(sorted(outputs_spec))})"))
            inputs = server.check_inputs(servable, signature, request.inputs)
            batch_input = servable.batch_inputs.get(signature)
            if batch_input:
                info["sentences"] = len(inputs[batch_input])
            outputs = server.run(servable, signature, inputs, context)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = signature
            import tensorflow as tf

            for key in wanted:
                response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
            return response

    def GetModelMetadata(self, request, context, info):  # noqa: N802
        from tensorflow_serving.apis import get_model_metadata_pb2

        server = self.server
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                f"metadata_field must be ['signature_def'] (the only metadata served); "
                f"got {fields}"))
        version = _version_of(request.model_spec)
        name = server.manager.resolve_name(request.model_spec.name)
        info["model"] = name
        with server.manager.acquire(name, version) as servable:
            info["version"] = servable.version
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, signature_def in servable.signature_defs.items():
                signature_map.signature_def[key].CopyFrom(signature_def)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(signature_map)
            return response

    def Classify(self, request, context, info):  # noqa: N802
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "Classify is not supported: translators have Predict signatures")

    def Regress(self, request, context, info):  # noqa: N802
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "Regress is not supported: translators have Predict signatures")

    def MultiInference(self, request, context, info):  # noqa: N802
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "MultiInference is not supported: use Predict")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: GetModelStatus."""

    def __init__(self, server):
        self.server = server

    def GetModelStatus(self, request, context, info):  # noqa: N802
        from tensorflow_serving.apis import get_model_status_pb2

        manager = self.server.manager
        version = _version_of(request.model_spec)
        name = manager.resolve_name(request.model_spec.name)
        info["model"] = name
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in manager.status(name, version):
            entry = response.model_version_status.add()
            entry.version = status.version
            entry.state = status.state
            entry.status.error_code = status.error_code
            entry.status.error_message = status.error_message
        return response

    def HandleReloadConfigRequest(self, request, context, info):  # noqa: N802
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, (
            "model config reloads are not supported: models are found on disk "
            "(--model-base-dir / --model) and new versions are loaded by polling"))


class TranslatorServicer(translator_pb2_grpc.TranslatorServicer):
    """keras_rnn.serving.Translator: typed translation on top of the
    `serving_default` / `translate_with_alignments` signatures."""

    def __init__(self, server):
        self.server = server

    def Translate(self, request, context, info):  # noqa: N802
        from keras_rnn.serving import translator_pb2

        server = self.server
        name = server.manager.resolve_name(request.model_name)
        info["model"] = name
        version = request.version if request.HasField("version") else None
        signature = ALIGNMENTS_SIGNATURE if request.alignments else DEFAULT_SIGNATURE
        with server.manager.acquire(name, version) as servable:
            info["version"] = servable.version
            info["signature"] = signature
            if signature not in servable.signature_defs:
                raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, (
                    f"model {name!r} version {servable.version} has no {signature!r} "
                    "signature" + (" (no alignments)" if request.alignments else "")))
            sentences = np.array([s.encode("utf-8") for s in request.sentences], dtype=object)
            info["sentences"] = len(sentences)
            server.check_sentences(sentences)
            inputs = dict(servable.defaults[signature])
            inputs[SENTENCES_INPUT] = sentences
            for field in ("beam_size", "n_best", "max_length"):
                value = getattr(request, field)
                if value:
                    inputs[field] = np.int32(value)
            inputs.setdefault("n_best", np.int32(1))
            missing = sorted(set(servable.signature_defs[signature].inputs) - set(inputs))
            if missing:
                raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, (
                    f"model {name!r} has no default for {', '.join(missing)}; set them"))
            server.check_scalars(servable, inputs)
            outputs = server.run(servable, signature, _typed(servable, signature, inputs),
                                 context)
            response = translator_pb2.TranslateResponse(model_name=name,
                                                        version=servable.version)
            for i, source in enumerate(request.sentences):
                translation = response.translations.add(source=source)
                source_tokens = []
                if request.alignments:
                    source_tokens = [p.decode("utf-8", "replace")
                                     for p in outputs["source_pieces"][i] if p]
                    translation.source_tokens.extend(source_tokens)
                for k, text in enumerate(outputs["translations"][i]):
                    hypothesis = translation.hypotheses.add(
                        text=text.decode("utf-8", "replace"),
                        score=float(outputs["scores"][i, k]),
                        length=int(outputs["lengths"][i, k]))
                    if request.alignments:
                        target = [p.decode("utf-8", "replace")
                                  for p in outputs["target_pieces"][i, k] if p]
                        hypothesis.target_tokens.extend(target)
                        weights = outputs["alignments"][i, k, :len(target), :len(source_tokens)]
                        hypothesis.alignment.target_length = len(target)
                        hypothesis.alignment.source_length = len(source_tokens)
                        hypothesis.alignment.weights.extend(weights.ravel().tolist())
            return response


# ---------------------------------------------------------------- CLI


def config_from_args(args):
    """A `ServerConfig` from parsed `add_serve_arguments` flags.

    Raises:
        ValueError: a --model flag is not NAME=PATH.
    """
    models = {}
    for item in args.model:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--model {item!r}: expected NAME=PATH")
        models[name] = path
    return ServerConfig(
        model_base_dir=args.model_base_dir, models=models, versions=args.versions,
        poll_seconds=args.poll_seconds, host=args.host, port=args.port,
        batching=not args.no_batching, max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
        max_enqueued_batches=args.max_enqueued_batches,
        max_queued_sentences=args.max_queued_sentences,
        num_batch_threads=args.num_batch_threads,
        max_request_sentences=args.max_request_sentences,
        max_sentence_chars=args.max_sentence_chars,
        max_message_bytes=args.max_message_bytes, workers=args.workers,
        max_concurrent_rpcs=args.max_concurrent_rpcs, metrics_port=args.metrics_port,
        metrics_host=args.metrics_host, tls_cert=args.tls_cert, tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca, warmup=not args.no_warmup,
        graph_optimizations=args.graph_optimizations)


def run_serve(args):
    """Runs the server until SIGTERM or SIGINT (`keras-rnn serve`).

    Prints `serving NAME version V on HOST:PORT` to stdout once every model
    serves, then shuts down gracefully on a signal.

    Args:
        args: parsed `add_serve_arguments` flags.

    Returns:
        The exit status (0).
    """
    setup_logging(args.log_level)
    server = Server(config_from_args(args))
    stop = threading.Event()

    def on_signal(signum, frame):
        log.info("signal", extra={"fields": {"event": "signal",
                                             "signal": signal.Signals(signum).name}})
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        while not server._ready.wait(0.2):
            if stop.is_set():
                break
        if server._ready.is_set():
            print(server.ready_message(), flush=True)
            if server.metrics_port:
                print(f"metrics on http://{args.metrics_host}:{server.metrics_port}/metrics",
                      flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop(args.grace_seconds)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
