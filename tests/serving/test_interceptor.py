"""What every RPC goes through (`serving/interceptor.py`): deadlines,
status codes, accounting.
"""

import io
import logging
import time

import pytest

from tests.serving_support import (  # noqa: F401 - fixtures
    channel,
    fake_versions,
    make_base,
    needs_tensorflow,
    outputs_of,
    predict_request,
    rpc_code,
    rpc_details,
    server,
    start_server,
    stub)


@needs_tensorflow
def test_expired_deadline(server, channel):
    import grpc

    assert rpc_code(stub(channel).Predict, predict_request(["Hallo"]), timeout=0.001) == \
        grpc.StatusCode.DEADLINE_EXCEEDED
    assert stub(channel).Predict(predict_request(["Hallo"]), timeout=10).outputs


def _call_without_deadline(method, request):
    """Calls a stock stub method the way its users do by default: no
    `timeout` (the future is only waited on here, the RPC has no deadline)."""
    return method.future(request).result(timeout=60)


@needs_tensorflow
@pytest.mark.parametrize("batching", [True, False], ids=["batching", "no_batching"])
def test_requests_without_a_deadline_are_served(request, tmp_path, fake_versions, batching):
    """Stock clients and grpcurl send no deadline by default; gRPC then
    reports a time remaining of ~1e19 s, which must not reach a wait."""
    import grpc
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                         model_service_pb2_grpc)

    from keras_rnn.serving import translator_pb2, translator_pb2_grpc

    if batching:
        server = request.getfixturevalue("server")
        owned = None
    else:
        server = owned = start_server(make_base(tmp_path, fake_versions), batching=False)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            predict = _call_without_deadline(stub(channel).Predict, predict_request(["Hallo"]))
            assert outputs_of(predict)["translations"][0, 0] == b"v1:ollaH"
            metadata = get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"])
            metadata.model_spec.name = "fake"
            assert _call_without_deadline(stub(channel).GetModelMetadata, metadata).metadata
            status = get_model_status_pb2.GetModelStatusRequest()
            status.model_spec.name = "fake"
            assert _call_without_deadline(
                model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus,
                status).model_version_status
            translated = _call_without_deadline(
                translator_pb2_grpc.TranslatorStub(channel).Translate,
                translator_pb2.TranslateRequest(model_name="fake", sentences=["ab"]))
            assert translated.translations[0].hypotheses[0].text == "v1:ba"
    finally:
        if owned is not None:
            owned.stop(grace=1)


@needs_tensorflow
def test_queue_waits_are_bounded_by_the_server_without_a_client_deadline(
        tmp_path, fake_versions):
    """A request with no deadline waits in the batch queue at most the
    server's max_request_seconds, then gets DEADLINE_EXCEEDED."""
    import grpc

    server = start_server(make_base(tmp_path, fake_versions), batch_timeout_ms=3000,
                          max_request_seconds=0.5)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            start = time.monotonic()
            assert rpc_code(_call_without_deadline, stub(channel).Predict,
                            predict_request(["Hallo"])) == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - start < 2.5
    finally:
        server.stop(grace=1)


@needs_tensorflow
def test_client_names_are_echoed_bounded(server, channel):
    """A 2 MB model name gets NOT_FOUND with a short message (echoed whole it
    overflowed the status metadata: RESOURCE_EXHAUSTED), and a short log line."""
    import grpc
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                         model_service_pb2_grpc)

    from keras_rnn.serving import translator_pb2, translator_pb2_grpc
    from keras_rnn.serving.server import setup_logging

    huge = "m" * 2_000_000
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = huge
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = huge
    signature = predict_request(["Hallo"], signature="s" * 2_000_000)
    output = predict_request(["Hallo"])
    output.output_filter.append("o" * 2_000_000)
    cases = [
        (stub(channel).Predict, predict_request(["Hallo"], model=huge), "NOT_FOUND"),
        (stub(channel).GetModelMetadata, metadata, "NOT_FOUND"),
        (model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus, status,
         "NOT_FOUND"),
        (translator_pb2_grpc.TranslatorStub(channel).Translate,
         translator_pb2.TranslateRequest(model_name=huge, sentences=["ab"]), "NOT_FOUND"),
        (stub(channel).Predict, signature, "FAILED_PRECONDITION"),
        (stub(channel).Predict, output, "INVALID_ARGUMENT"),
    ]
    stream = io.StringIO()
    setup_logging("INFO", stream)
    try:
        for method, request, code in cases:
            try:
                method(request, timeout=10)
            except grpc.RpcError as error:
                assert error.code().name == code, (code, error.code(), error.details()[:200])
                assert len(error.details()) < 1000, len(error.details())
            else:
                raise AssertionError(f"{code} expected")
    finally:
        logging.getLogger("keras_rnn.serving").handlers.clear()
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(cases)
    assert max(len(line) for line in lines) < 2000


@needs_tensorflow
def test_a_response_over_the_message_limit_is_an_error(tmp_path, fake_versions):
    """gRPC fails a response over max_message_bytes in transport after the
    handler returned; the server refuses it first and counts the error."""
    import grpc

    server = start_server(make_base(tmp_path, fake_versions), max_message_bytes=20_000)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            request = predict_request(["z" * 39] * 8, signature="translate_with_alignments",
                                      beam_size=4, n_best=4)
            assert request.ByteSize() < 1000
            code, details = rpc_details(stub(channel).Predict, request, timeout=10)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_message_bytes" in details, details
            assert stub(channel).Predict(predict_request(["Hallo"]), timeout=10).outputs
        samples = server.metrics.registry.get_sample_value
        labels = {"method": "Predict", "model": "fake"}
        assert samples("keras_rnn_errors_total", {**labels, "code": "RESOURCE_EXHAUSTED"}) == 1
        assert samples("keras_rnn_requests_total", {**labels, "code": "OK"}) == 1
    finally:
        server.stop(grace=1)
