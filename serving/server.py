"""`keras-rnn serve`: a gRPC server for exported translators.

    keras-rnn serve --model-base-dir exports --port 8500 --metrics-port 9100
    keras-rnn serve --model de_en=exports/de_en --versions all --no-batching
    python -m keras_rnn.cli serve --model-base-dir exports --port 0   # any free port

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

This module runs the server (ports, TLS, health, reflection, batchers, the
CLI); the services are in `servicers.py`, what every RPC goes through
(status codes, metrics, log lines) in `interceptor.py`, request checks in
`validation.py`, logs and metrics in `observability.py`, and the model
contract (signature keys, tensor names) in `contract.py`.

Python API:

    server = Server(ServerConfig(model_base_dir="exports", port=0))
    port = server.start()
    server.wait_until_ready(timeout=60)
    ...
    server.stop(grace=10)
"""

import dataclasses
import signal
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from keras_rnn.serving import batching, contract, translator_pb2_grpc, validation
from keras_rnn.serving import models as models_lib
from keras_rnn.serving.config import ServerConfig, parse_version_labels
from keras_rnn.serving.errors import ServingError, status_of  # noqa: F401 - re-exported
from keras_rnn.serving.interceptor import ServingInterceptor, current_deadline
from keras_rnn.serving.observability import Metrics, log, setup_logging  # noqa: F401
from keras_rnn.serving.servicers import ModelServicer, PredictionServicer, TranslatorServicer

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
TRANSLATOR_SERVICE = "keras_rnn.serving.Translator"
SERVICES = (PREDICTION_SERVICE, MODEL_SERVICE, TRANSLATOR_SERVICE)
# Seconds a stopping server keeps answering after its health says NOT_SERVING
# (`serve --drain-seconds`). 0: SIGTERM exits within a second of the last
# in-flight request; Kubernetes' preStop sleep does the draining there, and
# `TranslatorClient` retries the calls a stopping server refuses or cancels.
DRAIN_S = 0.0


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
        # The base directory may be missing or empty: it is polled until a
        # model folder with a complete version appears (as TensorFlow Serving).
        models = {}
        for name, path in config.models.items():
            if not Path(path).is_dir():
                raise FileNotFoundError(f"model {name!r}: directory {path} does not exist")
            models[name] = Path(path)
        self.metrics = Metrics()
        self.manager = models_lib.ModelManager(
            models, policy=config.versions, on_load=self._attach,
            warmup=config.warmup, base_dir=config.model_base_dir)
        self._serving = False
        self._stopping = threading.Event()
        self._drain_over = threading.Event()
        self.port = None
        self.metrics_port = None
        self.rest_api_port = None
        self._rest = None
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
        self._interceptor = ServingInterceptor(
            SERVICES, self.metrics, max_request_seconds=config.max_request_seconds,
            max_message_bytes=config.max_message_bytes)
        self._prediction, self._model = PredictionServicer(self), ModelServicer(self)
        options = [("grpc.max_receive_message_length", config.max_message_bytes),
                   ("grpc.max_send_message_length", config.max_message_bytes),
                   ("grpc.so_reuseport", 0)]
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.workers,
                                       thread_name_prefix="grpc-handler"),
            options=options, maximum_concurrent_rpcs=config.max_concurrent_rpcs,
            interceptors=[self._interceptor])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            self._prediction, self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(self._model, self._grpc)
        translator_pb2_grpc.add_TranslatorServicer_to_server(TranslatorServicer(self),
                                                             self._grpc)
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
        if config.rest_api_port:
            from keras_rnn.serving.rest import RestApi, RestServer

            self._rest = RestServer(
                RestApi(self, self._interceptor, self._prediction, self._model),
                config.host, config.rest_api_port, tls_cert=config.tls_cert,
                tls_key=config.tls_key, tls_client_ca=config.tls_client_ca)
            self.rest_api_port = self._rest.port
        self.manager.start_polling(config.poll_seconds, first=True,
                                   after_poll=self._update_health)
        log.info("server started", extra={"fields": {
            "event": "server_started", "address": f"{config.host}:{port}",
            "tls": bool(config.tls_cert), "mutual_tls": bool(config.tls_client_ca),
            "metrics_port": self.metrics_port, "rest_api_port": self.rest_api_port,
            "models": self.manager.model_names()}})
        return port

    def _update_health(self):
        from grpc_health.v1 import health_pb2

        ready = self.manager.ready()
        if ready != self._serving:
            # SERVING while every model serves a version, NOT_SERVING while
            # none was found yet or one has no version (logged per change).
            self._serving = ready
            status = (health_pb2.HealthCheckResponse.SERVING if ready
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for service in ("",) + SERVICES:
                self._health.set(service, status)
            if self._ready.is_set():
                log.info("health", extra={"fields": {
                    "event": "health", "status": "SERVING" if ready else "NOT_SERVING",
                    "models": {n: self.manager.served_versions(n)
                               for n in self.manager.model_names()}}})
        if ready and not self._ready.is_set():
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

    def stop(self, grace=10.0, drain=DRAIN_S):
        """Graceful shutdown: health says NOT_SERVING, new RPCs are refused,
        in-flight RPCs get `grace` seconds to finish, then models unload.

        Between NOT_SERVING and refusing calls the server still answers for
        `drain` seconds (at most `grace`): clients that watch health (ours
        do, and Kubernetes' readiness probe) move to other servers first,
        instead of racing the shutdown, where gRPC cancels calls it received
        but had not started (CANCELLED).

        A second call during the drain ends the drain.

        Args:
            grace: seconds in-flight RPCs may still take.
            drain: seconds to keep answering after NOT_SERVING.
        """
        if self._grpc is None:
            return
        if self._stopping.is_set():
            self._drain_over.set()
            return
        self._stopping.set()
        log.info("server stopping", extra={"fields": {"event": "server_stopping",
                                                      "grace_s": grace, "drain_s": drain}})
        self._health.enter_graceful_shutdown()
        if grace and drain:
            self._drain_over.wait(min(drain, grace))
        if self._rest is not None:
            self._rest.close()
            self._rest = None
        self._grpc.stop(grace).wait()
        self.manager.stop(timeout=grace)
        self.metrics.close()
        self._grpc = None
        log.info("server stopped", extra={"fields": {"event": "server_stopped"}})

    # ------------------------------------------------------------ batching

    def _attach(self, servable):
        """Called for each loaded version: finds the batchable signatures and
        gives the version a batcher."""
        servable.batch_inputs = {key: validation.batch_input(sig)
                                 for key, sig in servable.signature_defs.items()}
        if not self.config.batching:
            return
        config = self.config
        name, version = servable.name, str(servable.version)

        def run(key, sentences):
            signature, scalars = key
            inputs = {servable.batch_inputs[signature]: sentences, **dict(scalars)}
            return servable.predict(signature, validation.typed(servable, signature, inputs))

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
            context: the gRPC context (unused: the interceptor's
                `current_deadline()` is the request's deadline).

        Returns:
            dict of output name -> NumPy array (padding trimmed).
        """
        deadline = current_deadline(self.config.max_request_seconds)
        batch_input = servable.batch_inputs.get(signature)
        if servable.batcher is None or batch_input is None:
            outputs = batching.trim_padding(servable.predict(signature, inputs))
            self.metrics.batch_size.labels(servable.name).observe(len(inputs[batch_input])
                                                                  if batch_input else 1)
        else:
            scalars = tuple(sorted((k, v.item()) for k, v in inputs.items() if k != batch_input))
            pending = servable.batcher.submit((signature, scalars),
                                              list(inputs[batch_input]), deadline)
            outputs = pending.result(timeout=max(0.0, deadline - time.monotonic()))
        if batch_input is not None:
            self.metrics.sentences.labels(servable.name).inc(len(inputs[batch_input]))
        return outputs


# ---------------------------------------------------------------- CLI


def config_from_args(args):
    """A `ServerConfig` from parsed `add_serve_arguments` flags.

    Raises:
        ValueError: a --model flag is not NAME=PATH, or a --version-label
            flag not [MODEL:]LABEL=VERSION.
    """
    models = {}
    for item in args.model:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--model {item!r}: expected NAME=PATH")
        models[name] = path
    return ServerConfig(
        model_base_dir=args.model_base_dir, models=models, versions=args.versions,
        version_labels=parse_version_labels(args.version_label),
        poll_seconds=args.poll_seconds, host=args.host, port=args.port,
        batching=not args.no_batching, max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
        max_enqueued_batches=args.max_enqueued_batches,
        max_queued_sentences=args.max_queued_sentences,
        num_batch_threads=args.num_batch_threads,
        max_request_sentences=args.max_request_sentences,
        max_sentence_chars=args.max_sentence_chars,
        max_request_seconds=args.max_request_seconds,
        max_message_bytes=args.max_message_bytes, workers=args.workers,
        max_concurrent_rpcs=args.max_concurrent_rpcs, metrics_port=args.metrics_port,
        rest_api_port=args.rest_api_port,
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
            if server.rest_api_port:
                print(f"REST API on http://{args.host}:{server.rest_api_port}/v1/models/",
                      flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop(args.grace_seconds, args.drain_seconds)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
