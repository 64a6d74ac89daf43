"""Shared fixtures and helpers of the serving tests (`tests/serving/`).

The servers run against the fake translator of `tests/serving_fakes.py`
(same SavedModel contract as `keras-rnn export`) over real localhost ports.
They need only TensorFlow, so the tests that start one run on the
TensorFlow half of the suite (`KERAS_BACKEND=tensorflow`). Test modules
import the fixtures they use by name (module-scoped: one server per module).
"""

from pathlib import Path

import keras
import numpy as np
import pytest

from tests.serving_fakes import FAKE_METADATA, build_fake_model, copy_version  # noqa: F401
from tests.support import free_port  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
needs_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the servers run on the TensorFlow half of the suite")
SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Hallo", "ab",
             "Ein Mädchen klettert.", "Straße", "x y z"]
SIGNATURE = "serving_default"
OPTIONS = "translate_with_options"
ALIGNMENTS = "translate_with_alignments"


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


def rpc_details(function, *args, **kwargs):
    """(status code, details) of a call; (OK, "") when it succeeds."""
    import grpc

    try:
        function(*args, **kwargs)
    except grpc.RpcError as error:
        return error.code(), error.details()
    return grpc.StatusCode.OK, ""


def rss_bytes():
    """This process's resident memory now (Linux), in bytes."""
    import os

    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples this process's RSS every few milliseconds in a thread:
    `with PeakRss() as peak: ...; peak.growth` is the highest RSS seen above
    the RSS at the start (the servers of these tests run in process)."""

    def __enter__(self):
        import threading

        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self):
        return self.peak - self.start
