"""The gRPC server and client against each other over real localhost ports.

Runs against the fake translator of `tests/serving_fakes.py` (same
SavedModel contract as `keras-rnn export`); `test_real_export_*` uses the
`exported_model` fixture when conftest provides one. The servers need only
TensorFlow, so the tests that start one run on the TensorFlow half of the
suite (`KERAS_BACKEND=tensorflow`).
"""

import datetime
import io
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.serving_fakes import FAKE_METADATA, build_fake_model, copy_version

ROOT = Path(__file__).resolve().parents[1]
needs_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the servers run on the TensorFlow half of the suite")
SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Hallo", "ab",
             "Ein Mädchen klettert.", "Straße", "x y z"]
SIGNATURE = "serving_default"
ALIGNMENTS = "translate_with_alignments"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fake_versions(tmp_path_factory):
    """Two fake versions built once: {1: dir, 2: dir} (outside any base dir)."""
    root = tmp_path_factory.mktemp("fake_versions")
    return {1: build_fake_model(root / "1", tag="v1:"),
            2: build_fake_model(root / "2", tag="v2:")}


def make_base(tmp_path, fake_versions, name="fake", versions=(1,)):
    """A model base directory `tmp_path/models/name/<versions>`."""
    model_dir = tmp_path / "models" / name
    model_dir.mkdir(parents=True)
    for version in versions:
        copy_version(fake_versions[version], model_dir / str(version))
    return tmp_path / "models"


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(base_dir, **overrides):
    from keras_rnn.serving.server import Server, ServerConfig

    config = ServerConfig(model_base_dir=str(base_dir), **{"port": 0, "poll_seconds": 0,
                                                           **overrides})
    server = Server(config)
    server.start()
    server.wait_until_ready(timeout=60)
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake_versions):
    """A batching server on the fake model version 1, with metrics."""
    base = make_base(tmp_path_factory.mktemp("server"), fake_versions)
    server = start_server(base, batch_timeout_ms=20, max_batch_size=16,
                          max_request_sentences=8, max_sentence_chars=200,
                          metrics_port=free_port())
    yield server
    server.stop(grace=1)


@pytest.fixture(scope="module")
def in_process(fake_versions):
    """The fake version 1 loaded in this process (the reference outputs)."""
    from keras_rnn.serving.models import Servable

    return Servable("fake", 1, fake_versions[1])


@pytest.fixture
def channel(server):
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


def stub(channel):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict_request(sentences, model="fake", signature=SIGNATURE, version=None, **scalars):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(
        [s.encode("utf-8") if isinstance(s, str) else s for s in sentences], tf.string))
    for name, value in scalars.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value, tf.int32))
    return request


def outputs_of(response):
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def expected(servable, sentences, signature=SIGNATURE, **scalars):
    inputs = {**servable.defaults[signature], **scalars,
              "inputs": np.array([s.encode("utf-8") for s in sentences], dtype=object)}
    return servable.predict(signature, inputs)


def assert_outputs_equal(actual, wanted):
    assert sorted(actual) == sorted(wanted)
    for name in wanted:
        np.testing.assert_array_equal(actual[name], wanted[name], err_msg=name)


def rpc_code(function, *args, **kwargs):
    import grpc

    try:
        function(*args, **kwargs)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


# ---------------------------------------------------------------- generated code


def test_generated_code_is_current(tmp_path):
    pytest.importorskip("grpc_tools")
    from keras_rnn.serving.protos import generate

    written = generate.generate(tmp_path)
    assert {p.name for p in written} == {"translator_pb2.py", "translator_pb2.pyi",
                                         "translator_pb2_grpc.py"}
    for path in written:
        committed = ROOT / "serving" / path.name
        assert committed.read_text() == path.read_text(), (
            f"{committed} is stale: run `python -m keras_rnn.serving.protos.generate`")


# ---------------------------------------------------------------- the API


@needs_tensorflow
@pytest.mark.parametrize("signature", [SIGNATURE, ALIGNMENTS])
def test_stock_predict_equals_in_process(server, in_process, channel, signature):
    sentences = SENTENCES[:4]
    # Defaults omitted: the server fills them from the SignatureDef.
    response = stub(channel).Predict(predict_request(sentences, signature=signature),
                                     timeout=10)
    assert response.model_spec.name == "fake"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == signature
    assert_outputs_equal(outputs_of(response), expected(in_process, sentences, signature))
    # Explicit scalars.
    response = stub(channel).Predict(
        predict_request(sentences, signature=signature, beam_size=3, n_best=3, max_length=5),
        timeout=10)
    assert_outputs_equal(outputs_of(response), expected(
        in_process, sentences, signature, beam_size=np.int32(3), n_best=np.int32(3),
        max_length=np.int32(5)))
    # output_filter and an explicit version.
    request = predict_request(sentences, signature=signature, version=1)
    request.output_filter.append("translations")
    response = stub(channel).Predict(request, timeout=10)
    assert list(response.outputs) == ["translations"]


@needs_tensorflow
def test_metadata_and_status(server, channel):
    import tensorflow as tf
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                         model_service_pb2_grpc)

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "fake"
    response = stub(channel).GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == {SIGNATURE, ALIGNMENTS}
    for key in (SIGNATURE, ALIGNMENTS):
        signature = signatures.signature_def[key]
        assert signature.method_name == "tensorflow/serving/predict"
        assert {k: v.dtype for k, v in signature.inputs.items()} == {
            "inputs": tf.string.as_datatype_enum, "beam_size": tf.int32.as_datatype_enum,
            "max_length": tf.int32.as_datatype_enum, "n_best": tf.int32.as_datatype_enum}
        defaults = {k: int(tf.make_ndarray(v)) for k, v in signature.defaults.items()}
        assert defaults == {"beam_size": FAKE_METADATA["beam_size"],
                            "max_length": FAKE_METADATA["max_length"], "n_best": 1}
    assert set(signatures.signature_def[SIGNATURE].outputs) == {
        "translations", "scores", "lengths"}
    assert signatures.signature_def[SIGNATURE].outputs["scores"].dtype == \
        tf.float32.as_datatype_enum
    assert set(signatures.signature_def[ALIGNMENTS].outputs) == {
        "translations", "scores", "lengths", "alignments", "source_pieces", "target_pieces"}

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "fake"
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        status_request, timeout=10)
    [version] = status.model_version_status
    assert version.version == 1
    assert version.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert version.status.error_code == 0


@needs_tensorflow
def test_translate_service(server, in_process):
    from keras_rnn.serving.client import TranslatorClient

    with TranslatorClient(f"127.0.0.1:{server.port}", timeout=10) as client:
        response = client.translate(SENTENCES[:3], n_best=2, beam_size=3, alignments=True)
        assert (response.model_name, response.version) == ("fake", 1)
        wanted = expected(in_process, SENTENCES[:3], ALIGNMENTS, beam_size=np.int32(3),
                          n_best=np.int32(2))
        for i, translation in enumerate(response.translations):
            assert translation.source == SENTENCES[i]
            assert [h.text.encode() for h in translation.hypotheses] == \
                list(wanted["translations"][i])
            np.testing.assert_allclose([h.score for h in translation.hypotheses],
                                       wanted["scores"][i])
            source = [p for p in wanted["source_pieces"][i] if p]
            assert [t.encode() for t in translation.source_tokens] == source
            for k, hypothesis in enumerate(translation.hypotheses):
                target = [p for p in wanted["target_pieces"][i, k] if p]
                assert [t.encode() for t in hypothesis.target_tokens] == target
                assert hypothesis.length == wanted["lengths"][i, k] == len(target)
                weights = np.reshape(hypothesis.alignment.weights,
                                     (hypothesis.alignment.target_length,
                                      hypothesis.alignment.source_length))
                np.testing.assert_allclose(
                    weights, wanted["alignments"][i, k, :len(target), :len(source)])
        plain = client.translate(["Hallo"])
        assert [h.text for h in plain.translations[0].hypotheses] == ["v1:ollaH"]
        assert not plain.translations[0].source_tokens


# ---------------------------------------------------------------- batching


@needs_tensorflow
def test_concurrent_requests_are_batched_and_equal_unbatched(server, in_process):
    import grpc

    from keras_rnn.serving.client import TranslatorClient

    registry = server.metrics.registry

    def batch_counts():
        return (registry.get_sample_value("keras_rnn_batch_size_bucket",
                                          {"model": "fake", "le": "1.0"}) or 0,
                registry.get_sample_value("keras_rnn_batch_size_count", {"model": "fake"}) or 0)

    ones_before, count_before = batch_counts()
    rng = random.Random(0)
    jobs = []
    for i in range(200):
        sentences = rng.sample(SENTENCES, rng.randint(1, 3))
        scalars = rng.choice([{}, {"beam_size": 3, "n_best": 2}])
        jobs.append((i % 4 == 0, sentences, scalars))
    results = [None] * len(jobs)
    errors = []
    lock = threading.Lock()
    cursor = iter(range(len(jobs)))

    def worker():
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel, \
                TranslatorClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            while True:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                typed, sentences, scalars = jobs[index]
                try:
                    if typed:
                        response = client.translate(sentences, **scalars)
                        results[index] = [[h.text.encode() for h in t.hypotheses]
                                          for t in response.translations]
                    else:
                        results[index] = outputs_of(stub(channel).Predict(
                            predict_request(sentences, **scalars), timeout=30))
                except grpc.RpcError as error:
                    errors.append((index, error.code(), error.details()))

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    for (typed, sentences, scalars), result in zip(jobs, results):
        wanted = expected(in_process, sentences,
                          **{k: np.int32(v) for k, v in scalars.items()})
        if typed:
            assert result == [list(row) for row in wanted["translations"]]
        else:
            assert_outputs_equal(result, wanted)
    ones, count = batch_counts()
    assert count > count_before
    assert count - count_before > ones - ones_before, "no batch merged two requests"
    assert registry.get_sample_value("keras_rnn_requests_total", {
        "method": "Predict", "model": "fake", "code": "OK"}) >= 150


@needs_tensorflow
def test_no_batching_gives_the_same_results(tmp_path, fake_versions, in_process):
    from keras_rnn.serving.client import TranslatorClient

    server = start_server(make_base(tmp_path, fake_versions), batching=False)
    try:
        assert all(s.batcher is None for s in server.manager._served["fake"].values())
        with TranslatorClient(f"127.0.0.1:{server.port}", timeout=10) as client:
            outputs = client.predict(SENTENCES, signature=ALIGNMENTS, beam_size=2, n_best=2)
        assert outputs.pop("version") == 1
        assert_outputs_equal(outputs, expected(in_process, SENTENCES, ALIGNMENTS,
                                               beam_size=np.int32(2), n_best=np.int32(2)))
    finally:
        server.stop(grace=1)


def test_batcher_splits_merges_and_trims():
    """Unit test of the batcher with a NumPy 'model' (no TensorFlow)."""
    from keras_rnn.serving.batching import Batcher, BatchingOptions, QueueFullError

    calls = []

    def run(key, sentences):
        calls.append(len(sentences))
        width = max(len(s) for s in sentences) + 1
        pieces = np.full((len(sentences), width), b"", dtype=object)
        for i, s in enumerate(sentences):
            pieces[i, :len(s)] = [bytes([c]) for c in s]
            pieces[i, len(s)] = b"</s>"
        return {"translations": np.array([s[::-1] for s in sentences], dtype=object),
                "source_pieces": pieces}

    batcher = Batcher(run, BatchingOptions(max_batch_size=4, batch_timeout_s=0.05,
                                           max_enqueued_batches=3, max_queued_sentences=10))
    try:
        first = batcher.submit("k", [b"abc", b"d"])
        second = batcher.submit("k", [b"efghij", b"k", b"lm"])  # splits across 2 batches
        other = batcher.submit("other", [b"xy"])
        out = second.result(5)
        assert list(out["translations"]) == [b"jihgfe", b"k", b"ml"]
        assert out["source_pieces"].shape == (3, 7)
        out = first.result(5)
        assert list(out["translations"]) == [b"cba", b"d"]
        assert out["source_pieces"].shape == (2, 4)  # trimmed to its own longest
        assert list(other.result(5)["translations"]) == [b"yx"]
        assert sorted(calls) == [1, 1, 4]
        with pytest.raises(QueueFullError, match="max_queued_sentences"):
            batcher.submit("k", [b"a"] * 11)
    finally:
        batcher.stop()


# ---------------------------------------------------------------- bad requests


@needs_tensorflow
def test_bad_requests_get_the_right_status_and_the_server_keeps_serving(server, channel):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (classification_pb2, get_model_status_pb2,
                                         model_service_pb2_grpc)

    codes = grpc.StatusCode
    service = stub(channel)

    def with_input(request, proto):
        request.inputs["inputs"].CopyFrom(proto)
        return request

    unknown_model = predict_request(["Hallo"], model="nope")
    unknown_version = predict_request(["Hallo"], version=7)
    label = predict_request(["Hallo"])
    label.model_spec.version_label = "stable"
    unknown_signature = predict_request(["Hallo"], signature="nope")
    unknown_input = predict_request(["Hallo"])
    unknown_input.inputs["bogus"].CopyFrom(tf.make_tensor_proto(1))
    unknown_output = predict_request(["Hallo"])
    unknown_output.output_filter.append("bogus")
    matrix = with_input(predict_request([]), tf.make_tensor_proto([[b"a", b"b"]], tf.string))
    floats = with_input(predict_request([]), tf.make_tensor_proto([1.0, 2.0], tf.float32))
    scalar_string = with_input(predict_request([]), tf.make_tensor_proto(b"a", tf.string))
    float_beam = predict_request(["Hallo"])
    float_beam.inputs["beam_size"].CopyFrom(tf.make_tensor_proto(2.0, tf.float32))
    vector_beam = predict_request(["Hallo"])
    vector_beam.inputs["beam_size"].CopyFrom(tf.make_tensor_proto([2, 2], tf.int32))
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "nope"
    cases = [
        ("unknown model", service.Predict, unknown_model, codes.NOT_FOUND),
        ("unknown version", service.Predict, unknown_version, codes.NOT_FOUND),
        ("version label", service.Predict, label, codes.UNIMPLEMENTED),
        ("unknown signature", service.Predict, unknown_signature, codes.FAILED_PRECONDITION),
        ("unknown input", service.Predict, unknown_input, codes.INVALID_ARGUMENT),
        ("unknown output", service.Predict, unknown_output, codes.INVALID_ARGUMENT),
        ("2-D strings", service.Predict, matrix, codes.INVALID_ARGUMENT),
        ("float sentences", service.Predict, floats, codes.INVALID_ARGUMENT),
        ("scalar sentence", service.Predict, scalar_string, codes.INVALID_ARGUMENT),
        ("float beam_size", service.Predict, float_beam, codes.INVALID_ARGUMENT),
        ("vector beam_size", service.Predict, vector_beam, codes.INVALID_ARGUMENT),
        ("empty batch", service.Predict, predict_request([]), codes.INVALID_ARGUMENT),
        ("invalid UTF-8", service.Predict, predict_request([b"ok", b"\xff\xfe"]),
         codes.INVALID_ARGUMENT),
        ("too many characters", service.Predict, predict_request(["x" * 201]),
         codes.INVALID_ARGUMENT),
        # 41 characters pass the server's check (200) but not the graph's
        # max_source_tokens=40: the graph's InvalidArgumentError.
        ("too many tokens", service.Predict, predict_request(["y" * 41]),
         codes.INVALID_ARGUMENT),
        ("batch too large", service.Predict, predict_request(["a"] * 9),
         codes.INVALID_ARGUMENT),
        ("beam_size 0", service.Predict, predict_request(["a"], beam_size=0),
         codes.INVALID_ARGUMENT),
        ("beam_size > max", service.Predict, predict_request(["a"], beam_size=5),
         codes.INVALID_ARGUMENT),
        ("n_best > beam_size", service.Predict, predict_request(["a"], beam_size=2, n_best=3),
         codes.INVALID_ARGUMENT),
        ("max_length > limit", service.Predict, predict_request(["a"], max_length=51),
         codes.INVALID_ARGUMENT),
        ("classify", service.Classify, classification_pb2.ClassificationRequest(),
         codes.UNIMPLEMENTED),
        ("status of unknown model",
         model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus, status_request,
         codes.NOT_FOUND),
    ]
    good = predict_request(["Hallo"])
    for name, method, request, code in cases:
        assert rpc_code(method, request, timeout=10) == code, name
        assert outputs_of(service.Predict(good, timeout=10))["translations"][0, 0] == \
            b"v1:ollaH", f"after {name}"


@needs_tensorflow
def test_a_bad_sentence_does_not_fail_the_requests_batched_with_it(server):
    """The graph rejects a too-long sentence only when its batch runs; the
    batcher reruns the batch's requests alone so only that one fails."""
    import grpc

    service_target = f"127.0.0.1:{server.port}"
    results = {}

    def send(name, sentences):
        with grpc.insecure_channel(service_target) as channel:
            results[name] = rpc_code(stub(channel).Predict, predict_request(sentences),
                                     timeout=10)

    threads = [threading.Thread(target=send, args=(f"good{i}", ["Hallo"])) for i in range(4)]
    threads.append(threading.Thread(target=send, args=("bad", ["z" * 41])))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results.pop("bad") == grpc.StatusCode.INVALID_ARGUMENT
    assert set(results.values()) == {grpc.StatusCode.OK}


@needs_tensorflow
def test_expired_deadline(server, channel):
    import grpc

    assert rpc_code(stub(channel).Predict, predict_request(["Hallo"]), timeout=0.001) == \
        grpc.StatusCode.DEADLINE_EXCEEDED
    assert stub(channel).Predict(predict_request(["Hallo"]), timeout=10).outputs


@needs_tensorflow
def test_fuzzed_request_bytes_never_crash_the_server(server, channel):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    methods = ["/tensorflow.serving.PredictionService/Predict",
               "/tensorflow.serving.PredictionService/GetModelMetadata",
               "/tensorflow.serving.ModelService/GetModelStatus",
               "/keras_rnn.serving.Translator/Translate"]
    good = predict_request(["Hallo"]).SerializeToString()
    rng = random.Random(1)
    seen = {}
    for i in range(300):
        if i % 3 == 0:  # mutate a valid request: reaches the tensor parsing
            data = bytearray(good)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        else:
            data = rng.randbytes(rng.randint(0, 200))
        method = methods[i % len(methods)] if i % 3 else methods[0]
        call = channel.unary_unary(method, request_serializer=None,
                                   response_deserializer=None)
        code = rpc_code(call, data, timeout=10)
        seen[code] = seen.get(code, 0) + 1
        assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                            grpc.StatusCode.UNAVAILABLE), (method, data, code)
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                       timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert stub(channel).Predict(predict_request(["Hallo"]), timeout=10).outputs
    assert grpc.StatusCode.INVALID_ARGUMENT in seen


# ---------------------------------------------------------------- health, reflection, metrics


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


# ---------------------------------------------------------------- hot reload


@needs_tensorflow
def test_hot_reload_under_load_and_a_corrupt_version(tmp_path, fake_versions):
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    base = make_base(tmp_path, fake_versions)
    server = start_server(base, poll_seconds=0.2, batch_timeout_ms=5)
    target = f"127.0.0.1:{server.port}"
    stop = threading.Event()
    errors, seen = [], []

    def client():
        with grpc.insecure_channel(target) as channel:
            while not stop.is_set():
                try:
                    response = stub(channel).Predict(predict_request(["Hallo"]), timeout=10)
                except grpc.RpcError as error:
                    errors.append((error.code(), error.details()))
                    continue
                version = response.model_spec.version.value
                text = outputs_of(response)["translations"][0, 0].decode()
                seen.append((time.monotonic(), version, text))

    def status(channel):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "fake"
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            request, timeout=10)
        return {s.version: s for s in response.model_version_status}

    def wait_for(predicate, what, timeout=20):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(seen) > 20, "first responses")
        # A version still being written (temporary name) is ignored.
        (base / "fake" / ".2.tmp-partial").mkdir()
        copy_version(fake_versions[2], base / "fake" / "2")
        switched = time.monotonic()
        wait_for(lambda: any(v == 2 for _, v, _ in seen), "version 2")
        time.sleep(0.5)
        with grpc.insecure_channel(target) as channel:
            wait_for(lambda: status(channel)[1].state ==
                     get_model_status_pb2.ModelVersionStatus.END, "version 1 unloaded")
            # A corrupt version 3 (truncated saved_model.pb) does not replace 2.
            corrupt = base / "fake" / ".3.tmp-copy"
            shutil.copytree(fake_versions[2], corrupt)
            pb = corrupt / "saved_model.pb"
            pb.write_bytes(pb.read_bytes()[:100])
            os.rename(corrupt, base / "fake" / "3")
            wait_for(lambda: 3 in status(channel) and status(channel)[3].state ==
                     get_model_status_pb2.ModelVersionStatus.END, "version 3 failed")
            version3 = status(channel)[3]
            assert version3.status.error_code != 0 and version3.status.error_message
            time.sleep(0.5)
            states = status(channel)
            assert states[2].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        server.stop(grace=1)
    assert not errors, errors[:5]
    assert {v for _, v, _ in seen} == {1, 2}
    for when, version, text in seen:
        assert text == f"v{version}:ollaH"
    # Once version 2 answered, version 1 never answered again (only
    # requests already in flight at the switch may still be version 1).
    first_v2 = min(t for t, v, _ in seen if v == 2)
    assert all(v == 2 for t, v, _ in seen if t > first_v2 + 1.0)
    assert switched <= first_v2
    assert seen[-1][1] == 2


# ---------------------------------------------------------------- shutdown


@needs_tensorflow
def test_queued_request_deadline_and_graceful_shutdown(tmp_path, fake_versions):
    """With a 1.5 s batch timeout a lone request waits in the queue: its
    deadline passes there (DEADLINE_EXCEEDED), or a shutdown lets it finish."""
    import grpc

    server = start_server(make_base(tmp_path, fake_versions), batch_timeout_ms=1500)
    target = f"127.0.0.1:{server.port}"
    with grpc.insecure_channel(target) as channel:
        start = time.monotonic()
        assert rpc_code(stub(channel).Predict, predict_request(["Hallo"]), timeout=0.3) == \
            grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - start < 1.4
        result = {}

        def in_flight():
            result["response"] = stub(channel).Predict(predict_request(["Hallo"]), timeout=20)

        thread = threading.Thread(target=in_flight)
        thread.start()
        time.sleep(0.3)
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 10})
        stopper.start()
        time.sleep(0.2)
        assert rpc_code(stub(channel).Predict, predict_request(["Hallo"]), timeout=5) == \
            grpc.StatusCode.UNAVAILABLE
        thread.join(20)
        stopper.join(20)
    assert outputs_of(result["response"])["translations"][0, 0] == b"v1:ollaH"


# ---------------------------------------------------------------- TLS


def _certificates(directory):
    """A throwaway CA, a server certificate for localhost / 127.0.0.1 and a
    client certificate, as PEM files in `directory`."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common_name):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def certificate(subject, key, issuer, issuer_key, ca=False, usage=None, san=None):
        builder = (x509.CertificateBuilder().subject_name(name(subject))
                   .issuer_name(name(issuer)).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                                  critical=True))
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(stem, cert, key):
        (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test CA", ca_key, "test CA", ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = certificate("localhost", server_key, "test CA", ca_key,
                         usage=ExtendedKeyUsageOID.SERVER_AUTH,
                         san=[x509.DNSName("localhost"),
                              x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = certificate("client", client_key, "test CA", ca_key,
                         usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    other_ca_key = ec.generate_private_key(ec.SECP256R1())
    stranger = certificate("stranger", client_key, "other CA", other_ca_key,
                           usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    write("ca", ca, ca_key)
    write("server", server, server_key)
    write("client", client, client_key)
    write("stranger", stranger, client_key)
    return directory


@needs_tensorflow
def test_mutual_tls(tmp_path, fake_versions):
    import grpc

    from keras_rnn.serving.client import TranslatorClient

    pytest.importorskip("cryptography")
    certs = tmp_path / "certs"
    certs.mkdir()
    _certificates(certs)
    server = start_server(make_base(tmp_path, fake_versions),
                          tls_cert=str(certs / "server.pem"), tls_key=str(certs / "server.key"),
                          tls_client_ca=str(certs / "ca.pem"))
    target = f"localhost:{server.port}"
    try:
        with TranslatorClient(target, timeout=10, tls_ca=certs / "ca.pem",
                              tls_cert=certs / "client.pem",
                              tls_key=certs / "client.key") as client:
            assert client.translate(["Hallo"]).translations[0].hypotheses[0].text == \
                "v1:ollaH"
            assert client.health() == "SERVING"
        for options in ({}, {"tls_cert": certs / "stranger.pem",
                             "tls_key": certs / "client.key"}):
            with TranslatorClient(target, timeout=5, tls_ca=certs / "ca.pem",
                                  **options) as client:
                assert rpc_code(client.translate, ["Hallo"]) == grpc.StatusCode.UNAVAILABLE
        with TranslatorClient(target, timeout=5) as plaintext:
            assert rpc_code(plaintext.translate, ["Hallo"]) == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=1)


# ---------------------------------------------------------------- the CLIs


@needs_tensorflow
def test_client_cli(server):
    from keras_rnn.cli import main

    def client_main(argv):
        return main(["translate", *argv])

    target = f"127.0.0.1:{server.port}"
    out, err = io.StringIO(), io.StringIO()
    sys_stdout, sys_stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        assert client_main(["--server", target, "Ein Mann", "ab"]) == 0
        assert client_main(["--server", target, "--n-best", "2", "--beam-size", "3",
                            "ab"]) == 0
        assert client_main(["--server", target, "--beam-size", "99", "ab"]) == 2
        assert client_main(["--server", target, "--model", "nope", "ab"]) == 2
    finally:
        sys.stdout, sys.stderr = sys_stdout, sys_stderr
    assert out.getvalue() == ("v1:nnaM niE\nv1:ba\n"
                              "1\t-0.3333\tv1:ba\n2\t-0.6667\tv1:ba #1\n\n")
    assert "INVALID_ARGUMENT" in err.getvalue() and "beam_size=99" in err.getvalue()
    assert "NOT_FOUND" in err.getvalue() and "'nope'" in err.getvalue()

    # stdin, line by line (a bad line is reported, the next still translates)
    from keras_rnn.cli import add_client_arguments
    from keras_rnn.serving.client import run_client
    import argparse

    args = add_client_arguments(argparse.ArgumentParser()).parse_args(["--server", target])
    out, err = io.StringIO(), io.StringIO()
    status = run_client(args, stdin=io.StringIO("Hallo\n" + "q" * 300 + "\nab\n"),
                        stdout=out, stderr=err)
    assert status == 2
    assert out.getvalue() == "v1:ollaH\nv1:ba\n"
    assert "300 characters" in err.getvalue()

    # no server there: UNAVAILABLE, exit status 1
    args = add_client_arguments(argparse.ArgumentParser()).parse_args(
        ["--server", f"127.0.0.1:{free_port()}", "--timeout", "2", "x"])
    err = io.StringIO()
    assert run_client(args, stdout=io.StringIO(), stderr=err) == 1
    assert "UNAVAILABLE" in err.getvalue()


@needs_tensorflow
def test_serve_cli_prints_ready_line_and_stops_on_sigterm(tmp_path, fake_versions):
    base = make_base(tmp_path, fake_versions)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_rnn", "serve", "--model-base-dir", str(base), "--port", "0",
         "--poll-seconds", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        ready = time.monotonic() - start
        assert line.startswith("serving fake version 1 on 127.0.0.1:"), (
            line, process.stderr.read() if process.poll() is not None else "")
        port = int(line.strip().rsplit(":", 1)[1])
        assert ready < 15, f"ready after {ready:.1f} s"
        from keras_rnn.serving.client import TranslatorClient

        with TranslatorClient(f"127.0.0.1:{port}", timeout=10) as client:
            assert client.translate(["ab"]).translations[0].hypotheses[0].text == "v1:ba"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        logs = [json.loads(line) for line in process.stderr.read().splitlines()
                if line.startswith("{")]
        events = [entry["event"] for entry in logs]
        assert "server_ready" in events and "server_stopped" in events
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- the real export


@needs_tensorflow
def test_real_export_serves_like_in_process(request, tmp_path):
    """Against a model exported by `keras-rnn export` (conftest's
    `exported_model` fixture: a base dir holding NAME/1/)."""
    try:
        base = Path(request.getfixturevalue("exported_model"))
    except pytest.FixtureLookupError:
        pytest.skip("no exported_model fixture in conftest")
    from keras_rnn.serving.client import TranslatorClient
    from keras_rnn.serving.models import Servable

    [model_dir] = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")]
    version = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    reference = Servable(model_dir.name, version, model_dir / str(version))
    server = start_server(base, batch_timeout_ms=20)
    try:
        assert server.ready_seconds < 15
        sentences = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Hallo"]
        with TranslatorClient(f"127.0.0.1:{server.port}", timeout=60) as client:
            outputs = client.predict(sentences, model=model_dir.name)
            assert outputs.pop("version") == version
            wanted = expected(reference, sentences)
            assert sorted(outputs) == sorted(wanted)
            np.testing.assert_array_equal(outputs["translations"], wanted["translations"])
            np.testing.assert_allclose(outputs["scores"], wanted["scores"], rtol=1e-5)
            response = client.translate(sentences, model=model_dir.name, n_best=2,
                                        beam_size=2, alignments=True)
            assert len(response.translations) == 3
            for translation in response.translations:
                assert len(translation.hypotheses) == 2
                assert translation.source_tokens[-1] == "</s>"
                alignment = translation.hypotheses[0].alignment
                assert alignment.source_length == len(translation.source_tokens)
                rows = np.reshape(alignment.weights,
                                  (alignment.target_length, alignment.source_length))
                np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-4)
            assert client.health() == "SERVING"
    finally:
        server.stop(grace=1)


@needs_tensorflow
def test_a_stock_client_without_a_deadline_gets_a_batched_translation(tmp_path, fake_versions):
    """Stock clients send no deadline by default; gRPC then reports a
    time_remaining() too large for a thread wait (it was INTERNAL:
    OverflowError, found by `make image-test`)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    server = start_server(make_base(tmp_path, fake_versions))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "fake"
            request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(["abc"]))
            response = stub.Predict(request)  # no timeout
        assert tf.make_ndarray(response.outputs["translations"])[0, 0] == b"v1:cba"
    finally:
        server.stop(0)
