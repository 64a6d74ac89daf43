"""KServe's Open Inference Protocol (v2, `serving/kserve.py`, `kserve_rest.py`) over a real
loopback port: REST with http.client, gRPC with the stubs generated from
`serving/protos/keras_rnn/serving/grpc_predict_v2.proto`. Inference answers
the same translations as TensorFlow Serving's API for the same sentences;
unknown models, wrong datatypes and missing inputs are errors with the
protocol's `{"error": ...}` body (REST) or a status code (gRPC).

The requests follow the protocol's published example (KServe,
docs/predict-api/v2/required_api.md, "Inference Request Examples"):

    POST /v2/models/mymodel/infer HTTP/1.1
    {
      "id" : "42",
      "inputs" : [
        {"name" : "input0", "shape" : [ 2, 2 ], "datatype" : "UINT32",
         "data" : [ 1, 2, 3, 4 ]},
        {"name" : "input1", "shape" : [ 3 ], "datatype" : "BOOL", "data" : [ true ]}
      ],
      "outputs" : [ {"name" : "output0"} ]
    }

(`EXAMPLE` below, sent as published, is an error for a translator: it has
no input "input0"; `translation_request` is the same request with a
translator's input and output names and the BYTES datatype.)
"""

import http.client
import json

import numpy as np
import pytest

from tests.serving_support import (  # noqa: F401 - fixtures
    SENTENCES,
    expected,
    fake_versions,
    free_port,
    in_process,
    make_base,
    needs_tensorflow,
    outputs_of,
    predict_request,
    start_server,
    stub,
)

pytestmark = needs_tensorflow

EXAMPLE = {
    "id": "42",
    "inputs": [
        {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
        {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True]},
    ],
    "outputs": [{"name": "output0"}],
}


def translation_request(sentences, outputs=("translations",), **scalars):
    """The published example's shape, for a translator."""
    body = {"id": "42", "inputs": [
        {"name": "inputs", "shape": [len(sentences)], "datatype": "BYTES",
         "data": list(sentences)}]}
    for name, value in scalars.items():
        body["inputs"].append({"name": name, "shape": [1], "datatype": "INT32",
                               "data": [value]})
    if outputs:
        body["outputs"] = [{"name": name} for name in outputs]
    return body


@pytest.fixture(scope="module")
def v2_server(tmp_path_factory, fake_versions):
    """A batching server on the fake model version 1, REST API on."""
    base = make_base(tmp_path_factory.mktemp("kserve"), fake_versions)
    server = start_server(base, batch_timeout_ms=20, max_batch_size=16,
                          max_request_sentences=8, max_sentence_chars=200,
                          rest_api_port=free_port())
    yield server
    server.stop(grace=1)


def call(server, method, path, body=None):
    """(HTTP status, JSON body or None when empty) of one request."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_api_port, timeout=60)
    try:
        data = None if body is None else (body if isinstance(body, bytes)
                                          else json.dumps(body).encode())
        connection.request(method, path, body=data,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else None)
    finally:
        connection.close()


def v2_stub(server):
    import grpc

    from keras_rnn.serving import grpc_predict_v2_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    return channel, grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)


def tf_serving_outputs(server, sentences, **scalars):
    """TensorFlow Serving's Predict of the same sentences, on the signature
    the v2 model is (`kserve.model_signature`)."""
    import grpc

    from keras_rnn.serving.kserve import model_signature

    with server.manager.acquire("fake") as servable:
        signature = model_signature(servable)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        return outputs_of(stub(channel).Predict(
            predict_request(sentences, signature=signature, **scalars), timeout=60))


def test_rest_health_server_and_model_metadata(v2_server):
    assert call(v2_server, "GET", "/v2/health/live") == (200, None)
    assert call(v2_server, "GET", "/v2/health/ready") == (200, None)
    assert call(v2_server, "GET", "/v2/models/fake/ready") == (200, None)
    assert call(v2_server, "GET", "/v2/models/fake/versions/1/ready") == (200, None)
    assert call(v2_server, "GET", "/v2/models/fake/versions/7/ready") == (400, None)
    status, body = call(v2_server, "GET", "/v2/models/nope/ready")
    assert status == 404 and "error" in body
    status, body = call(v2_server, "GET", "/v2")
    assert status == 200 and body["name"] == "keras-rnn" and body["extensions"] == []
    status, body = call(v2_server, "GET", "/v2/models/fake/versions/1")
    assert status == 200, body
    assert body["name"] == "fake" and body["versions"] == ["1"]
    assert body["platform"] == "tensorflow_savedmodel"
    assert body["inputs"] == [
        {"name": "inputs", "datatype": "BYTES", "shape": [-1]},
        {"name": "beam_size", "datatype": "INT32", "shape": []},
        {"name": "max_length", "datatype": "INT32", "shape": []},
        {"name": "n_best", "datatype": "INT32", "shape": []}]
    assert {o["name"]: (o["datatype"], o["shape"]) for o in body["outputs"]} == {
        "translations": ("BYTES", [-1, -1]), "scores": ("FP32", [-1, -1]),
        "lengths": ("INT32", [-1, -1])}


def test_rest_infer_answers_the_translations_of_tf_serving(v2_server, in_process):
    sentences = SENTENCES[:4]
    status, body = call(v2_server, "POST", "/v2/models/fake/infer",
                        translation_request(sentences))
    assert status == 200, body
    assert body["id"] == "42" and body["model_name"] == "fake"
    assert body["model_version"] == "1"
    [output] = body["outputs"]
    reference = tf_serving_outputs(v2_server, sentences)["translations"]
    assert output["name"] == "translations" and output["datatype"] == "BYTES"
    assert output["shape"] == list(reference.shape) == [4, 1]
    assert output["data"] == [t.decode() for t in reference.ravel()]
    assert output["data"] == [t.decode() for t in
                              expected(in_process, sentences)["translations"].ravel()]
    # TensorFlow Serving's REST API, same sentences.
    status, predict = call(v2_server, "POST", "/v1/models/fake:predict",
                           {"instances": sentences})
    assert status == 200
    assert output["data"] == [p["translations"][0] for p in predict["predictions"]]


def test_rest_infer_every_output_scalars_and_nested_data(v2_server, in_process):
    body = translation_request(SENTENCES[:2], outputs=(), beam_size=3, n_best=2)
    body["inputs"][0]["data"] = [[s] for s in SENTENCES[:2]]  # nested: the same values
    body["inputs"][0]["shape"] = [2]
    status, answer = call(v2_server, "POST", "/v2/models/fake/versions/1/infer", body)
    assert status == 200, answer
    from keras_rnn.serving.kserve import model_signature

    want = expected(in_process, SENTENCES[:2], signature=model_signature(in_process),
                    beam_size=np.int32(3), n_best=np.int32(2))
    got = {o["name"]: o for o in answer["outputs"]}
    assert [o["name"] for o in answer["outputs"]] == sorted(want)
    assert got["translations"]["data"] == [t.decode() for t in want["translations"].ravel()]
    assert got["translations"]["shape"] == [2, 2]
    np.testing.assert_allclose(got["scores"]["data"], want["scores"].ravel())
    assert got["scores"]["datatype"] == "FP32" and got["lengths"]["datatype"] == "INT32"
    assert got["lengths"]["data"] == want["lengths"].ravel().tolist()


@pytest.mark.parametrize("path, body, status, words", [
    ("/v2/models/nope/infer", translation_request(["Hallo"]), 404, "not served"),
    ("/v2/models/fake/infer", EXAMPLE, 400, "unknown output(s) 'output0'"),
    ("/v2/models/fake/infer", {**EXAMPLE, "outputs": []}, 400, "no input 'input0'"),
    ("/v2/models/fake/infer",
     {"inputs": [{"name": "inputs", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
     400, "datatype 'FP32'; the model expects BYTES"),
    ("/v2/models/fake/infer",
     {"inputs": [{"name": "beam_size", "shape": [1], "datatype": "INT32", "data": [2]}]},
     400, "missing input(s) inputs"),
    ("/v2/models/fake/infer",
     {"inputs": [{"name": "inputs", "shape": [2], "datatype": "BYTES", "data": ["a"]}]},
     400, "holds 1 value"),
    ("/v2/models/fake/infer",
     {"inputs": [{"name": "inputs", "shape": [1], "datatype": "BYTES", "data": [1]}]},
     400, "datatype BYTES"),
    ("/v2/models/fake/infer", {"id": "1"}, 400, "'inputs'"),
    ("/v2/models/fake/infer", b"{not json", 400, "JSON Parse error"),
    ("/v2/models/fake/versions/x/infer", translation_request(["a"]), 400, "integer"),
    ("/v2/models/fake/versions/7/infer", translation_request(["a"]), 404, "version 7"),
    ("/v2/models/fake/infer", translation_request(["a"], outputs=("nope",)), 400, "nope"),
    ("/v2/nothing", None, 404, "no route"),
])
def test_rest_errors(v2_server, path, body, status, words):
    got, answer = call(v2_server, "POST" if body is not None else "GET", path, body)
    assert got == status, answer
    assert list(answer) == ["error"] and words in answer["error"], answer
    assert call(v2_server, "GET", "/v2/models/fake/infer")[0] == 405


def test_grpc_health_and_metadata(v2_server):
    from keras_rnn.serving import grpc_predict_v2_pb2 as pb2

    channel, v2 = v2_stub(v2_server)
    with channel:
        assert v2.ServerLive(pb2.ServerLiveRequest(), timeout=30).live
        assert v2.ServerReady(pb2.ServerReadyRequest(), timeout=30).ready
        assert v2.ModelReady(pb2.ModelReadyRequest(name="fake"), timeout=30).ready
        assert not v2.ModelReady(pb2.ModelReadyRequest(name="fake", version="3"),
                                 timeout=30).ready
        assert v2.ServerMetadata(pb2.ServerMetadataRequest(), timeout=30).name == "keras-rnn"
        metadata = v2.ModelMetadata(pb2.ModelMetadataRequest(name="fake"), timeout=30)
        assert list(metadata.versions) == ["1"]
        assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs][0] == (
            "inputs", "BYTES", [-1])


def test_grpc_infer_contents_and_raw_answer_as_tf_serving(v2_server):
    from keras_rnn.serving import grpc_predict_v2_pb2 as pb2
    from keras_rnn.serving.kserve import decode_bytes_raw, encode_bytes_raw

    sentences = SENTENCES[:3]
    reference = tf_serving_outputs(v2_server, sentences, n_best=2)
    data = [s.encode() for s in sentences]
    n_best = pb2.ModelInferRequest.InferInputTensor(name="n_best", datatype="INT32", shape=[1])
    channel, v2 = v2_stub(v2_server)
    with channel:
        request = pb2.ModelInferRequest(model_name="fake", id="42", inputs=[
            pb2.ModelInferRequest.InferInputTensor(
                name="inputs", datatype="BYTES", shape=[3],
                contents=pb2.InferTensorContents(bytes_contents=data)), n_best])
        request.inputs[1].contents.int_contents.append(2)
        response = v2.ModelInfer(request, timeout=60)
        assert response.id == "42" and response.model_version == "1"
        outputs = {o.name: o for o in response.outputs}
        assert list(outputs) == ["lengths", "scores", "translations"]
        assert list(outputs["translations"].contents.bytes_contents) == \
            reference["translations"].ravel().tolist()
        assert list(outputs["translations"].shape) == [3, 2]
        np.testing.assert_array_equal(outputs["scores"].contents.fp32_contents,
                                      reference["scores"].ravel())
        # The same request raw (4-byte little-endian lengths), as Triton's clients send it.
        raw = pb2.ModelInferRequest(model_name="fake", inputs=[
            pb2.ModelInferRequest.InferInputTensor(name="inputs", datatype="BYTES",
                                                   shape=[3]), n_best],
            raw_input_contents=[encode_bytes_raw(data), np.int32(2).tobytes()],
            outputs=[pb2.ModelInferRequest.InferRequestedOutputTensor(name="translations"),
                     pb2.ModelInferRequest.InferRequestedOutputTensor(name="scores")])
        response = v2.ModelInfer(raw, timeout=60)
        assert [o.name for o in response.outputs] == ["translations", "scores"]
        assert decode_bytes_raw(response.raw_output_contents[0], "translations") == \
            reference["translations"].ravel().tolist()
        np.testing.assert_array_equal(
            np.frombuffer(response.raw_output_contents[1], "<f4"), reference["scores"].ravel())


def test_grpc_errors(v2_server):
    import grpc

    from keras_rnn.serving import grpc_predict_v2_pb2 as pb2
    from tests.serving_support import rpc_details

    def infer(name="fake", datatype="BYTES", input_name="inputs", raw=None):
        tensor = pb2.ModelInferRequest.InferInputTensor(name=input_name, datatype=datatype,
                                                        shape=[1])
        if raw is None:
            tensor.contents.bytes_contents.append(b"Hallo")
        return pb2.ModelInferRequest(model_name=name, inputs=[tensor],
                                     raw_input_contents=[raw] if raw is not None else [])

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    channel, v2 = v2_stub(v2_server)
    with channel:
        for request, code, words in [
                (infer(name="nope"), grpc.StatusCode.NOT_FOUND, "not served"),
                (infer(datatype="FP32"), invalid, "the model expects BYTES"),
                (infer(input_name="beam_size", datatype="INT32", raw=b"\2\0\0\0"), invalid,
                 "missing input(s) inputs"),
                (infer(raw=b"\x09\0\0\0abc"), invalid, "runs past"),
                (infer(input_name="input0"), invalid, "no input 'input0'")]:
            got, details = rpc_details(v2.ModelInfer, request, timeout=30)
            assert got == code and words in details, (got, details)
        assert rpc_details(v2.ModelMetadata, pb2.ModelMetadataRequest(name="nope"),
                           timeout=30)[0] == grpc.StatusCode.NOT_FOUND
