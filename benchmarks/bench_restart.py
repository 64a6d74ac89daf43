"""Restart to ready: how long `keras-rnn serve` takes from process start to
health SERVING, and where the time goes (a Kubernetes pod restarted after
an OOM kill or SIGKILL pays all of it before its readiness probe passes).

    KERAS_BACKEND=tensorflow .venv/bin/python benchmarks/bench_restart.py MODEL_BASE_DIR [--runs 3]

Each run starts `python -m keras_rnn.cli serve --model-base-dir DIR --port 0
--poll-seconds 0` and stamps every line of its stderr (JSON logs) and
stdout as it arrives: `server_started` (imports, TensorFlow, gRPC up),
`version_loaded` (its `load_ms` and `warmup_ms`), `server_ready`, and the
ready line on stdout; then SIGTERM. Prints one JSON object per run, and the
time `import tensorflow` alone takes in a fresh interpreter.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(base_dir, extra):
    """One start of `keras-rnn serve` to its ready line.

    Args:
        base_dir: the model base directory.
        extra: more `serve` flags.

    Returns:
        dict of phase -> seconds since start, and the version's load/warm-up.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT),
           "KERAS_BACKEND": "tensorflow"}
    start = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_rnn.cli", "serve", "--model-base-dir", str(base_dir),
         "--port", "0", "--poll-seconds", "0", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result = {}

    def read_stderr():
        for line in process.stderr:
            if line.startswith("{"):
                entry = json.loads(line)
                result.setdefault(entry["event"] + "_s", round(time.monotonic() - start, 2))
                if entry["event"] == "version_loaded":
                    result["load_ms"], result["warmup_ms"] = entry["load_ms"], entry.get(
                        "warmup_ms")

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    line = process.stdout.readline()
    result["ready_line_s"] = round(time.monotonic() - start, 2)
    if not line.startswith("serving "):
        process.kill()
        raise RuntimeError(f"no ready line: {line!r}")
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    reader.join(5)
    return result


def import_seconds(module):
    """Seconds `import module` takes in a fresh interpreter."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)})
    return round(time.monotonic() - start, 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_dir")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="more serve flags (after --)")
    args = parser.parse_args()
    print(json.dumps({"import_tensorflow_s": import_seconds("tensorflow")}), flush=True)
    for _ in range(args.runs):
        print(json.dumps(run_once(args.base_dir, args.extra)), flush=True)


if __name__ == "__main__":
    main()
