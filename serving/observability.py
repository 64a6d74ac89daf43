"""What the server says about itself: JSON log lines and Prometheus metrics.

    setup_logging("INFO")                  # keras_rnn.serving -> stderr, JSON
    metrics = Metrics(); metrics.serve("127.0.0.1", 9100)   # /metrics

`call_fields()` is the dict of log fields of the RPC being handled on this
thread (model, version, signature, sentences, ...): servicers fill it, the
interceptor (`serving/interceptor.py`) writes it into the request's log line
and metric labels.
"""

import json
import logging
import sys
import threading
import time

log = logging.getLogger("keras_rnn.serving")

_call = threading.local()


def begin_call():
    """Starts the log fields of a new RPC on this thread; returns them."""
    _call.fields = {"model": ""}
    return _call.fields


def call_fields():
    """The log fields of the RPC being handled on this thread (a dict)."""
    fields = getattr(_call, "fields", None)
    return fields if fields is not None else begin_call()


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
