"""Health, reflection, Prometheus metrics and JSON logs
(`serving/observability.py`).
"""

import io
import json
import logging
import urllib.request

from tests.serving_support import (  # noqa: F401 - fixtures
    channel,
    fake_versions,
    needs_tensorflow,
    predict_request,
    rpc_code,
    server,
    stub)


@needs_tensorflow
def test_health_reflection_and_metrics_endpoint(server, channel):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase)

    from keras_rnn.serving.server import SERVICES

    health = health_pb2_grpc.HealthStub(channel)
    for service in ("",) + SERVICES:
        assert health.Check(health_pb2.HealthCheckRequest(service=service),
                            timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert set(SERVICES) | {"grpc.health.v1.Health",
                            "grpc.reflection.v1alpha.ServerReflection"} <= services
    stub(channel).Predict(predict_request(["Hallo"]), timeout=10)
    text = urllib.request.urlopen(
        f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    for name in ("keras_rnn_requests_total", "keras_rnn_request_latency_seconds_bucket",
                 "keras_rnn_batch_size_bucket", "keras_rnn_queue_depth",
                 "keras_rnn_errors_total"):
        assert name in text, name


@needs_tensorflow
def test_json_logs(server, channel):
    from keras_rnn.serving.server import setup_logging

    stream = io.StringIO()
    setup_logging("INFO", stream)
    try:
        stub(channel).Predict(predict_request(["Hallo", "ab"]), timeout=10)
        rpc_code(stub(channel).Predict, predict_request(["Hallo"], model="nope"), timeout=10)
    finally:
        logging.getLogger("keras_rnn.serving").handlers.clear()
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    requests = [e for e in entries if e["event"] == "request"]
    ok, not_found = requests[-2], requests[-1]
    assert ok["method"] == "Predict" and ok["model"] == "fake" and ok["version"] == 1
    assert ok["code"] == "OK" and ok["sentences"] == 2 and ok["latency_ms"] > 0
    assert {"time", "level"} <= set(ok)
    assert not_found["code"] == "NOT_FOUND" and "nope" in not_found["error"]
