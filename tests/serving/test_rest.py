"""TensorFlow Serving's REST API (`serving/rest.py`, `--rest-api-port`) with a
plain HTTP client (urllib), against the same expectations as the gRPC
tests: translations equal the in-process model's, bad requests get 4xx with
TensorFlow Serving's `{"error": ...}` body, and the server keeps serving.
"""

import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.serving_support import (  # noqa: F401 - fixtures
    ALIGNMENTS,
    SENTENCES,
    expected,
    fake_versions,
    free_port,
    in_process,
    make_base,
    needs_tensorflow,
    start_server,
)


@pytest.fixture(scope="module")
def rest_server(tmp_path_factory, fake_versions):
    """A batching server on the fake model version 1 with the REST API on."""
    base = make_base(tmp_path_factory.mktemp("rest"), fake_versions)
    server = start_server(base, batch_timeout_ms=20, max_batch_size=16,
                          max_request_sentences=8, max_sentence_chars=200,
                          rest_api_port=free_port(), max_message_bytes=200_000)
    yield server
    server.stop(grace=1)


def http(server, method, path, body=None, raw=None):
    """(HTTP status, parsed JSON body) of one call."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                        else None)
    request = urllib.request.Request(f"http://127.0.0.1:{server.rest_api_port}{path}",
                                     data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@needs_tensorflow
def test_rest_predict_row_and_columnar_formats_equal_in_process(rest_server, in_process):
    sentences = SENTENCES[:4]
    wanted = expected(in_process, sentences)
    status, body = http(rest_server, "POST", "/v1/models/fake:predict",
                        {"instances": sentences})
    assert status == 200, body
    assert len(body["predictions"]) == len(sentences)
    for i, row in enumerate(body["predictions"]):
        assert sorted(row) == ["lengths", "scores", "translations"]
        assert row["translations"] == [t.decode() for t in wanted["translations"][i]]
        np.testing.assert_allclose(row["scores"], wanted["scores"][i])
        assert row["lengths"] == wanted["lengths"][i].tolist()

    wanted = expected(in_process, sentences, beam_size=3, n_best=2)
    status, body = http(rest_server, "POST", "/v1/models/fake/versions/1:predict", {
        "inputs": {"inputs": sentences, "beam_size": 3, "n_best": 2}})
    assert status == 200, body
    outputs = body["outputs"]
    assert outputs["translations"] == [[t.decode() for t in row]
                                       for row in wanted["translations"]]
    np.testing.assert_allclose(outputs["scores"], wanted["scores"])

    # Row format with objects (scalars equal in every instance), another
    # signature, and a bytes input as {"b64": ...}.
    wanted = expected(in_process, ["ab", "Hallo"], signature=ALIGNMENTS, beam_size=2)
    status, body = http(rest_server, "POST", "/v1/models/fake:predict", {
        "signature_name": ALIGNMENTS,
        "instances": [{"inputs": "ab", "beam_size": 2},
                      {"inputs": {"b64": "SGFsbG8="}, "beam_size": 2}]})
    assert status == 200, body
    assert body["predictions"][1]["translations"] == ["v1:ollaH"]
    assert body["predictions"][0]["source_pieces"][:3] == ["a", "b", "</s>"]
    np.testing.assert_allclose(body["predictions"][1]["alignments"],
                               wanted["alignments"][1])


@needs_tensorflow
def test_rest_model_status_and_metadata(rest_server):
    status, body = http(rest_server, "GET", "/v1/models/fake")
    assert status == 200, body
    assert body == {"model_version_status": [{
        "version": "1", "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""}}]}
    assert http(rest_server, "GET", "/v1/models/fake/versions/1")[1] == body
    status, body = http(rest_server, "GET", "/v1/models/fake/metadata")
    assert status == 200, body
    assert body["model_spec"] == {"name": "fake", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", ALIGNMENTS} <= set(signatures)
    assert signatures["serving_default"]["inputs"]["inputs"]["dtype"] == "DT_STRING"


@needs_tensorflow
def test_rest_bad_requests_get_4xx_and_the_server_keeps_serving(rest_server):
    predict = "/v1/models/fake:predict"
    cases = [
        ("unknown model", "POST", "/v1/models/nope:predict", {"instances": ["a"]}, None, 404),
        ("unknown version", "POST", "/v1/models/fake/versions/7:predict",
         {"instances": ["a"]}, None, 404),
        ("unknown version label", "POST", "/v1/models/fake/labels/stable:predict",
         {"instances": ["a"]}, None, 400),
        ("not JSON", "POST", predict, None, b"{nope", 400),
        ("neither format", "POST", predict, {"x": 1}, None, 400),
        ("both formats", "POST", predict, {"instances": ["a"], "inputs": ["a"]}, None, 400),
        ("unknown signature", "POST", predict, {"signature_name": "nope",
                                                "instances": ["a"]}, None, 400),
        ("unknown input", "POST", predict, {"inputs": {"bogus": [1]}}, None, 400),
        ("numbers as sentences", "POST", predict, {"instances": [1, 2]}, None, 400),
        ("ragged", "POST", predict, {"inputs": {"inputs": [["a"], "b"]}}, None, 400),
        ("scalars differ", "POST", predict, {"instances": [
            {"inputs": "a", "beam_size": 1}, {"inputs": "b", "beam_size": 2}]}, None, 400),
        ("beam too large", "POST", predict, {"inputs": {"inputs": ["a"], "beam_size": 9}},
         None, 400),
        ("too many sentences", "POST", predict, {"instances": ["a"] * 9}, None, 400),
        ("too long", "POST", predict, {"instances": ["x" * 201]}, None, 400),
        ("body too large", "POST", predict, None, b"[" + b" " * 300_000 + b"]", 413),
        ("classify", "POST", "/v1/models/fake:classify", {"examples": []}, None, 501),
        ("GET predict", "GET", predict, None, None, 400),
        ("no such route", "GET", "/v2/whatever", None, None, 404),
        ("status of unknown model", "GET", "/v1/models/nope", None, None, 404),
    ]
    for name, method, path, body, raw, code in cases:
        status, answer = http(rest_server, method, path, body, raw)
        assert status == code, (name, status, answer)
        assert isinstance(answer.get("error"), str) and answer["error"], (name, answer)
        status, answer = http(rest_server, "POST", predict, {"instances": ["Hallo"]})
        assert status == 200 and answer["predictions"][0]["translations"] == ["v1:ollaH"], \
            f"after {name}"


@needs_tensorflow
def test_rest_requests_are_batched_and_counted(rest_server):
    samples = rest_server.metrics.registry.get_sample_value
    before = samples("keras_rnn_requests_total",
                     {"method": "Predict", "model": "fake", "code": "OK"}) or 0
    results = []

    def send(i):
        results.append(http(rest_server, "POST", "/v1/models/fake:predict",
                            {"instances": [SENTENCES[i % len(SENTENCES)]]}))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [status for status, _ in results] == [200] * 12
    after = samples("keras_rnn_requests_total",
                    {"method": "Predict", "model": "fake", "code": "OK"})
    assert after - before == 12


@needs_tensorflow
def test_version_labels_over_grpc_and_rest(tmp_path, fake_versions):
    """TensorFlow Serving's version labels (`serve --version-label`): a label
    answers with its version over gRPC and REST; an unset label is
    INVALID_ARGUMENT (400), a label of a version not served NOT_FOUND (404)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from keras_rnn.serving.config import parse_version_labels
    from tests.serving_support import predict_request

    labels = parse_version_labels(["stable=1", "fake:canary=2", "fake:gone=7"])
    assert labels == {"": {"stable": 1}, "fake": {"canary": 2, "gone": 7}}
    base = make_base(tmp_path, fake_versions, versions=(1, 2))
    server = start_server(base, versions="all", version_labels=labels,
                          rest_api_port=free_port())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
            for label, version in (("stable", 1), ("canary", 2)):
                request = predict_request(["abc"])
                request.model_spec.version_label = label
                response = predict(request, timeout=30)
                assert response.model_spec.version.value == version
                assert tf.make_ndarray(response.outputs["translations"])[0, 0] == \
                    f"v{version}:cba".encode()
            status = get_model_status_pb2.GetModelStatusRequest()
            status.model_spec.name, status.model_spec.version_label = "fake", "canary"
            answer = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                status, timeout=30)
            assert [s.version for s in answer.model_version_status] == [2]
            for label, code in (("beta", grpc.StatusCode.INVALID_ARGUMENT),
                                ("gone", grpc.StatusCode.NOT_FOUND)):
                request = predict_request(["abc"])
                request.model_spec.version_label = label
                with pytest.raises(grpc.RpcError) as refused:
                    predict(request, timeout=30)
                assert refused.value.code() == code, refused.value.details()
            request.model_spec.version_label = "beta"
            with pytest.raises(grpc.RpcError) as refused:
                predict(request, timeout=30)
            assert refused.value.details() == ("Unrecognized servable version label: 'beta' "
                                               "(labels: canary, gone, stable)")
        for label, version in (("stable", 1), ("canary", 2)):
            status, body = http(server, "POST", f"/v1/models/fake/labels/{label}:predict",
                                {"instances": ["abc"]})
            assert status == 200, body
            assert body["predictions"][0]["translations"][0] == f"v{version}:cba"
        status, body = http(server, "GET", "/v1/models/fake/labels/canary")
        assert status == 200 and [s["version"] for s in body["model_version_status"]] == ["2"]
        assert http(server, "POST", "/v1/models/fake/labels/beta:predict",
                    {"instances": ["a"]})[0] == 400
        assert http(server, "POST", "/v1/models/fake/labels/gone:predict",
                    {"instances": ["a"]})[0] == 404
    finally:
        server.stop(0)


def test_version_label_flags_are_checked():
    from keras_rnn.serving.config import parse_version_labels

    assert parse_version_labels([]) == {}
    for bad in ("stable", "stable=", "stable=one", "=1", "m:=1"):
        with pytest.raises(ValueError, match="expected \\[MODEL:\\]LABEL=VERSION"):
            parse_version_labels([bad])
    with pytest.raises(ValueError, match="given twice"):
        parse_version_labels(["a=1", "a=2"])
