"""What every RPC of the served services goes through: a `grpc.ServerInterceptor`.

    interceptor = ServingInterceptor(SERVICES, metrics, max_message_bytes=4 * 1024 * 1024)
    server = grpc.server(executor, interceptors=[interceptor])

For the methods of `services` (the health and reflection services pass
through untouched) it

- answers DEADLINE_EXCEEDED to a request whose deadline already passed
  (the servicers take each request's deadline from its context with
  `request_deadline`: the client's, capped by the server's
  `max_request_seconds`, which is also the deadline of requests that set
  none; gRPC then reports ~1e19 s remaining, and stock clients and grpcurl
  send no deadline by default);
- parses the request itself, so an unparseable one gets INVALID_ARGUMENT
  (gRPC's own parser answers INTERNAL);
- refuses a response larger than `max_message_bytes` with
  RESOURCE_EXHAUSTED (gRPC would fail it in transport, after the RPC was
  counted OK; the limit is the server's `--max-message-bytes`, the default
  receive limit of gRPC clients too);
- maps any exception the servicer raises to a status code
  (`errors.status_of`), logging INTERNAL ones with their traceback;
- counts the RPC in the Prometheus metrics (requests, errors, latency) and
  writes one JSON log line with the servicer's `call_fields()`.
"""

import time

import grpc

from keras_rnn.serving.batching import DeadlineExceededError
from keras_rnn.serving.errors import ServingError, status_of
from keras_rnn.serving.observability import begin_call, log

# More time remaining than this means the client set no deadline.
NO_DEADLINE_S = 1e7


def remaining_seconds(context):
    """Seconds left of the client's deadline; None when it set none."""
    remaining = context.time_remaining() if context is not None else None
    if remaining is None or remaining > NO_DEADLINE_S:
        return None
    return remaining


def request_deadline(context, max_seconds):
    """The `time.monotonic()` time a request must be answered by: the
    client's deadline, capped at `max_seconds` from now (also the deadline
    of a request that set none)."""
    remaining = remaining_seconds(context)
    return time.monotonic() + (max_seconds if remaining is None
                               else min(remaining, max_seconds))


class _BadMessage:
    """Stands for a request that could not be parsed."""

    def __init__(self, error):
        self.error = error


def _tolerant(deserializer):
    def parse(data):
        try:
            return deserializer(data)
        except Exception as error:  # noqa: BLE001 - answered as INVALID_ARGUMENT
            return _BadMessage(error)
    return parse


class ServingInterceptor(grpc.ServerInterceptor):
    """Status mapping, metrics and one JSON log line per RPC.

    Args:
        services: full names of the services to intercept
            ("tensorflow.serving.PredictionService", ...).
        metrics: the server's `observability.Metrics`.
        max_message_bytes: the largest response sent.
    """

    def __init__(self, services, metrics, max_message_bytes):
        self._prefixes = tuple(f"/{name}/" for name in services)
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if (handler is None or handler.unary_unary is None
                or not method.startswith(self._prefixes)):
            return handler
        return handler._replace(
            request_deserializer=_tolerant(handler.request_deserializer),
            unary_unary=self._wrap(method.rsplit("/", 1)[1], handler.unary_unary))

    def _wrap(self, short, behavior):
        def call(request, context):
            return self.handle(short, behavior, request, context)

        return call

    def handle(self, short, behavior, request, context, api="grpc"):
        """Runs `behavior(request, context)` as one accounted RPC: its
        status (`context.abort(code, message)` on errors), metrics and log
        line. The REST API (`rest.py`) calls it too."""
        metrics, max_bytes = self.metrics, self.max_message_bytes
        start = time.perf_counter()
        info = begin_call()
        code, message = grpc.StatusCode.OK, ""
        remaining = remaining_seconds(context)
        try:
            if remaining is not None and remaining <= 0:
                raise DeadlineExceededError("the deadline passed before the request ran")
            if isinstance(request, _BadMessage):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"the request is not a valid {short} request message: "
                                   f"{request.error}")
            response = behavior(request, context)
            size = response.ByteSize()
            if size > max_bytes:
                raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, (
                    f"the response has {size} bytes; the limit is {max_bytes} "
                    "(max_message_bytes): ask for fewer sentences or outputs"))
            return response
        except Exception as error:  # noqa: BLE001 - every error becomes a status
            code, message = status_of(error)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("internal error", extra={"fields": {
                    "event": "internal_error", "method": short, **info}})
            context.abort(code, message)
        finally:
            seconds = time.perf_counter() - start
            model = info.get("model", "")
            metrics.requests.labels(short, model, code.name).inc()
            metrics.latency.labels(short, model).observe(seconds)
            if code != grpc.StatusCode.OK:
                metrics.errors.labels(short, model, code.name).inc()
            log.info("request", extra={"fields": {
                "event": "request", "method": short, **info, "code": code.name,
                "latency_ms": round(1000 * seconds, 2),
                **({"api": api} if api != "grpc" else {}),
                **({"error": message} if message else {})}})
