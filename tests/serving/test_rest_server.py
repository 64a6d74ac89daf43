"""The REST API's HTTP server (`serving/rest_server.py`, Cheroot) over real
loopback ports with plain clients (http.client, raw sockets): keep-alive,
pipelining, read deadlines, bounded threads, the body limit, TLS, and the
graceful stop on SIGTERM. The server's own behaviour is checked on a tiny
WSGI application; keep-alive, the body limit and the drain on `RestApi`.
"""

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from tests.serving_support import (  # noqa: F401 - fixtures
    ROOT,
    fake_versions,
    free_port,
    make_base,
    needs_tensorflow,
    start_server,
)

STATUS = "/v1/models/fake"
PREDICT = "/v1/models/fake:predict"


def hello(environ, start_response):
    """A tiny WSGI application: reads the body, answers its size."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    answer = f"ok {len(body)}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(answer)))])
    return [answer]


def read_response(stream):
    """(status, {lower-case header: value}, body) of the next response on a
    socket's `makefile("rb")`."""
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, stream.read(int(headers.get("content-length", 0)))


def get(path):
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


@pytest.fixture
def tiny_server():
    """`tiny_server(**options)`: a `RestServer` around `hello`, closed after."""
    from keras_rnn.serving.rest_server import RestServer

    servers = []

    def make(**options):
        servers.append(RestServer(hello, "127.0.0.1", 0, **options))
        return servers[-1]

    yield make
    for server in servers:
        server.close(grace=1)


@pytest.fixture(scope="module")
def rest_server(tmp_path_factory, fake_versions):
    base = make_base(tmp_path_factory.mktemp("rest_server"), fake_versions)
    server = start_server(base, rest_api_port=free_port(), max_message_bytes=200_000)
    yield server
    server.stop(grace=1)


@needs_tensorflow
def test_keepalive_serves_requests_on_one_connection_and_pipelined_ones_in_order(rest_server):
    connection = http.client.HTTPConnection("127.0.0.1", rest_server.rest_api_port, timeout=30)
    try:
        answers = []
        for method, path, body in (("GET", STATUS, None),
                                   ("POST", PREDICT, b'{"instances": ["Hallo"]}')):
            connection.request(method, path, body=body)
            response = connection.getresponse()
            answers.append((response.status, json.loads(response.read())))
            assert response.getheader("Connection") is None, response.getheaders()
            if method == "GET":
                first_socket = connection.sock
        assert connection.sock is first_socket  # not reconnected
        assert [status for status, _ in answers] == [200, 200], answers
        assert answers[1][1]["predictions"][0]["translations"] == ["v1:ollaH"]
    finally:
        connection.close()

    # Two pipelined requests (both sent before either answer is read).
    with socket.create_connection(("127.0.0.1", rest_server.rest_api_port), timeout=30) as sock:
        sock.sendall(get(STATUS) + get("/v1/models/nope"))
        stream = sock.makefile("rb")
        first, second = read_response(stream), read_response(stream)
    assert first[0] == 200 and json.loads(first[2])["model_version_status"], first
    assert second[0] == 404 and "error" in json.loads(second[2]), second


@needs_tensorflow
def test_a_body_over_max_message_bytes_gets_413_and_a_slow_one_408(rest_server, tiny_server):
    """The body limit is gRPC's --max-message-bytes (200,000 here); a body
    that stops coming gets the server's 408, not RestApi's JSON 500."""
    with socket.create_connection(("127.0.0.1", rest_server.rest_api_port), timeout=30) as sock:
        sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 300000\r\n\r\n".encode() + b" " * 1000)
        status, headers, body = read_response(sock.makefile("rb"))
        assert status == 413 and "max_message_bytes" in json.loads(body)["error"], body
        assert headers["connection"] == "close", headers
        assert sock.recv(1) == b""
    rest_api = rest_server._rest._http.wsgi_app  # the same RestApi, on a 0.5 s body deadline
    server = tiny_server(body_seconds=0.5)
    server._http.wsgi_app = rest_api
    for body in (b"Content-Length: 100\r\n\r\n{", b"Transfer-Encoding: chunked\r\n\r\n5\r\n{"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n".encode() + body)
            status, headers, _ = read_response(sock.makefile("rb"))
            assert (status, headers.get("connection")) == (408, "close"), (body, headers)


def test_a_slow_header_client_is_dropped_at_the_deadline(tiny_server):
    """Headers trickled in one byte at a time get 408 once the header
    deadline passes, and free the only worker for the next client."""
    server = tiny_server(workers=1, header_seconds=0.6)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        start = time.monotonic()
        slow.sendall(b"GET / HTTP/1.1\r\n")
        try:
            for byte in b"X-Slow: " + b"y" * 40:  # one byte every 0.1 s: 4.8 s in all
                slow.sendall(bytes([byte]))
                time.sleep(0.1)
        except OSError:  # closed by the server
            pass
        answer = slow.recv(4096)
        dropped = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert dropped < 2.5, dropped
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(get("/"))
        assert read_response(sock.makefile("rb"))[2] == b"ok 0"


def test_a_slow_body_gets_408_at_the_body_deadline(tiny_server):
    """A body that stops coming: 408 at the body deadline (not the
    application's own error answer), and the connection closes."""
    server = tiny_server(body_seconds=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        status, headers, _ = read_response(sock.makefile("rb"))
        assert (status, headers.get("connection")) == (408, "close"), headers
        assert time.monotonic() - start < 2.0
        assert sock.recv(1) == b""


def test_connections_beyond_the_limit_do_not_spawn_threads(tiny_server):
    """200 connections that send nothing hold 2 workers and 2 queue places
    until the header deadline; the others get 503 at once, no thread more."""
    server = tiny_server(workers=2, header_seconds=1.0)
    threads = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10)
            for _ in range(200)]
    try:
        time.sleep(0.5)
        assert threading.active_count() <= threads, (threads, threading.active_count())
        answers = []
        for sock in idle[-20:]:
            answers.append(sock.recv(64))
        # 503 at once; on a loaded machine the listener may reach a
        # connection only after a held one's 1 s deadline freed a place, and
        # that connection then waits its own deadline out: 408.
        assert all(answer.startswith((b"HTTP/1.1 503", b"HTTP/1.1 408"))
                   for answer in answers), answers
        assert sum(answer.startswith(b"HTTP/1.1 503") for answer in answers) >= 10, answers
    finally:
        for sock in idle:
            sock.close()
    time.sleep(1.5)  # the held ones reach their deadline
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(get("/"))
        assert read_response(sock.makefile("rb"))[2] == b"ok 0"
    assert threading.active_count() <= threads


def test_tls_keepalive_with_the_grpc_certificates(tiny_server, tmp_path):
    pytest.importorskip("cryptography")
    from tests.serving.test_server import _certificates

    certs = _certificates(tmp_path)
    server = tiny_server(tls_cert=str(certs / "server.pem"), tls_key=str(certs / "server.key"))
    stalled = socket.create_connection(("127.0.0.1", server.port))  # sends no ClientHello
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    connection = http.client.HTTPSConnection("localhost", server.port, timeout=10,
                                             context=context)
    try:
        for body in (b"abc", b"de"):
            connection.request("POST", "/", body=body)
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, f"ok {len(body)}".encode())
            assert response.getheader("Connection") is None
    finally:
        connection.close()
        stalled.close()


@needs_tensorflow
def test_sigterm_lets_a_rest_request_in_flight_finish_and_refuses_new_ones(tmp_path,
                                                                         fake_versions):
    """`keras-rnn serve` on SIGTERM: a :predict waiting 1.5 s for its batch
    is answered, new connections are refused, the process exits 0."""
    base = make_base(tmp_path, fake_versions)
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_rnn.cli", "serve", "--model-base-dir", str(base),
         "--port", "0", "--poll-seconds", "0", "--rest-api-port", str(port),
         "--batch-timeout-ms", "1500"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("serving fake version 1"), (
            line, process.wait(30), process.stderr.read())
        result = {}

        def in_flight():
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("POST", PREDICT, body=b'{"instances": ["Hallo"]}')
            response = connection.getresponse()
            result["answer"] = (response.status, response.getheader("Connection"),
                                json.loads(response.read()))

        thread = threading.Thread(target=in_flight)
        thread.start()
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        thread.join(30)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    status, connection, body = result["answer"]
    assert status == 200 and body["predictions"][0]["translations"] == ["v1:ollaH"], body
    assert connection == "close"
