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
    OPTIONS,
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

    wanted = expected(in_process, sentences, OPTIONS, beam_size=3, n_best=2)
    status, body = http(rest_server, "POST", "/v1/models/fake/versions/1:predict", {
        "signature_name": OPTIONS, "inputs": {"inputs": sentences, "beam_size": 3, "n_best": 2}})
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
    # http_rest_api_util.cc ToJsonString: always_print_primitive_fields.
    assert body["model_spec"] == {"name": "fake", "signature_name": "", "version": "1"}
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
        ("empty body", "POST", predict, None, b"", 400),
        ("neither format", "POST", predict, {"x": 1}, None, 400),
        ("both formats", "POST", predict, {"instances": ["a"], "inputs": ["a"]}, None, 400),
        ("unknown signature", "POST", predict, {"signature_name": "nope",
                                                "instances": ["a"]}, None, 400),
        ("unknown input", "POST", predict, {"inputs": {"bogus": [1]}}, None, 400),
        ("numbers as sentences", "POST", predict, {"instances": [1, 2]}, None, 400),
        ("ragged", "POST", predict, {"inputs": {"inputs": [["a"], "b"]}}, None, 400),
        ("scalars differ", "POST", predict, {"signature_name": OPTIONS, "instances": [
            {"inputs": "a", "beam_size": 1}, {"inputs": "b", "beam_size": 2}]}, None, 400),
        ("beam too large", "POST", predict, {"signature_name": OPTIONS,
                                             "inputs": {"inputs": ["a"], "beam_size": 9}},
         None, 400),
        ("options on serving_default", "POST", predict,
         {"inputs": {"inputs": ["a"], "beam_size": 2}}, None, 400),
        ("too many sentences", "POST", predict, {"instances": ["a"] * 9}, None, 400),
        ("too long", "POST", predict, {"instances": ["x" * 201]}, None, 400),
        ("body too large", "POST", predict, None, b"[" + b" " * 300_000 + b"]", 413),
        ("classify", "POST", "/v1/models/fake:classify", {"examples": []}, None, 400),
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
        # get_model_status_impl.cc reads only a version: a label, set or
        # not, answers every version.
        for label in ("canary", "beta"):
            status, body = http(server, "GET", f"/v1/models/fake/labels/{label}")
            assert status == 200, body
            assert [s["version"] for s in body["model_version_status"]] == ["2", "1"]
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


def raw_http(server, method, path, body=None, headers=None):
    """(HTTP status, Content-Type, parsed JSON body) of one call with
    http.client: the path is sent exactly as given."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.rest_api_port, timeout=30)
    try:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        return (response.status, response.getheader("Content-Type"),
                json.loads(response.read()))
    finally:
        connection.close()


PREDICT = "/v1/models/fake:predict"
MALFORMED = "http_rest_api_handler.cc ProcessRequest: no route regex matched -> " \
            "InvalidArgument(\"Malformed request: \", method, \" \", path)"
VERSION = "http_rest_api_util.cc ParseModelInfo: absl::SimpleAtoi into int64_t fails -> " \
          "InvalidArgument(\"Failed to convert version: \", v, \" to numeric.\")"
TYPE = "json_tensor.cc AddValueToTensor (DT_INT32: !IsInt(); DT_STRING: !IsString()) -> " \
       "TypeError: \"JSON Value: \" v \" Type: \" JsonTypeString \" is not of expected type: \""
BIG = "18446744073709551615"


def beam_body(value):
    """A columnar body of translate_with_options with `beam_size` `value`."""
    return {"signature_name": OPTIONS, "inputs": {"inputs": ["a"], "beam_size": value}}


# What TensorFlow Serving answers, and where its code says so. Columns: case,
# method, path, body (JSON, or bytes as sent), HTTP status, the error text
# (None: not checked; a str ending in "...": a prefix), the source.
# HTTP status of a code: http_server.cc ToHTTPStatusCode (INVALID_ARGUMENT
# 400, NOT_FOUND 404).
TF_SERVING_ANSWERS = [
    ("version over int64 (status)", "GET", f"/v1/models/fake/versions/{BIG}", None, 400,
     f"Failed to convert version: {BIG} to numeric.", VERSION),
    ("version over int64 (predict)", "POST", f"/v1/models/fake/versions/{BIG}:predict",
     {"instances": ["a"]}, 400, f"Failed to convert version: {BIG} to numeric.", VERSION),
    ("version over int64 (metadata)", "GET", f"/v1/models/fake/versions/{BIG}/metadata", None,
     400, f"Failed to convert version: {BIG} to numeric.", VERSION),
    ("version int64 max", "GET", "/v1/models/fake/versions/9223372036854775807", None, 404,
     None, "SimpleAtoi succeeds; get_model_status_impl.cc: NotFound for that version"),
    ("version 0001", "GET", "/v1/models/fake/versions/0001", None, 200, None,
     "SimpleAtoi(\"0001\") == 1"),
    ("nested 500 deep", "POST", PREDICT,
     b'{"inputs": ' + b"[" * 500 + b'"a"' + b"]" * 500 + b"}", 400, "JSON Parse error: ...",
     "json_tensor.cc ParseJson / FillTensorProto: INVALID_ARGUMENT (our text: depth limit)"),
    ("nested 50 deep", "POST", PREDICT,
     b'{"inputs": ' + b"[" * 50 + b'"a"' + b"]" * 50 + b"}", 400, "JSON Parse error: ...",
     "json_tensor.cc ParseJson / FillTensorProto: INVALID_ARGUMENT (our text: depth limit)"),
    ("empty body", "POST", PREDICT, b"", 400, "JSON Parse error: The document is empty",
     "json_tensor.cc ParseJson: json.empty()"),
    ("not an object", "POST", PREDICT, b"[1]", 400, "JSON Value: [\n    1\n] Is not object",
     "json_tensor.cc ParseJson: !doc->IsObject() -> FormatError(doc, \"Is not object\")"),
    ("beam_size 4.7", "POST", PREDICT, beam_body(4.7), 400,
     "JSON Value: 4.7 Type: Number is not of expected type: int32", TYPE),
    ("beam_size \"5\"", "POST", PREDICT, beam_body("5"), 400,
     'JSON Value: "5" Type: String is not of expected type: int32', TYPE),
    ("beam_size 5.0", "POST", PREDICT, beam_body(5.0), 400,
     "JSON Value: 5.0 Type: Number is not of expected type: int32",
     TYPE + " (5.0 is a double to rapidjson; WriteDecimal adds \".0\")"),
    ("beam_size true", "POST", PREDICT, beam_body(True), 400,
     "JSON Value: true Type: True is not of expected type: int32", TYPE),
    ("beam_size 2**31", "POST", PREDICT, beam_body(2 ** 31),
     400, "JSON Value: 2147483648 Type: Number is not of expected type: int32", TYPE),
    ("beam_size 4.7 (row)", "POST", PREDICT,
     {"signature_name": OPTIONS, "instances": [{"inputs": "a", "beam_size": 4.7}]}, 400,
     "Failed to process element: 0 key: beam_size of 'instances' list. Error: "
     "INVALID_ARGUMENT: JSON Value: 4.7 Type: Number is not of expected type: int32",
     "json_tensor.cc FillTensorMapFromInstancesList: \"Failed to process element: \" i "
     "\" key: \" name \" of 'instances' list. Error: \" status.ToString()"),
    ("number as sentence", "POST", PREDICT, {"inputs": {"inputs": ["a", 1]}}, 400,
     "JSON Value: 1 Type: Number is not of expected type: string", TYPE),
    ("bad base64", "POST", PREDICT, {"inputs": {"inputs": [{"b64": "!!"}]}}, 400,
     "Unable to base64 decode", "json_tensor.cc JsonDecodeBase64Object"),
    ("GET /v1/foo", "GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo", MALFORMED),
    (":PREDICT", "POST", "/v1/models/fake:PREDICT", {"instances": ["a"]}, 400,
     "Malformed request: POST /v1/models/fake:PREDICT",
     MALFORMED + " ((?i) matches, but method == \"predict\" is case-sensitive)"),
    (":foo", "POST", "/v1/models/fake:foo", {"instances": ["a"]}, 400,
     "Malformed request: POST /v1/models/fake:foo", MALFORMED),
    ("trailing slash", "GET", "/v1/models/fake/", None, 400,
     "Malformed request: GET /v1/models/fake/", MALFORMED + " ([^/:]+ takes no '/')"),
    ("GET :predict", "GET", PREDICT, None, 400, f"Malformed request: GET {PREDICT}", MALFORMED),
    ("POST status", "POST", "/v1/models/fake", {"instances": ["a"]}, 400,
     "Malformed request: POST /v1/models/fake", MALFORMED),
    ("PUT", "PUT", "/v1/models/fake", b"{}", 400, "Malformed request: PUT /v1/models/fake",
     MALFORMED + " (only POST and GET are routed)"),
    ("no model name", "GET", "/v1/models", None, 400, "Missing model name in request.",
     "http_rest_api_handler.cc ProcessModelStatusRequest: model_name.empty()"),
    ("upper-case status", "GET", "/V1/MODELS/fake/VERSIONS/1", None, 200, None,
     "http_rest_api_util.cc kModelStatusApiRegex: (?i)"),
    ("upper-case predict", "POST", "/V1/Models/fake:predict", {"instances": ["Hallo"]}, 200,
     None, "http_rest_api_util.cc kPredictionApiGegex: (?i)"),
    ("/METADATA is the status", "GET", "/v1/models/fake/METADATA", None, 200, None,
     "http_rest_api_handler.cc: model_subresource == \"metadata\" is case-sensitive"),
    ("percent-encoded name", "GET", "/v1/models/f%61ke", None, 200, None,
     "http_rest_api_util.cc ParseModelInfo: DecodeArg(model_name)"),
    ("status, unknown label", "GET", "/v1/models/fake/labels/nope", None, 200, None,
     "get_model_status_impl.cc: only model_spec.has_version() is read"),
    ("classify", "POST", "/v1/models/fake:classify", {"examples": [{"x": 1}]}, 400,
     "Expected classification signature method_name to be tensorflow/serving/classify. "
     "Was: tensorflow/serving/predict", "classifier.cc GetClassificationSignature"),
    ("regress", "POST", "/v1/models/fake:regress", {"examples": [{"x": 1}]}, 400,
     "Expected regression signature method_name to be tensorflow/serving/regress. "
     "Was: tensorflow/serving/predict", "regressor.cc GetRegressionSignature"),
    ("not /v1", "GET", "/v2/whatever", None, 404, None,
     "http_server.cc: kPathRegex (?i)/v1/.* does not match -> evhttp_send_error(NOT_FOUND)"),
]


@needs_tensorflow
@pytest.mark.parametrize("case", TF_SERVING_ANSWERS, ids=[c[0] for c in TF_SERVING_ANSWERS])
def test_rest_answers_as_tensorflow_serving(rest_server, case):
    what, method, path, body, code, text, source = case
    status, content_type, answer = raw_http(rest_server, method, path, body)
    assert (status, content_type) == (code, "application/json"), (what, source, answer)
    if code != 200:
        assert isinstance(answer.get("error"), str) and answer["error"], (what, answer)
    if text is not None and text.endswith("..."):
        assert answer["error"].startswith(text[:-3]) and len(answer["error"]) < 200, answer
    elif text is not None:
        assert answer["error"] == text, (what, source)


@needs_tensorflow
def test_rest_b64_object_is_a_value_in_row_and_columnar_format(rest_server):
    """json_tensor.cc: `IsValBase64Object` values are values, not objects of
    inputs (`IsElementObject` in FillTensorMapFromInstancesList, and
    FillTensorMapFromInputsMap's `!val.IsObject() || IsValBase64Object(val)`)."""
    status, _, body = raw_http(rest_server, "POST", PREDICT,
                               {"instances": [{"b64": "SGFsbG8="}, "ab"]})
    assert status == 200, body
    assert [p["translations"] for p in body["predictions"]] == [["v1:ollaH"], ["v1:ba"]]
    # Unpadded base64 is accepted (absl::Base64Unescape).
    status, _, body = raw_http(rest_server, "POST", PREDICT, {"instances": [{"b64": "SGFsbG8"}]})
    assert status == 200 and body["predictions"][0]["translations"] == ["v1:ollaH"], body
    # Columnar: a value of the batch input (a scalar: the wrong rank), not
    # an input named "b64".
    status, _, body = raw_http(rest_server, "POST", PREDICT, {"inputs": {"b64": "SGFsbG8="}})
    assert status == 400 and "has no input" not in body["error"], body
    assert "'inputs'" in body["error"], body


@needs_tensorflow
def test_rest_metadata_prints_fields_without_presence(rest_server):
    """http_rest_api_util.cc ToJsonString(GetModelMetadataResponse):
    always_print_primitive_fields + preserve_proto_field_names, as
    MessageToJsonString prints a SignatureDef."""
    status, _, body = raw_http(rest_server, "GET", "/v1/models/fake/metadata")
    assert status == 200, body
    assert body["model_spec"] == {"name": "fake", "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    inputs = signatures["serving_default"]["inputs"]
    assert list(inputs) == ["inputs"]
    assert inputs["inputs"]["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}],
                                                "unknown_rank": False}
    inputs = signatures[OPTIONS]["inputs"]
    assert inputs["beam_size"]["tensor_shape"] == {"dim": [], "unknown_rank": False}
    assert inputs["beam_size"]["dtype"] == "DT_INT32"


@needs_tensorflow
def test_rest_chunked_body_over_the_limit_is_refused_while_read(rest_server):
    """A chunked body has no Content-Length: it is counted while read and
    refused with 413 once over max_message_bytes (200,000 here), as
    libevent's evhttp (TF Serving's net_http) counts chunks against
    max_body_size (HTTP_ENTITYTOOLARGE), rather than cut and parsed."""
    import http.client

    def send(chunks):
        connection = http.client.HTTPConnection("127.0.0.1", rest_server.rest_api_port,
                                                timeout=30)
        try:
            connection.request("POST", PREDICT, body=iter(chunks), encode_chunked=True,
                               headers={"Transfer-Encoding": "chunked"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    big = [b'{"instances": ["', b"a" * 150_000, b"b" * 150_000, b'"]}']
    status, body = send(big)
    assert status == 413 and "max_message_bytes" in body["error"], body
    status, body = send([b'{"instances": ', b'["Hallo"]}'])
    assert status == 200 and body["predictions"][0]["translations"] == ["v1:ollaH"], body


@needs_tensorflow
def test_rest_unexpected_error_answers_json_and_logs_one_line(rest_server, monkeypatch):
    import io
    import logging

    from keras_rnn.serving import rest
    from keras_rnn.serving.observability import JsonFormatter, log

    def boom(data):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(rest, "PredictBody", boom)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    try:
        status, content_type, body = raw_http(rest_server, "POST", PREDICT,
                                              {"instances": ["a"]})
    finally:
        log.removeHandler(handler)
    assert (status, content_type) == (500, "application/json"), body
    assert body == {"error": "internal error: RuntimeError: boom\nsecond line"}
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["internal_error"], lines
    assert lines[0]["error"] == body["error"] and "_predict" in lines[0]["where"]


@needs_tensorflow
def test_rest_errors_do_not_name_the_served_models(rest_server):
    for method, path, body in (("GET", "/v1/models/nope", None),
                               ("GET", "/v1/models/nope/metadata", None),
                               ("POST", "/v1/models/nope:predict", {"instances": ["a"]})):
        status, _, answer = raw_http(rest_server, method, path, body)
        assert status == 404 and "fake" not in answer["error"], (path, answer)
