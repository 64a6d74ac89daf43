"""The serving configuration: `ServerConfig`, plain data.

`keras-rnn serve` flags map one to one onto its fields; this module imports
only `dataclasses`, so the command line can show the defaults without
importing gRPC or TensorFlow.
"""

import dataclasses

# Deadline, in seconds, of every call `keras-rnn translate --server` sends.
DEFAULT_CLIENT_TIMEOUT = 30.0


@dataclasses.dataclass
class ServerConfig:
    """Everything `Server` needs; `keras-rnn serve` flags map one to one.

    Attributes:
        model_base_dir: every subdirectory is a model (versions inside).
        models: dict of model name -> model directory (with or instead of
            `model_base_dir`).
        versions: "latest" or "all".
        version_labels: dict of model name -> {label: version}, TensorFlow
            Serving's `version_labels` ("stable", "canary"): a request's
            `model_spec.version_label` (REST: `/labels/LABEL`) asks for the
            version its label names. Model name "" labels every model.
        poll_seconds: how often to look for new versions (0: never).
        host, port: where to listen (port 0: any free port).
        batching: merge concurrent requests into batches.
        max_batch_size, batch_timeout_ms, max_enqueued_batches,
        max_queued_sentences, num_batch_threads: see `BatchingOptions`.
        max_request_sentences: most sentences in one request.
        max_sentence_chars: longest sentence accepted, in characters.
        max_request_seconds: longest a request may wait for its batch and
            run: the deadline of requests without one (stock clients and
            grpcurl send none by default), and a cap on longer ones.
        max_message_bytes: largest gRPC message received or sent.
        workers: gRPC handler threads.
        max_concurrent_rpcs: RPCs in progress before RESOURCE_EXHAUSTED.
        metrics_port: Prometheus HTTP port (0: no metrics endpoint).
        rest_api_port: TensorFlow Serving's REST API port (0: off), on
            `host`, with the same TLS settings as gRPC.
        metrics_host: address of the metrics endpoint.
        tls_cert, tls_key: PEM server certificate chain and key (TLS on).
        tls_client_ca: PEM CA that client certificates must chain to
            (mutual TLS: clients without such a certificate are refused).
        warmup: replay each version's warm-up requests before serving it.
        graph_optimizations: run TensorFlow's Grappler on each signature
            when it is first called. Off by default: on the exported
            translators it more than doubles the time to load and warm a
            version (6.0 s against 2.5 s per signature for the quick model)
            and did not make translation faster (32 sentences, beam 5: 77 ms
            with, 75 ms without).
    """

    model_base_dir: str = None
    models: dict = dataclasses.field(default_factory=dict)
    versions: str = "latest"
    version_labels: dict = dataclasses.field(default_factory=dict)
    poll_seconds: float = 2.0
    host: str = "127.0.0.1"
    port: int = 8500
    batching: bool = True
    max_batch_size: int = 32
    batch_timeout_ms: float = 5.0
    max_enqueued_batches: int = 64
    max_queued_sentences: int = 1024
    num_batch_threads: int = 1
    max_request_sentences: int = 64
    max_sentence_chars: int = 1000
    max_request_seconds: float = 60.0
    max_message_bytes: int = 4 * 1024 * 1024
    workers: int = 64
    max_concurrent_rpcs: int = 256
    metrics_port: int = 0
    rest_api_port: int = 0
    metrics_host: str = "127.0.0.1"
    tls_cert: str = None
    tls_key: str = None
    tls_client_ca: str = None
    warmup: bool = True
    graph_optimizations: bool = False

    def labels_for(self, model):
        """{label: version} of `model` (labels for every model included)."""
        return {**self.version_labels.get("", {}), **self.version_labels.get(model, {})}


def parse_version_labels(items):
    """`--version-label [MODEL:]LABEL=VERSION` flags -> `version_labels`.

    Raises:
        ValueError: an item is not of that form, or labels a version twice.
    """
    labels = {}
    for item in items:
        target, sep, version = item.partition("=")
        model, _, label = target.rpartition(":")
        if not sep or not label or not version.strip().isdigit():
            raise ValueError(f"--version-label {item!r}: expected [MODEL:]LABEL=VERSION "
                             "(e.g. stable=1 or de_en:canary=2)")
        if label in labels.get(model, {}):
            raise ValueError(f"--version-label {item!r}: label {label!r} given twice")
        labels.setdefault(model, {})[label] = int(version)
    return labels
