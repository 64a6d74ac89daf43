"""The whole story: a trained model, exported, served, and asked over gRPC by
a stock TensorFlow Serving client; the quickstart; the container files."""

import argparse
import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.support import BACKEND, MULTI30K, ROOT, write_config

SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.",
             "Eine Frau mit einem roten Hut singt auf der Straße."]


def test_a_stock_prediction_service_stub_gets_the_models_translations(
        trained_run, exported_model):
    """Trained on this backend, exported on TensorFlow, served by `serve`:
    `PredictionServiceStub.Predict` with only `inputs` (serving_default's
    one input; it decodes with the export's settings) returns what the Keras
    model translates."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from keras_rnn.serving.server import Server, ServerConfig
    from keras_rnn.training.evaluate import Translator

    expected, result = Translator(trained_run).translate(SENTENCES, n_best=1)
    server = Server(ServerConfig(model_base_dir=str(exported_model), port=0))
    server.start()
    try:
        server.wait_until_ready(60)
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "tiny"
            request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(SENTENCES))
            response = stub.Predict(request, timeout=60)
            assert response.model_spec.version.value == 1
            got = tf.make_ndarray(response.outputs["translations"])
            assert [t.decode() for t in got[:, 0]] == expected
            np.testing.assert_allclose(tf.make_ndarray(response.outputs["scores"]),
                                       np.asarray(result.scores)[:, :1], atol=1e-4)
            metadata = stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec=request.model_spec, metadata_field=["signature_def"]), timeout=10)
            assert metadata.model_spec.version.value == 1
    finally:
        server.stop(1)


def test_batched_requests_of_the_real_model_equal_unbatched_ones(exported_model):
    """32 concurrent one-sentence requests, merged into batches of sentences
    of different lengths (padding), get what each sentence gets alone."""
    import threading

    import tensorflow as tf

    from keras_rnn.serving.client import TranslatorClient
    from keras_rnn.serving.server import Server, ServerConfig
    from keras_rnn.training.tokenizer import register_tf_text_ops

    sentences = (MULTI30K / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[:64]
    register_tf_text_ops()
    alone = tf.saved_model.load(str(exported_model / "tiny" / "1")).signatures["serving_default"]
    expected = []
    for sentence in sentences:
        out = alone(inputs=tf.constant([sentence]))  # the export's beam 3, max_length 48
        expected.append((out["translations"].numpy()[0, 0], out["scores"].numpy()[0, 0]))
    server = Server(ServerConfig(model_base_dir=str(exported_model), port=0,
                                 batch_timeout_ms=20))
    server.start()
    got, errors = [None] * len(sentences), []
    try:
        server.wait_until_ready(60)

        def client(start):
            try:
                with TranslatorClient(f"127.0.0.1:{server.port}", timeout=60) as c:
                    for i in range(start, len(sentences), 32):
                        out = c.predict([sentences[i]], model="tiny")
                        got[i] = (out["translations"][0, 0], out["scores"][0, 0])
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        registry, labels = server.metrics.registry, {"model": "tiny"}
        merged = (registry.get_sample_value("keras_rnn_batch_size_count", labels)
                  - registry.get_sample_value("keras_rnn_batch_size_bucket",
                                              {**labels, "le": "1.0"}))  # > 1 sentence
    finally:
        server.stop(1)
    assert not errors, errors
    assert [g[0] for g in got] == [e[0] for e in expected]
    np.testing.assert_allclose([g[1] for g in got], [e[1] for e in expected], atol=1e-4)
    assert merged > 0


@pytest.mark.skipif(BACKEND != "tensorflow", reason="one run is enough (it trains)")
def test_the_quickstart_trains_exports_serves_translates_and_stops(tmp_path):
    """`make quickstart` (`python -m keras_rnn.serving.quickstart`) with the tiny config."""
    from keras_rnn.training.evaluate import Translator

    if not MULTI30K.exists():
        pytest.skip("no shared Multi30k copy")
    config = write_config(tmp_path, "tiny")
    command = [sys.executable, "-m", "keras_rnn.serving.quickstart", "--config", str(config),
               "--run", str(tmp_path / "run"), "--models", str(tmp_path / "models"),
               "--sentences", *SENTENCES]
    env = dict(os.environ, MULTI30K_DIR=str(MULTI30K), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(re.match(r"==> serving on 127\.0\.0\.1:\d+ after", line) for line in lines)
    assert lines[-1] == "==> stopping the server"
    start = lines.index(next(line for line in lines if line.startswith("==> keras-rnn translate")))
    printed = lines[start + 1:-1]
    expected, _ = Translator(tmp_path / "run").translate(SENTENCES)
    assert printed == expected
    assert [p.name for p in (tmp_path / "models" / "quick").iterdir()] == ["1"]
    # A second run reuses the trained model and the export.
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0 and "is up to date" in again.stdout
    assert again.stdout.splitlines()[-1 - len(SENTENCES):-1] == expected


# ------------------------------------------------------------ containers


def serve_parser():
    from keras_rnn.cli import add_serve_arguments

    class Strict(argparse.ArgumentParser):
        def error(self, message):
            raise AssertionError(f"keras-rnn serve rejects the arguments: {message}")

    return add_serve_arguments(Strict(prog="keras-rnn serve"))


def dockerfile_instructions():
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [(line.split(None, 1)[0], line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


def test_the_dockerfile_installs_like_the_readme_and_runs_serve():
    """Multi-stage: pip installs (not editable) with the README's constraints
    and only the tensorflow and serving extras; the runtime runs `serve`
    as a non-root user. `make image-test` builds and runs it for real."""
    instructions = dockerfile_instructions()
    runs = [args for op, args in instructions if op == "RUN"]
    [install] = [r for r in runs if " install " in r and "pip" in r]
    assert "-c requirements/constraints.txt" in install and " -e " not in install
    extras = re.search(r'"\.\[([\w,]+)\]"', install).group(1).split(",")
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    defined = set(setup["options.extras_require"])
    assert set(extras) <= defined and set(extras) == {"tensorflow", "serving"}
    for op, args in instructions:
        if op == "COPY" and not args.startswith("--from"):
            for source in shlex.split(args)[:-1]:
                assert (ROOT / source).exists(), source
    ops = [op for op, _ in instructions]
    assert ops.count("FROM") == 2 and "VOLUME" not in ops and "HEALTHCHECK" in ops
    user = [args for op, args in instructions if op == "USER"][-1]
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0"
    entrypoint = yaml.safe_load(dict(instructions)["ENTRYPOINT"])
    cmd = yaml.safe_load(dict(instructions)["CMD"])
    assert entrypoint == ["keras-rnn", "serve"]
    args = serve_parser().parse_args(cmd)
    assert args.host == "0.0.0.0" and args.port == 8500 and args.model_base_dir == "/models"
    assert args.metrics_host == "0.0.0.0"
    assert "8500" in dict(instructions)["EXPOSE"].split()


def test_the_compose_file_runs_our_service_and_tensorflow_serving_on_one_model_dir():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    ours, stock = compose["services"]["keras-rnn"], compose["services"]["tensorflow-serving"]
    args = serve_parser().parse_args(ours["command"])
    assert args.model_base_dir == "/models" and args.host == "0.0.0.0"
    ports = [p.split(":") for p in ours["ports"] + stock["ports"]]
    assert all(host == "127.0.0.1" for host, _, _ in ports)  # localhost only
    assert [p[2] for p in ports[:1]] == [str(args.port)]
    assert len({p[1] for p in ports}) == len(ports)  # no host port twice
    assert ours["volumes"] == stock["volumes"]
    assert ours["volumes"][0].split("}:")[1] == "/models:ro"
    constraints = (ROOT / "requirements" / "constraints.txt").read_text()
    api = re.search(r"^tensorflow-serving-api==(\S+)$", constraints, re.M).group(1)
    assert stock["image"].endswith(f":-{api}}}")
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True).returncode == 0:
        subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"),
                        "config", "--quiet"], check=True, cwd=ROOT)
