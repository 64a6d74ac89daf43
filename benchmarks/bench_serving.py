"""Serving throughput, latency and memory on localhost.

    KERAS_BACKEND=tensorflow python benchmarks/bench_serving.py models/quick \
        [--concurrency 1 8 32] [--requests-per-client 8] [--beam-size N] \
        [--protocols grpc grpc-no-deadline rest rest-keepalive] [--batching both|on|off]
    KERAS_BACKEND=tensorflow python benchmarks/bench_serving.py models/quick \
        --soak 100000 --reloads 5 --batching on --protocols

For each setting (dynamic batching on, then off) this starts `keras-rnn
serve` in a subprocess on free localhost ports (gRPC and the REST API),
times start to ready (model loaded and warmed: the first SERVING health
answer), then for each protocol runs `concurrency` client threads, each
sending one-sentence requests over the Multi30k test sentences,
and reports sentences/s and p50/p99 latency. Protocols: `grpc` (stock
`PredictionServiceStub.Predict` with a 120 s deadline), `grpc-no-deadline`
(the same call with no `timeout`, as stock clients and grpcurl send it),
`rest` (`POST /v1/models/NAME:predict` with `{"instances": [...]}`, one
urllib request each, as curl), `rest-keepalive` (the same on one HTTP/1.1
connection a client thread). Requests name only the sentence
(`serving_default`, the export's beam size) unless `--beam-size` is given
(then `translate_with_options`). The server's peak resident memory (VmHWM)
is read from /proc before it is stopped. The clients share the machine's
cores with the server.

Each setting first sends `--warmup-requests` requests that are not
reported: without them the first protocol measured ran up to 1.7x slower
at concurrency 1 than the same protocol measured again later.

`--soak N` then sends N requests (no deadline, `--soak-concurrency`
threads) and samples the server's resident memory (VmRSS) as they go;
`--reloads K` then publishes K new versions one after another (copies of
the served one, as a deployment would) and reads VmRSS once each is served
and the one it replaced unloaded.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import http.client
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MULTI30K = Path(os.environ.get("MULTI30K_DIR", ROOT.parent / "shared" / "data" / "multi30k"))


from keras_rnn.serving.quickstart import free_port, wait_for_health  # noqa: E402


def memory_mib(pid, field="VmHWM"):
    """The process's peak (VmHWM) or current (VmRSS) resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def caller(protocol, target, rest_port, model_name, beam_size):
    """A function text -> None that sends one translation request over
    `protocol` and raises on failure; and a close function.

    With `beam_size` None the request names only the sentence and goes to
    `serving_default` (the export's own beam size), as a stock client's
    does; otherwise to `translate_with_options` with that beam size.
    """
    signature = {} if beam_size is None else {"signature_name": "translate_with_options"}
    if protocol in ("rest", "rest-keepalive"):
        path = f"/v1/models/{model_name}:predict"

        def body(text):
            if beam_size is None:
                return json.dumps({"instances": [text]}).encode()
            return json.dumps({**signature, "inputs": {"inputs": [text],
                                                       "beam_size": beam_size}}).encode()

        if protocol == "rest":  # a new connection a request, as curl
            def call(text):
                request = urllib.request.Request(f"http://127.0.0.1:{rest_port}{path}",
                                                 data=body(text), method="POST")
                with urllib.request.urlopen(request, timeout=120) as response:
                    json.loads(response.read())
            return call, lambda: None

        local = threading.local()  # one kept-alive connection a client thread

        def call(text):
            if not hasattr(local, "connection"):
                local.connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=120)
            local.connection.request("POST", path, body=body(text),
                                     headers={"Content-Type": "application/json"})
            response = local.connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
        return call, lambda: None
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    timeout = None if protocol == "grpc-no-deadline" else 120
    beam = None if beam_size is None else tf.make_tensor_proto(beam_size, tf.int32)

    def call(text):
        r = predict_pb2.PredictRequest()
        r.model_spec.name = model_name
        r.inputs["inputs"].CopyFrom(tf.make_tensor_proto([text], tf.string))
        if beam is not None:
            r.model_spec.signature_name = signature["signature_name"]
            r.inputs["beam_size"].CopyFrom(beam)
        stub.Predict(r, timeout=timeout)

    return call, channel.close


def load(call, sentences, concurrency, per_client, on_request=None):
    """`concurrency` threads x `per_client` one-sentence requests."""
    import numpy as np

    latencies, failures = [], []
    lock = threading.Lock()

    def client(index):
        for j in range(per_client):
            text = sentences[(index * per_client + j) % len(sentences)]
            start = time.perf_counter()
            try:
                call(text)
            except Exception as error:  # grpc.RpcError, urllib's HTTPError
                with lock:
                    failures.append(type(error).__name__)
                continue
            with lock:
                latencies.append(time.perf_counter() - start)
                done = len(latencies)
            if on_request is not None:
                on_request(done)

    call(sentences[0])  # connect
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency, "requests": len(latencies), "failed": len(failures),
        "seconds": round(seconds, 1),
        "sentences_per_s": round(len(latencies) / seconds, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }


def soak(pid, call, sentences, requests, concurrency, samples=20):
    """Sends `requests` requests; VmRSS every requests/samples of them."""
    every = max(1, requests // samples)
    rss = [{"requests": 0, "rss_mib": round(memory_mib(pid, "VmRSS"), 1)}]
    lock = threading.Lock()

    def sample(done):
        if done % every == 0:
            with lock:
                rss.append({"requests": done, "rss_mib": round(memory_mib(pid, "VmRSS"), 1)})

    per_client = requests // concurrency
    row = load(call, sentences, concurrency, per_client, on_request=sample)
    rss.sort(key=lambda point: point["requests"])
    half = [p for p in rss if p["requests"] >= row["requests"] // 2]
    growth = (half[-1]["rss_mib"] - half[0]["rss_mib"]) * 1024 / max(
        1, half[-1]["requests"] - half[0]["requests"])
    return {**row, "rss": rss, "second_half_kib_per_request": round(growth, 4)}


def reloads(pid, base, name, call, sentences, count, target):
    """Publishes `count` new versions one by one; VmRSS once each serves."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    model_dir = base / name
    points = [{"version": max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit()),
               "rss_mib": round(memory_mib(pid, "VmRSS"), 1)}]
    with grpc.insecure_channel(target) as channel:
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus
        for _ in range(count):
            old = points[-1]["version"]
            new = old + 1
            temporary = model_dir / f".{new}.tmp"
            shutil.copytree(model_dir / str(old), temporary)
            temporary.rename(model_dir / str(new))  # published whole, as `export` does
            start = time.perf_counter()
            while True:
                request = get_model_status_pb2.GetModelStatusRequest()
                request.model_spec.name = name
                states = {s.version: s.state for s in status(request, timeout=30)
                          .model_version_status}
                if states.get(new) == 30 and states.get(old, 50) == 50:  # AVAILABLE, END
                    break
                if time.perf_counter() - start > 300:
                    raise TimeoutError(f"version {new} not served after 300 s: {states}")
                time.sleep(0.2)
            seconds = time.perf_counter() - start
            shutil.rmtree(model_dir / str(old))  # as a deployment prunes old versions
            load(call, sentences, 8, 8)
            points.append({"version": new, "reload_s": round(seconds, 1),
                           "rss_mib": round(memory_mib(pid, "VmRSS"), 1)})
    return points


def run(model_dir, batching, args, sentences):
    port, rest_port = free_port(), free_port()
    target = f"127.0.0.1:{port}"
    name = Path(model_dir).name
    # A private copy of the model's newest version: reloads add versions to it.
    base = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    newest = max((p for p in Path(model_dir).iterdir() if p.name.isdigit()),
                 key=lambda p: int(p.name))
    shutil.copytree(newest, base / name / newest.name)
    command = [sys.executable, "-m", "keras_rnn.cli", "serve", "--model-base-dir", str(base),
               "--port", str(port), "--rest-api-port", str(rest_port),
               "--poll-seconds", "1", "--log-level", "WARNING"]
    if not batching:
        command.append("--no-batching")
    else:
        command += ["--max-batch-size", str(args.max_batch_size),
                    "--batch-timeout-ms", str(args.batch_timeout_ms),
                    "--num-batch-threads", str(args.num_batch_threads)]
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_health(target, process, timeout=180)
        ready = time.perf_counter() - start
        result = {"batching": batching, "ready_s": round(ready, 1), "rows": []}
        # Warm-up (not reported): the first hundred or so requests after the
        # server's own warm-up still run slower, whichever protocol comes first.
        call, close = caller("grpc", target, rest_port, name, args.beam_size)
        load(call, sentences, 8, args.warmup_requests // 8)
        close()
        for protocol in args.protocols:
            call, close = caller(protocol, target, rest_port, name, args.beam_size)
            for concurrency in args.concurrency:
                row = load(call, sentences, concurrency, args.requests_per_client)
                result["rows"].append({"protocol": protocol, **row})
                print_row(row, protocol)
            close()
        if args.soak:
            call, close = caller("grpc-no-deadline", target, rest_port, name, args.beam_size)
            result["soak"] = soak(process.pid, call, sentences, args.soak,
                                  args.soak_concurrency)
            close()
            print_soak(result["soak"])
        if args.reloads:
            call, close = caller("grpc", target, rest_port, name, args.beam_size)
            result["reloads"] = reloads(process.pid, base, name, call, sentences,
                                        args.reloads, target)
            close()
            print("RSS across reloads: " + ", ".join(
                f"v{p['version']} {p['rss_mib']:.0f} MiB" for p in result["reloads"]))
        result["peak_rss_mib"] = round(memory_mib(process.pid))
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(base, ignore_errors=True)
    return result


def print_row(row, protocol):
    print(f"  {protocol:<16} concurrency {row['concurrency']:>2}: "
          f"{row['sentences_per_s']:7.2f} sentences/s  p50 {row['p50_ms']:7.1f} ms  "
          f"p99 {row['p99_ms']:7.1f} ms  ({row['requests']} ok, {row['failed']} failed)",
          flush=True)


def print_soak(result):
    print(f"soak: {result['requests']} requests ({result['failed']} failed) in "
          f"{result['seconds']} s, {result['sentences_per_s']} sentences/s, "
          f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    print("  VmRSS: " + ", ".join(f"{p['requests']}: {p['rss_mib']:.0f}"
                                  for p in result["rss"]))
    print(f"  second half: {result['second_half_kib_per_request']} KiB per request",
          flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", help="an exported model: BASE/NAME (holding versions)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests-per-client", type=int, default=8)
    parser.add_argument("--beam-size", type=int, default=None,
                        help="default: the export's own (serving_default, the sentence only)")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-ms", type=float, default=5.0)
    parser.add_argument("--num-batch-threads", type=int, default=1)
    parser.add_argument("--batching", choices=("both", "on", "off"), default="both")
    parser.add_argument("--protocols", nargs="*", default=["grpc"],
                        choices=("grpc", "grpc-no-deadline", "rest", "rest-keepalive"))
    parser.add_argument("--warmup-requests", type=int, default=256,
                        help="requests sent and not reported before the rows")
    parser.add_argument("--soak", type=int, default=0, help="requests of the memory soak")
    parser.add_argument("--soak-concurrency", type=int, default=16)
    parser.add_argument("--reloads", type=int, default=0, help="hot reloads to measure")
    parser.add_argument("--output", default=None, help="JSON results file")
    args = parser.parse_args(argv)

    sentences = (MULTI30K / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    results = {"machine": f"{platform.processor() or platform.machine()}, "
                          f"{os.cpu_count()} cores", "backend": "tensorflow",
               "beam_size": args.beam_size, "settings": []}
    for batching in {"both": (True, False), "on": (True,), "off": (False,)}[args.batching]:
        print(f"batching {'on ' if batching else 'off'}:", flush=True)
        result = run(Path(args.model_dir).resolve(), batching, args, sentences)
        results["settings"].append(result)
        print(f"batching {'on ' if batching else 'off'}: ready in {result['ready_s']} s, "
              f"peak RSS {result['peak_rss_mib']} MiB", flush=True)
    on = [r for r in results["settings"][0]["rows"] if r["protocol"] == "grpc"]
    off = [r for r in results["settings"][-1]["rows"] if r["protocol"] == "grpc"]
    for a, b in zip(on, off) if args.batching == "both" else ():
        print(f"concurrency {a['concurrency']:>2}: batching gives "
              f"{a['sentences_per_s'] / b['sentences_per_s']:.2f}x the throughput")
    single_p50 = next((r["p50_ms"] for r in on if r["concurrency"] == 1), None)
    if single_p50:
        for row in on:
            print(f"batching on, concurrency {row['concurrency']:>2}: p99 = "
                  f"{row['p99_ms'] / single_p50:.2f}x the concurrency-1 p50")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
