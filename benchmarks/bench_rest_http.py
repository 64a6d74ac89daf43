"""REST API throughput of the HTTP server: Cheroot (keep-alive) against the
Werkzeug development server it replaced, on the fake translator.

    KERAS_BACKEND=tensorflow python benchmarks/bench_rest_http.py \
        [--concurrency 8] [--seconds 10] [--servers cheroot werkzeug]

For each server this starts `Server` in process on the fake model of the
tests (`tests/serving_fakes.py`: it reverses each sentence, so the time is
the serving path's, not a model's), with dynamic batching on, and the REST
API on the server under test (`werkzeug`: Werkzeug's threaded
`make_server`, as `RestServer` was before Cheroot). A client process
(no TensorFlow; its own interpreter, so that it does not share the
server's GIL) then runs `concurrency` threads for `seconds` each of:

- `predict`: `POST /v1/models/fake:predict` with one sentence;
- `status`: `GET /v1/models/fake` (the HTTP path alone);

each once with one `http.client.HTTPConnection` per thread, reused
(`keep-alive`: Werkzeug closes every connection, so http.client reconnects
each time there) and once with a new connection per request
(`new-connection`, as urllib or curl). It prints requests/s and p50/p99
latency per row; `--output` writes them as JSON.
"""

import argparse
import http.client
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BODY = json.dumps({"instances": ["Ein Mann fährt Fahrrad."]}).encode()
CALLS = {"predict": ("POST", "/v1/models/fake:predict", BODY),
         "status": ("GET", "/v1/models/fake", None)}


def clients(port, call, concurrency, seconds, reuse):
    """Runs the load (in the client process): a result row."""
    method, path, body = CALLS[call]
    latencies, failures, lock = [], [], threading.Lock()
    stop = time.perf_counter() + seconds

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, failed = [], 0
        while time.perf_counter() < stop:
            if not reuse:
                connection.close()
            start = time.perf_counter()
            try:
                connection.request(method, path, body=body)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    failed += 1
                    continue
            except (OSError, http.client.HTTPException):
                failed += 1
                connection.close()
                continue
            mine.append(time.perf_counter() - start)
        connection.close()
        with lock:
            latencies.extend(mine)
            failures.append(failed)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)  # noqa: E731
    return {"call": call, "connection": "keep-alive" if reuse else "new-connection",
            "concurrency": concurrency, "requests": len(latencies), "failed": sum(failures),
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": pick(0.5), "p99_ms": pick(0.99)}


def werkzeug_server():
    """A `RestServer` stand-in on Werkzeug's threaded development server (the
    server before Cheroot, without TLS)."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        timeout = 60

        def log_request(self, *args):
            pass

    class WerkzeugServer:
        def __init__(self, app, host, port, **options):
            self._http = make_server(host, port, app, threaded=True, request_handler=Quiet)
            self._http.daemon_threads = True
            self.port = self._http.server_port
            threading.Thread(target=self._http.serve_forever, daemon=True).start()

        def close(self, grace=0):
            self._http.shutdown()
            self._http.server_close()

    return WerkzeugServer


def serve_and_measure(name, args, base):
    from keras_rnn.serving import rest_server
    from keras_rnn.serving.server import Server, ServerConfig
    from keras_rnn.serving.quickstart import free_port

    original = rest_server.RestServer
    if name == "werkzeug":
        rest_server.RestServer = werkzeug_server()
    try:
        server = Server(ServerConfig(model_base_dir=str(base), port=0, poll_seconds=0,
                                     rest_api_port=free_port()))
        server.start()
    finally:
        rest_server.RestServer = original
    server.wait_until_ready(timeout=120)
    rows = []
    try:
        for call in args.calls:
            for reuse in (True, False):
                command = [sys.executable, __file__, "--client", str(server.rest_api_port),
                           call, str(args.concurrency), str(args.seconds), str(int(reuse))]
                row = json.loads(subprocess.run(command, check=True, capture_output=True,
                                                text=True).stdout)
                rows.append({"server": name, **row})
                print(f"{name:9} {row['call']:8} {row['connection']:14} "
                      f"c{row['concurrency']:<3} {row['requests_per_s']:8.1f} req/s  "
                      f"p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
                      f"failed {row['failed']}", flush=True)
    finally:
        server.stop(grace=1)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--servers", nargs="+", default=["cheroot", "werkzeug"],
                        choices=("cheroot", "werkzeug"))
    parser.add_argument("--calls", nargs="+", default=["predict", "status"],
                        choices=tuple(CALLS))
    parser.add_argument("--output", default=None, help="JSON results file")
    parser.add_argument("--client", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        port, call, concurrency, seconds, reuse = args.client
        print(json.dumps(clients(int(port), call, int(concurrency), float(seconds),
                                 bool(int(reuse)))))
        return
    from tests.serving_fakes import build_fake_model

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder) / "models"
        build_fake_model(base / "fake" / "1", tag="v1:")
        rows = [row for name in args.servers for row in serve_and_measure(name, args, base)]
    if args.output:
        Path(args.output).write_text(json.dumps(
            {"machine": platform.processor() or platform.machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
