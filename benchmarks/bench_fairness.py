"""A small request's latency alone and while a maximal request runs.

    KERAS_BACKEND=tensorflow python benchmarks/bench_fairness.py models/quick \
        [--max-chunk-cost 0 2048] [--num-batch-threads 1 2] [--before-root /tmp/keras-rnn-before]

For each `--max-chunk-cost` (0: no chunks) this starts `keras-rnn serve` on
the export base directory in a subprocess, sends a one-sentence request
(beam 5, the export's defaults) three times alone, then sends the maximal
request of issue 23 (64 sentences of 759 characters, 160 subwords each, beam
8, n_best 8, max length 80, with `--max-request-cost` raised to let it in)
and, while it runs, one-sentence requests `--probe-at` seconds after it
started, each from its own thread. It prints the latencies, and the time to
refuse the same request on `translate_with_alignments` (its response could
reach ~26 MB). `--before-root` first measures the server of another
checkout (`git worktree add /tmp/keras-rnn-before COMMIT`) with its own
defaults. The maximal request goes to
`translate_with_options`, or to `serving_default` in exports that take the
options there.
"""

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keras_rnn.serving.quickstart import free_port, wait_for_health  # noqa: E402

SMALL = "Ein Mann in einem blauen Hemd steht auf einer Leiter."
LONG = " ".join(["Ein Mann in einem blauen Hemd steht auf einer Leiter und putzt ein "
                 "Fenster."] * 10)  # 759 characters, 160 subwords
MAXIMAL = {"beam_size": 8, "n_best": 8, "max_length": 80}
# `python -c LAUNCH ROOT serve ...`: keras-rnn's command line from the
# checkout ROOT. An editable install maps the package to this checkout, so
# its mapping is pointed at ROOT first.
LAUNCH = """import os, runpy, sys
root = sys.argv.pop(1)
for name, module in list(sys.modules.items()):
    mapping = getattr(module, "MAPPING", None)
    if name.startswith("__editable__") and isinstance(mapping, dict) and "keras_rnn" in mapping:
        here = os.path.dirname(mapping["keras_rnn"])
        for key, path in mapping.items():
            mapping[key] = os.path.join(root, os.path.relpath(path, here))
sys.path.insert(0, root)
runpy.run_module("keras_rnn.cli", run_name="__main__")
"""


def predict(stub, sentences, signature="serving_default", **scalars):
    """Seconds one Predict took, and its status code name."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(sentences, tf.string))
    for name, value in scalars.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value, tf.int32))
    start = time.perf_counter()
    try:
        stub.Predict(request, timeout=120)
        code = "OK"
    except grpc.RpcError as error:
        code = error.code().name
    return time.perf_counter() - start, code


def measure(base_dir, chunk_cost, probe_at, root=ROOT, batch_threads=None):
    """The latencies of one server setting, in milliseconds.

    Args:
        base_dir: the model base directory.
        chunk_cost: `--max-chunk-cost`, or None for a server without it.
        probe_at: seconds after the maximal request to send small ones.
        root: the checkout whose server runs.
        batch_threads: `--num-batch-threads`, or None for the default.

    Returns:
        A dict of the results.
    """
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    port = free_port()
    command = [sys.executable, "-c", LAUNCH, str(root), "serve", "--model-base-dir", base_dir,
               "--port", str(port), "--log-level", "WARNING"]
    if chunk_cost is not None:
        command += ["--max-chunk-cost", str(chunk_cost), "--max-request-cost", "40960"]
    if batch_threads is not None:
        command += ["--num-batch-threads", str(batch_threads)]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    target = f"127.0.0.1:{port}"
    try:
        wait_for_health(target, process, timeout=300)
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            predict(stub, [SMALL])  # not timed: the first call
            alone = [predict(stub, [SMALL])[0] for _ in range(3)]
            large, loaded = {}, {}
            signature = ("translate_with_options" if predict(
                stub, [SMALL], "translate_with_options", **MAXIMAL)[1] == "OK"
                else "serving_default")
            thread = threading.Thread(target=lambda: large.update(t=predict(
                stub, [LONG] * 64, signature, **MAXIMAL)))
            start = time.perf_counter()
            thread.start()
            probes = []
            for at in probe_at:
                time.sleep(max(0.0, start + at - time.perf_counter()))
                probes.append(threading.Thread(target=lambda at=at: loaded.update(
                    {at: predict(stub, [SMALL])[0]})))
                probes[-1].start()
            for probe in [thread, *probes]:
                probe.join()
            refused = predict(stub, [LONG] * 64, "translate_with_alignments", **MAXIMAL)
        ms = lambda seconds: round(1000 * seconds, 1)  # noqa: E731
        return {"server": str(root), "max_chunk_cost": chunk_cost,
                "num_batch_threads": batch_threads,
                "alone_ms": ms(statistics.median(alone)),
                "during_maximal_ms": {f"at {at} s": ms(loaded[at]) for at in probe_at},
                "maximal_ms": ms(large["t"][0]), "maximal_code": large["t"][1],
                "alignments_refused_ms": ms(refused[0]), "alignments_code": refused[1]}
    finally:
        process.terminate()
        process.wait(30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_dir", help="model base directory (keras-rnn export's)")
    parser.add_argument("--max-chunk-cost", type=int, nargs="+", default=[0, 2048])
    parser.add_argument("--probe-at", type=float, nargs="+", default=[0.5, 2.0, 4.0])
    parser.add_argument("--num-batch-threads", type=int, nargs="+", default=[None],
                        help="batch threads of each server measured (default: the server's)")
    parser.add_argument("--before-root", help="another checkout to measure first")
    args = parser.parse_args()
    if args.before_root:
        print(json.dumps(measure(args.base_dir, None, args.probe_at, args.before_root)),
              flush=True)
    for threads in args.num_batch_threads:
        for chunk_cost in args.max_chunk_cost:
            print(json.dumps(measure(args.base_dir, chunk_cost, args.probe_at,
                                     batch_threads=threads)), flush=True)


if __name__ == "__main__":
    main()
