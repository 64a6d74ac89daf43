"""`keras-rnn serve`: a gRPC server for exported translators.

    keras-rnn serve --model-base-dir exports --port 8500 --metrics-port 9100
    keras-rnn serve --model de_en=exports/de_en --versions all --no-batching
    python -m keras_rnn.cli serve --model-base-dir exports --port 0   # any free port

It speaks TensorFlow Serving's API, so stock clients work unchanged:
`tensorflow.serving.PredictionService` (`Predict`, `GetModelMetadata`;
`Classify`, `Regress`, `MultiInference` answer UNIMPLEMENTED) and
`tensorflow.serving.ModelService` (`GetModelStatus`), KServe's Open
Inference Protocol `inference.GRPCInferenceService` (`kserve.py`), plus keras-rnn's own
typed `keras_rnn.serving.Translator` (`serving/protos/`), gRPC health
checking (`grpc.health.v1.Health`) and server reflection (`grpcurl -plaintext
127.0.0.1:8500 list`). Requests for one model version are merged into
batches (`serving/batching.py`); models hot-reload from disk
(`serving/models.py`); Prometheus metrics and JSON logs describe every
request. `serving/README.md` has the flags, status codes and metrics.

This module only wires (ports, TLS, health, reflection, and `run_serve`
for the command line): the services are leaves in `servicers.py` over one
`runtime.Runtime` (models, limits, version labels); each loaded version
(`servable.py`) has its batcher; what every RPC goes through (status
codes, metrics, log lines) is in `interceptor.py`, request checks in
`validation.py`, logs and metrics in `observability.py`, and the model
contract (signature keys, tensor names) in `contract.py`.

Python API:

    server = Server(ServerConfig(model_base_dir="exports", port=0))
    port = server.start()
    server.wait_until_ready(timeout=60)
    ...
    server.stop()        # config.grace_seconds, config.drain_seconds
"""

import dataclasses
import functools
import signal
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from keras_rnn.serving import contract, kserve, translator_pb2_grpc
from keras_rnn.serving import models as models_lib
from keras_rnn.serving.config import (BatchingOptions, ServerConfig,  # noqa: F401
                                      config_from_args, configure)
from keras_rnn.serving.errors import ServingError, status_of  # noqa: F401 - re-exported
from keras_rnn.serving.interceptor import ServingInterceptor
from keras_rnn.serving.observability import Metrics, log, setup_logging  # noqa: F401
from keras_rnn.serving.runtime import Limits, Runtime
from keras_rnn.serving.servable import Servable
from keras_rnn.serving.servicers import ModelServicer, PredictionServicer, TranslatorServicer

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
TRANSLATOR_SERVICE = "keras_rnn.serving.Translator"
SERVICES = (PREDICTION_SERVICE, MODEL_SERVICE, TRANSLATOR_SERVICE, kserve.INFERENCE_SERVICE)


# ---------------------------------------------------------------- server


class Server:
    """The gRPC server: wires the services, the model manager, metrics.

    Args:
        config: a `ServerConfig`.

    Attributes:
        manager: the `ModelManager`; each version it loads is a `Servable`
            with the config's `BatchingOptions` (none with `batching` off).
        runtime: the `Runtime` the servicers answer with.
        metrics: the `Metrics`.
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
        self.threads = set_tensorflow_threads(tf, config.tensorflow_intra_op_parallelism,
                                              config.tensorflow_inter_op_parallelism)
        # The base directory may be missing or empty: it is polled until a
        # model folder with a complete version appears (as TensorFlow Serving).
        models = {}
        for name, path in config.models.items():
            if not Path(path).is_dir():
                raise FileNotFoundError(f"model {name!r}: directory {path} does not exist")
            models[name] = Path(path)
        self.metrics = Metrics()
        self.manager = models_lib.ModelManager(
            models, policy=config.versions, warmup=config.warmup,
            base_dir=config.model_base_dir,
            load=functools.partial(
                Servable, check=contract.check_signature_defs, metrics=self.metrics,
                batching=configure(BatchingOptions, config) if config.batching else None))
        self.runtime = Runtime(self.manager, configure(Limits, config), config.version_labels)
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
        self._interceptor = ServingInterceptor(SERVICES, self.metrics,
                                               max_message_bytes=config.max_message_bytes)
        prediction, model = PredictionServicer(self.runtime), ModelServicer(self.runtime)
        options = [("grpc.max_receive_message_length", config.max_message_bytes),
                   ("grpc.max_send_message_length", config.max_message_bytes),
                   ("grpc.so_reuseport", 0)]
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.workers,
                                       thread_name_prefix="grpc-handler"),
            options=options, maximum_concurrent_rpcs=config.max_concurrent_rpcs,
            interceptors=[self._interceptor])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            prediction, self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(model, self._grpc)
        translator_pb2_grpc.add_TranslatorServicer_to_server(TranslatorServicer(self.runtime),
                                                             self._grpc)
        kserve.add_to_server(self.runtime, prediction, self._grpc)
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
            from keras_rnn.serving.rest import RestApi
            from keras_rnn.serving.rest_server import RestServer

            # As many HTTP workers as gRPC handlers; at most
            # max_concurrent_rpcs idle keep-alive connections.
            self._rest = RestServer(
                RestApi(self.runtime, self._interceptor, prediction, model),
                config.host, config.rest_api_port, tls_cert=config.tls_cert,
                tls_key=config.tls_key, tls_client_ca=config.tls_client_ca,
                workers=config.workers, max_keepalive=config.max_concurrent_rpcs,
                max_body_drain=config.max_message_bytes)
            self.rest_api_port = self._rest.port
        self.manager.start_polling(config.poll_seconds, first=True,
                                   after_poll=self._update_health)
        log.info("server started", extra={"fields": {
            "event": "server_started", "address": f"{config.host}:{port}",
            "tls": bool(config.tls_cert), "mutual_tls": bool(config.tls_client_ca),
            "metrics_port": self.metrics_port, "rest_api_port": self.rest_api_port,
            "tensorflow_threads": self.threads, "models": self.manager.model_names()}})
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

    def stop(self, grace=None, drain=None):
        """Graceful shutdown: health says NOT_SERVING, new RPCs (and REST
        connections) are refused, in-flight RPCs and REST requests get
        `grace` seconds to finish, then models unload.

        Between NOT_SERVING and refusing calls the server still answers for
        `drain` seconds (at most `grace`): clients that watch health (ours
        do, and Kubernetes' readiness probe) move to other servers first,
        instead of racing the shutdown, where gRPC cancels calls it received
        but had not started (CANCELLED).

        A second call during the drain ends the drain.

        Args:
            grace: seconds in-flight RPCs may still take (default: the
                config's `grace_seconds`).
            drain: seconds to keep answering after NOT_SERVING (default:
                the config's `drain_seconds`).
        """
        grace = self.config.grace_seconds if grace is None else grace
        drain = self.config.drain_seconds if drain is None else drain
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
        # Both APIs drain together: each refuses new calls at once and gives
        # the calls in progress `grace` seconds.
        grpc_stopped = self._grpc.stop(grace)
        if self._rest is not None:
            self._rest.close(grace)
            self._rest = None
        grpc_stopped.wait()
        self.manager.stop(timeout=grace)
        self.metrics.close()
        self._grpc = None
        log.info("server stopped", extra={"fields": {"event": "server_stopped"}})


def set_tensorflow_threads(tf, intra_op, inter_op):
    """Sizes TensorFlow's thread pools (process-wide, before its first op).

    TensorFlow sizes them by the cores it sees, which in a container are the
    node's: a pod limited to 2 CPUs on a 64-core node ran 64-thread pools,
    throttled by the CPU quota. A number already set (by an earlier `Server`
    in this process, or TensorFlow's own `TF_NUM_INTRAOP_THREADS`) is kept
    when it matches; one that cannot change any more (TensorFlow already
    started) is logged and left.

    Args:
        tf: the `tensorflow` module.
        intra_op: threads one op may use (0: leave TensorFlow's default).
        inter_op: ops run side by side (0: leave TensorFlow's default).

    Returns:
        {"intra_op": n, "inter_op": n}: what TensorFlow is set to (0: its
        default).
    """
    threading_api = tf.config.threading
    pools = {"intra_op": (intra_op, threading_api.get_intra_op_parallelism_threads,
                          threading_api.set_intra_op_parallelism_threads),
             "inter_op": (inter_op, threading_api.get_inter_op_parallelism_threads,
                          threading_api.set_inter_op_parallelism_threads)}
    for pool, (wanted, get, set_) in pools.items():
        if wanted and get() != wanted:
            try:
                set_(wanted)
            except RuntimeError as error:  # TensorFlow already initialized
                log.warning("threads not set", extra={"fields": {
                    "event": "threads_not_set", "pool": pool, "wanted": wanted,
                    "kept": get(), "error": str(error)}})
    return {pool: get() for pool, (_, get, _) in pools.items()}


# ---------------------------------------------------------------- CLI


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
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
