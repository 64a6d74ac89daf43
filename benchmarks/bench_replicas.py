"""One replica against two behind client-side round robin, on localhost.

    KERAS_BACKEND=tensorflow python benchmarks/bench_replicas.py MODEL_BASE_DIR \
        [--replicas 1 2] [--concurrency 32] [--requests-per-client 8]

For each replica count this starts that many `keras-rnn serve` processes
on free localhost ports (same model base directory, batching on, defaults
otherwise), waits until each answers health SERVING, then runs
`concurrency` client threads over ONE client channel to all of them
(`TranslatorClient("127.0.0.1:A,127.0.0.1:B")`: gRPC round_robin with
retries, as `keras-rnn translate --server A,B` uses), each thread sending
one-sentence stock `Predict` requests over the Multi30k test sentences, and
reports sentences/s, p50/p99 latency and how the calls split per replica
(from each server's /metrics). Servers and clients share the machine's cores.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MULTI30K = Path(os.environ.get("MULTI30K_DIR", ROOT.parent / "shared" / "data" / "multi30k"))

from keras_rnn.serving.quickstart import free_port, wait_for_health  # noqa: E402


def predicts_served(metrics_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                  timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('keras_rnn_requests_total{code="OK",method="Predict"'))


def run(base_dir, model_name, replicas, args, sentences):
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from keras_rnn.serving.client import TranslatorClient

    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    servers = []
    for _ in range(replicas):
        port, metrics = free_port(), free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "keras_rnn.cli", "serve", "--model-base-dir", str(base_dir),
             "--port", str(port), "--metrics-port", str(metrics), "--log-level", "WARNING"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append((process, port, metrics))
    try:
        for process, port, _ in servers:
            wait_for_health(f"127.0.0.1:{port}", process, 300)
        targets = ",".join(f"127.0.0.1:{port}" for _, port, _ in servers)
        latencies, failures, lock = [], [], threading.Lock()
        with TranslatorClient(targets, timeout=120) as client:
            stub = client.prediction_service

            def worker(index):
                for i in range(args.requests_per_client):
                    text = sentences[(index * args.requests_per_client + i) % len(sentences)]
                    request = predict_pb2.PredictRequest()
                    request.model_spec.name = model_name
                    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto([text], tf.string))
                    start = time.perf_counter()
                    try:
                        stub.Predict(request, timeout=120)
                    except Exception as error:  # noqa: BLE001 - counted
                        with lock:
                            failures.append(repr(error))
                        continue
                    with lock:
                        latencies.append(time.perf_counter() - start)

            threads = [threading.Thread(target=worker, args=(i,))
                       for i in range(args.concurrency)]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - start
        split = [predicts_served(metrics) for _, _, metrics in servers]
    finally:
        for process, _, _ in servers:
            process.terminate()
        for process, _, _ in servers:
            process.wait(60)
    latencies = np.asarray(latencies)
    return {"replicas": replicas, "concurrency": args.concurrency,
            "requests": int(latencies.size), "failures": len(failures),
            "sentences_per_s": round(latencies.size / elapsed, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
            "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1),
            "calls_per_replica": split}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_dir", help="model base directory (NAME/VERSION/...)")
    parser.add_argument("--model", default=None, help="model name (default: the only one)")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests-per-client", type=int, default=8)
    args = parser.parse_args(argv)
    base_dir = Path(args.base_dir)
    model_name = args.model or next(p.name for p in base_dir.iterdir() if p.is_dir())
    sentences = (MULTI30K / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    for replicas in args.replicas:
        print(json.dumps(run(base_dir, model_name, replicas, args, sentences)), flush=True)


if __name__ == "__main__":
    main()
