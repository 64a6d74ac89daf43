"""What every RPC of the served services goes through: a `grpc.ServerInterceptor`.

    server = grpc.server(executor, interceptors=[ServingInterceptor(SERVICES, metrics)])

For the methods of `services` (the health and reflection services pass
through untouched) it

- parses the request itself, so an unparseable one gets INVALID_ARGUMENT
  (gRPC's own parser answers INTERNAL);
- maps any exception the servicer raises to a status code
  (`errors.status_of`), logging INTERNAL ones with their traceback;
- counts the RPC in the Prometheus metrics (requests, errors, latency) and
  writes one JSON log line with the servicer's `call_fields()`.
"""

import time

import grpc

from keras_rnn.serving.errors import ServingError, status_of
from keras_rnn.serving.observability import begin_call, log


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
    """

    def __init__(self, services, metrics):
        self._prefixes = tuple(f"/{name}/" for name in services)
        self.metrics = metrics

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
        metrics = self.metrics

        def call(request, context):
            start = time.perf_counter()
            info = begin_call()
            code, message = grpc.StatusCode.OK, ""
            try:
                if isinstance(request, _BadMessage):
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"the request is not a valid {short} request message: "
                                       f"{request.error}")
                return behavior(request, context)
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
                    **({"error": message} if message else {})}})

        return call
