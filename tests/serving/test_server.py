"""The server process (`serving/server.py`): graceful shutdown, mutual TLS,
`keras-rnn serve`, and the real export served like in process.
"""

import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from pathlib import Path

import numpy as np
import pytest

from tests.serving_support import (  # noqa: F401 - fixtures
    expected,
    fake_versions,
    free_port,
    make_base,
    needs_tensorflow,
    outputs_of,
    predict_request,
    ROOT,
    rpc_code,
    start_server,
    stub)


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
        # No drain (the default): calls after NOT_SERVING are refused at
        # once (tests/serving/test_balancing.py covers --drain-seconds).
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 10})
        stopper.start()
        time.sleep(0.2)
        assert rpc_code(stub(channel).Predict, predict_request(["Hallo"]), timeout=5) == \
            grpc.StatusCode.UNAVAILABLE
        thread.join(20)
        stopper.join(20)
    assert outputs_of(result["response"])["translations"][0, 0] == b"v1:ollaH"


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
                          tls_client_ca=str(certs / "ca.pem"), rest_api_port=free_port())
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
        # The REST API shares the TLS settings: a client certificate is required.
        url = f"https://localhost:{server.rest_api_port}/v1/models/fake:predict"
        body = json.dumps({"instances": ["Hallo"]}).encode()
        context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        context.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
        stalled = socket.create_connection(("127.0.0.1", server.rest_api_port))  # no hello
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10,
                                    context=context) as response:
            assert json.loads(response.read())["predictions"][0]["translations"] == \
                ["v1:ollaH"]
        anonymous = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10,
                                   context=anonymous).read()
        stalled.close()
    finally:
        server.stop(grace=1)


@needs_tensorflow
def test_serve_cli_prints_ready_line_and_stops_on_sigterm(tmp_path, fake_versions):
    base = make_base(tmp_path, fake_versions)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_rnn.cli", "serve", "--model-base-dir", str(base), "--port", "0",
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
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        # Exits within a second of the signal (nothing in flight): the
        # interpreter's teardown took seconds after server_stopped.
        assert time.monotonic() - signalled < 1.0, time.monotonic() - signalled
        logs = [json.loads(line) for line in process.stderr.read().splitlines()
                if line.startswith("{")]
        events = [entry["event"] for entry in logs]
        assert "server_ready" in events and "server_stopped" in events
        [stopping] = [entry for entry in logs if entry["event"] == "server_stopping"]
        assert (stopping["grace_s"], stopping["drain_s"]) == (10.0, 0.0), stopping
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


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
