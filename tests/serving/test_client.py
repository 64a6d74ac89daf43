"""The client (`serving/client.py`, `keras-rnn translate --server`) and the
generated gRPC code.
"""

import io
import sys

import pytest

from tests.serving_support import (  # noqa: F401 - fixtures
    fake_versions,
    free_port,
    needs_tensorflow,
    ROOT,
    server)


def test_generated_code_is_current(tmp_path):
    pytest.importorskip("grpc_tools")
    from keras_rnn.serving.protos import generate

    written = generate.generate(tmp_path)
    assert {p.name for p in written} == {
        f"{proto}{suffix}" for proto in ("translator", "grpc_predict_v2")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")}
    for path in written:
        committed = ROOT / "serving" / path.name
        assert committed.read_text() == path.read_text(), (
            f"{committed} is stale: run `python -m keras_rnn.serving.protos.generate`")


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
