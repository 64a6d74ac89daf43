"""Client-side load balancing: one client, two servers on loopback ports.

gRPC's own `round_robin` policy and retry on UNAVAILABLE, set by the
client's service config (`serving/client.py` SERVICE_CONFIG), spread calls
over both servers and keep every call succeeding while one server stops.
"""

import threading

import keras
import pytest

from tests.serving_fakes import build_fake_model

needs_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the servers run on the TensorFlow half of the suite")


def test_channel_target_lists_several_servers_for_round_robin():
    from keras_rnn.serving.client import channel_target

    assert channel_target("127.0.0.1:8500") == ("127.0.0.1:8500", None)
    assert channel_target("dns:///translator:8500") == ("dns:///translator:8500", None)
    assert channel_target("127.0.0.1:1, 127.0.0.2:2") == ("ipv4:127.0.0.1:1,127.0.0.2:2", None)
    assert channel_target(["[::1]:1", "[::1]:2"]) == ("ipv6:[::1]:1,[::1]:2", None)
    assert channel_target("localhost:1,127.0.0.1:2")[1] == "localhost:1"
    for bad in ("", "127.0.0.1:1,nope", "127.0.0.1:1,[::1]:2"):
        with pytest.raises(ValueError):
            channel_target(bad)


def served(server):
    """Translate RPCs this server answered OK."""
    return server.metrics.registry.get_sample_value(
        "keras_rnn_requests_total", {"method": "Translate", "model": "fake", "code": "OK"}) or 0


@needs_tensorflow
def test_round_robin_spreads_calls_and_retries_while_a_server_stops(tmp_path):
    from keras_rnn.serving.client import TranslatorClient
    from keras_rnn.serving.server import Server, ServerConfig

    build_fake_model(tmp_path / "models" / "fake" / "1")
    servers = []
    for _ in range(2):
        server = Server(ServerConfig(model_base_dir=str(tmp_path / "models"), port=0,
                                     poll_seconds=0))
        server.start()
        servers.append(server)
    try:
        for server in servers:
            server.wait_until_ready(60)
        targets = ",".join(f"127.0.0.1:{server.port}" for server in servers)
        with TranslatorClient(targets, timeout=30) as client:
            for _ in range(20):
                assert client.translate(["abc"]).translations[0].hypotheses[0].text == "cba"
            counts = [served(server) for server in servers]
            assert sum(counts) == 20 and min(counts) >= 5, counts  # round robin: ~10 each
            # Server 0 drains (as on SIGTERM) while calls keep coming: every
            # call succeeds, those it refuses (UNAVAILABLE) retried on server 1.
            stopping = threading.Thread(target=servers[0].stop, args=(5,))
            for i in range(40):
                if i == 2:
                    stopping.start()
                assert client.translate(["abc"]).translations[0].hypotheses[0].text == "cba"
            stopping.join()
            after = [served(server) for server in servers]
            assert sum(after) == 60 and after[1] >= counts[1] + 38, (counts, after)
    finally:
        for server in servers:
            server.stop(0)


@needs_tensorflow
def test_a_stopping_server_answers_while_its_health_says_not_serving(tmp_path):
    """The drain: health turns NOT_SERVING first (clients that watch it move
    away), calls that still come are answered, then the server refuses."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from keras_rnn.serving.client import TranslatorClient
    from keras_rnn.serving.server import Server, ServerConfig

    build_fake_model(tmp_path / "models" / "fake" / "1")
    server = Server(ServerConfig(model_base_dir=str(tmp_path / "models"), port=0,
                                 poll_seconds=0))
    server.start()
    stopping = threading.Thread(target=server.stop, kwargs={"grace": 30, "drain": 30})
    try:
        server.wait_until_ready(60)
        target = f"127.0.0.1:{server.port}"
        with grpc.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="")
            serving = health_pb2.HealthCheckResponse
            assert health.Check(request, timeout=10).status == serving.SERVING
            watch = health.Watch(request, timeout=60)
            assert next(watch).status == serving.SERVING
            stopping.start()
            assert next(watch).status == serving.NOT_SERVING
            watch.cancel()
        # Our client watches health: it sends nothing to a NOT_SERVING server.
        with TranslatorClient(target, timeout=30) as client:
            with pytest.raises(grpc.RpcError) as refused:
                client.translate(["abc"])
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "unhealthy" in refused.value.details()
        # A stock client that ignores health is still answered.
        from keras_rnn.serving import translator_pb2, translator_pb2_grpc

        with grpc.insecure_channel(target) as channel:
            stub = translator_pb2_grpc.TranslatorStub(channel)
            reply = stub.Translate(translator_pb2.TranslateRequest(sentences=["abc"]),
                                   timeout=30)
            assert reply.translations[0].hypotheses[0].text == "cba"
        assert stopping.is_alive()  # still draining (30 s)
        assert served(server) == 1
        server.stop(0)  # a second stop ends the drain
        stopping.join(60)
        assert not stopping.is_alive()
    finally:
        server.stop(0)


@needs_tensorflow
def test_keras_rnn_translate_takes_several_servers(tmp_path):
    from keras_rnn.serving.server import Server, ServerConfig
    from tests.support import cli

    build_fake_model(tmp_path / "models" / "fake" / "1")
    servers = [Server(ServerConfig(model_base_dir=str(tmp_path / "models"), port=0,
                                   poll_seconds=0)) for _ in range(2)]
    for server in servers:
        server.start()
    try:
        for server in servers:
            server.wait_until_ready(60)
        targets = ",".join(f"127.0.0.1:{server.port}" for server in servers)
        result = cli("translate", "--server", targets, *["abc", "xy"] * 2)
        assert result.stdout.splitlines() == ["cba", "yx"] * 2
    finally:
        for server in servers:
            server.stop(0)
