"""`make quickstart`: train, export, serve and translate, on a fresh machine.

    python -m keras_rnn.serving.quickstart [--sentences ...] [--port 0]

1. Multi30k from `$MULTI30K_DIR`, else `../shared/data/multi30k` when it
   is there, else `keras-rnn download data/multi30k` (SHA-256 checked).
2. `keras-rnn train training/configs/quick.yaml` (about 7 minutes on 2 CPU
   cores; a finished run is reused, an interrupted one resumes).
3. `keras-rnn export runs/quick models` when the trained model is newer than
   the newest exported version.
4. `keras-rnn serve --model-base-dir models` on 127.0.0.1 (a free port),
   until its health check answers SERVING.
5. `keras-rnn translate --server 127.0.0.1:PORT ...` over gRPC: the
   translations are printed.
6. The server is stopped (SIGTERM: graceful shutdown).
"""

import argparse
import shlex
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from keras_rnn.serving.models import list_versions

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = (
    "Ein Mann fährt Fahrrad.",
    "Ein Hund rennt durch den Schnee.",
    "Zwei Kinder spielen am Strand mit einem Ball.",
    "Eine Frau in einem roten Kleid singt auf einer Bühne.",
)
SPLIT_FILES = ("train.de", "train.en", "val.de", "val.en",
               "test_2016_flickr.de", "test_2016_flickr.en")


def _say(message):
    print(f"==> {message}", flush=True)


def _keras_rnn(*args, **kwargs):
    command = [sys.executable, "-m", "keras_rnn.cli", *map(str, args)]
    _say("keras-rnn " + " ".join(shlex.quote(str(a)) for a in args))
    return subprocess.run(command, cwd=ROOT, check=True, **kwargs)


def multi30k_dir():
    """`$MULTI30K_DIR`, the shared copy, or a fresh download."""
    explicit = os.environ.get("MULTI30K_DIR")
    if explicit:
        path = Path(explicit)
        missing = [f for f in SPLIT_FILES if not (path / f).exists()]
        if missing:
            raise FileNotFoundError(f"MULTI30K_DIR={path} lacks {', '.join(missing)}.")
        return path
    shared = ROOT.parent / "shared" / "data" / "multi30k"
    if all((shared / f).exists() for f in SPLIT_FILES):
        return shared
    local = ROOT / "data" / "multi30k"
    if not all((local / f).exists() for f in SPLIT_FILES):
        _keras_rnn("download", local)
    return local


def free_port():
    """A localhost TCP port that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(target, server, timeout):
    """Polls the gRPC health service of `target` until it says SERVING.

    Args:
        target: "HOST:PORT".
        server: the server's `subprocess.Popen` (its exit is an error).
        timeout: seconds.

    Raises:
        RuntimeError: the server exited.
        TimeoutError: not SERVING in time.
    """
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"keras-rnn serve exited with status {server.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"keras-rnn serve was not SERVING on {target} after {timeout} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", nargs="+", default=list(SENTENCES))
    parser.add_argument("--config", default="training/configs/quick.yaml")
    parser.add_argument("--run", default="runs/quick")
    parser.add_argument("--models", default="models", help="model base directory")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    args = parser.parse_args(argv)

    data = multi30k_dir()
    _say(f"Multi30k: {data}")
    run = ROOT / args.run
    overrides = [f"output_dir={run}"]
    if data.resolve() != (ROOT.parent / "shared" / "data" / "multi30k").resolve():
        overrides.append(f"data.dir={data}")  # the configs read the shared copy
    _keras_rnn("train", args.config, *[a for o in overrides for a in ("--set", o)])
    model_file = run / "model" / "model.keras"
    model_dir = ROOT / args.models / "quick"
    versions = list_versions(model_dir)
    newest = versions[max(versions)] if versions else None
    if newest is None or newest.stat().st_mtime < model_file.stat().st_mtime:
        _keras_rnn("export", run, ROOT / args.models, "--name", "quick")
    else:
        _say(f"{newest} is up to date")

    port = args.port or free_port()
    target = f"127.0.0.1:{port}"
    _say(f"keras-rnn serve --model-base-dir {args.models} --port {port}")
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "keras_rnn.cli", "serve", "--model-base-dir",
         str(ROOT / args.models), "--port", str(port), "--log-level", "WARNING"],
        cwd=ROOT)
    try:
        wait_for_health(target, server, timeout=120)
        _say(f"serving on {target} after {time.perf_counter() - start:.1f} s")
        _keras_rnn("translate", "--server", target, "--model", "quick", *args.sentences)
    finally:
        _say("stopping the server")
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
