"""Serving throughput and latency on localhost, with and without batching.

    KERAS_BACKEND=tensorflow python benchmarks/bench_serving.py models/quick \
        [--concurrency 1 8 32] [--requests-per-client 8] [--beam-size 5]

For each setting (dynamic batching on, then off) this starts `keras-rnn
serve` in a subprocess on a free localhost port, times start to ready
(model loaded and warmed: the first SERVING health answer), then runs
`concurrency` client threads, each sending one-sentence `Predict` requests
(stock `PredictionServiceStub`, beam 5) over the Multi30k test sentences,
and reports sentences/s and p50/p99 latency. The server's peak resident
memory (VmHWM) is read from /proc before it is stopped. The clients share
the machine's cores with the server.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MULTI30K = Path(os.environ.get("MULTI30K_DIR", ROOT.parent / "shared" / "data" / "multi30k"))


from keras_rnn.serving.quickstart import free_port, wait_for_health  # noqa: E402


def peak_memory_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(target, model_name, sentences, concurrency, per_client, beam_size):
    """`concurrency` threads x `per_client` one-sentence requests."""
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    latencies, failures = [], []
    lock = threading.Lock()
    channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def request(text):
        r = predict_pb2.PredictRequest()
        r.model_spec.name = model_name
        r.inputs["inputs"].CopyFrom(tf.make_tensor_proto([text], tf.string))
        r.inputs["beam_size"].CopyFrom(tf.make_tensor_proto(beam_size, tf.int32))
        return r

    def client(index):
        for j in range(per_client):
            text = sentences[(index * per_client + j) % len(sentences)]
            start = time.perf_counter()
            try:
                stub.Predict(request(text), timeout=120)
            except grpc.RpcError as error:
                with lock:
                    failures.append(error.code().name)
                continue
            with lock:
                latencies.append(time.perf_counter() - start)

    stub.Predict(request(sentences[0]), timeout=120)  # connect
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    channel.close()
    ms = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency, "requests": len(latencies), "failed": len(failures),
        "sentences_per_s": round(len(latencies) / seconds, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }


def run(model_dir, batching, args, sentences):
    port = free_port()
    target = f"127.0.0.1:{port}"
    name = Path(model_dir).name
    command = [sys.executable, "-m", "keras_rnn", "serve", "--model", f"{name}={model_dir}",
               "--port", str(port), "--log-level", "WARNING"]
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
        rows = [load(target, name, sentences, c, args.requests_per_client, args.beam_size)
                for c in args.concurrency]
        memory = peak_memory_mib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=60)
    return {"batching": batching, "ready_s": round(ready, 1),
            "peak_rss_mib": round(memory), "rows": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", help="an exported model: BASE/NAME (holding versions)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests-per-client", type=int, default=8)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-ms", type=float, default=5.0)
    parser.add_argument("--num-batch-threads", type=int, default=1)
    parser.add_argument("--batching", choices=("both", "on", "off"), default="both")
    parser.add_argument("--output", default=None, help="JSON results file")
    args = parser.parse_args(argv)

    sentences = (MULTI30K / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    results = {"machine": f"{platform.processor() or platform.machine()}, "
                          f"{os.cpu_count()} cores", "backend": "tensorflow",
               "beam_size": args.beam_size, "settings": []}
    for batching in {"both": (True, False), "on": (True,), "off": (False,)}[args.batching]:
        result = run(Path(args.model_dir).resolve(), batching, args, sentences)
        results["settings"].append(result)
        print(f"batching {'on ' if batching else 'off'}: ready in {result['ready_s']} s, "
              f"peak RSS {result['peak_rss_mib']} MiB")
        for row in result["rows"]:
            print(f"  concurrency {row['concurrency']:>2}: {row['sentences_per_s']:7.2f} "
                  f"sentences/s  p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  "
                  f"({row['requests']} ok, {row['failed']} failed)")
    on = results["settings"][0]["rows"]
    off = results["settings"][-1]["rows"]
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
