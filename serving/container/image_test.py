"""`make image-test`: build the serving image from the real Dockerfile and run it.

    make image-test                        # = .venv/bin/python serving/container/image_test.py
    python serving/container/image_test.py --keep-image   # leave the image to inspect

There is no Docker engine on the project's machines, and full container
runtimes (podman, crun) cannot start containers there, so this builds and
runs with buildah, chroot isolation, host network (loopback only):

1. installs `buildah` and `debootstrap` with apt-get when they are missing
   (it says so);
2. makes the base image `localhost/keras-rnn-base:bookworm` (Debian 12
   minbase + python3 + venv, by debootstrap) unless it is already in
   buildah's storage; the debootstrapped tarball is also kept in
   `~/.cache/keras-rnn/` so a pruned storage re-imports it without a
   download;
3. trains and exports a tiny translator (`keras-rnn train` of the test
   suite's tiny config, then `keras-rnn export`) into a temporary directory;
4. builds the Dockerfile, `--format docker` (so HEALTHCHECK stays), with
   `--build-arg BASE_IMAGE=localhost/keras-rnn-base:bookworm` and the host's
   pip configuration and CA certificates mounted read-only (pip downloads
   TensorFlow each build: about 1 min here);
5. checks the image: size under 1.5 GB, non-root user, HEALTHCHECK, no
   matplotlib / TensorBoard / sacreBLEU / pip / compiler inside;
6. starts the image's own ENTRYPOINT and CMD (ports moved to free loopback
   ports) with the model directory bind-mounted read-only at /models, waits
   for gRPC health SERVING, runs the image's HEALTHCHECK command inside it,
   translates with a stock `tensorflow_serving.apis` PredictionService stub
   (default options: no deadline) and with `keras-rnn translate --server`,
   both compared with the SavedModel run here, reads /metrics;
7. stops it with SIGTERM (exit status 0, drained), and removes the
   container, the image (unless --keep-image) and the temporary files.

Prints one timing line per phase and ends with `image-test: N passed, 0 failed`.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
BASE_IMAGE = "localhost/keras-rnn-base:bookworm"
IMAGE = "localhost/keras-rnn-serving:image-test"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "keras-rnn"
MIRROR = "http://deb.debian.org/debian"
SIZE_LIMIT = 1.5e9
SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]
ISOLATION = ["--isolation", "chroot"]


def say(message):
    print(f"image-test: {message}", flush=True)


def run(*command, capture=False, check=True, **kwargs):
    result = subprocess.run([str(c) for c in command], check=False, text=True,
                            capture_output=capture, **kwargs)
    if check and result.returncode != 0:
        detail = (result.stdout or "") + (result.stderr or "") if capture else ""
        raise SystemExit(f"image-test: FAILED: {' '.join(map(str, command))} exited "
                         f"{result.returncode}\n{detail}")
    return result


class Checks:
    """Counts named checks; the first failure stops the run."""

    def __init__(self):
        self.passed = 0

    def __call__(self, ok, what):
        if not ok:
            raise SystemExit(f"image-test: FAILED: {what}")
        self.passed += 1
        say(f"ok: {what}")


def ensure_tools():
    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    if missing:
        say(f"{', '.join(missing)} missing: installing with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run("apt-get", "update", "-qq", env=env)
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, env=env)


def image_exists(name):
    return run("buildah", "inspect", "--type", "image", name, capture=True,
               check=False).returncode == 0


def ensure_base():
    """The debootstrapped base image, from storage, the tarball cache, or made now."""
    if image_exists(BASE_IMAGE):
        say(f"base image {BASE_IMAGE}: cached in buildah's storage")
        return
    tarball = CACHE / "debian-bookworm-python3.tar"
    if not tarball.exists():
        say(f"base image: debootstrap bookworm from {MIRROR} (once per machine)")
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
            rootfs = Path(tmp) / "rootfs"
            run("debootstrap", "--variant=minbase", "--include=python3,python3-venv",
                "bookworm", rootfs, MIRROR, stdout=subprocess.DEVNULL)
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                         "usr/share/man", "usr/share/info", "usr/share/locale"):
                for path in (rootfs / junk).glob("*"):
                    if path.is_file() or path.is_symlink():  # a link to a folder too
                        path.unlink()
                    elif path.is_dir() and path.name != "partial":
                        shutil.rmtree(path)
            run("tar", "--numeric-owner", "-C", rootfs, "-cf", f"{tarball}.tmp", ".")
            os.replace(f"{tarball}.tmp", tarball)
    else:
        say(f"base image: importing the cached {tarball}")
    container = run("buildah", "from", "scratch", capture=True).stdout.strip()
    try:
        mount = run("buildah", "mount", container, capture=True).stdout.strip()
        run("tar", "--numeric-owner", "-C", mount, "-xf", tarball)
        run("buildah", "umount", container)
        run("buildah", "config", "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--cmd", "/bin/bash", container)
        run("buildah", "commit", "--quiet", "--format", "docker", container, BASE_IMAGE,
            stdout=subprocess.DEVNULL)
    finally:
        run("buildah", "rm", container, check=False, capture=True)


def pip_mounts():
    """Read-only mounts that let pip inside the build reach the registry as
    here: the CA certificates, pip's configuration files and every file or
    directory they name (a CA bundle, a constraints file, ...)."""
    import configparser

    mounts = {"/etc/ssl/certs"}
    for conf in ("/etc/pip.conf", "/etc/xdg/pip/pip.conf"):
        if Path(conf).exists():
            mounts.add(conf)
            parser = configparser.ConfigParser(interpolation=None)
            parser.read(conf)
            for section in parser.sections():
                for value in parser[section].values():
                    for word in value.split():
                        if word.startswith("/") and Path(word).exists():
                            mounts.add(word)
    args = []
    for path in sorted(mounts):
        if not any(path.startswith(f"{other}/") for other in mounts):
            args += ["-v", f"{path}:{path}:ro"]
    return args


def build():
    run("buildah", "bud", "--format", "docker", *ISOLATION, "--pull=false",
        "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", *pip_mounts(),
        "-t", IMAGE, "-f", ROOT / "Dockerfile", ROOT)


def inspect(name):
    return json.loads(run("buildah", "inspect", "--type", "image", name,
                          capture=True).stdout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_ports(command, grpc_port, metrics_port):
    """The image's CMD with its ports moved and its addresses on loopback."""
    replace = {"--port": str(grpc_port), "--metrics-port": str(metrics_port),
               "--host": "127.0.0.1", "--metrics-host": "127.0.0.1"}
    out = list(command)
    for i, arg in enumerate(out[:-1]):
        if arg in replace:
            out[i + 1] = replace[arg]
    return out


def tiny_model(workdir):
    """`keras-rnn train` the test suite's tiny config, then `keras-rnn export`."""
    from tests.support import MULTI30K, write_config

    if not MULTI30K.exists():
        raise SystemExit(f"image-test: FAILED: no Multi30k copy at {MULTI30K}")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    config = write_config(workdir, "tiny")
    run(sys.executable, "-m", "keras_rnn.cli", "train", config, cwd=ROOT, env=env,
        capture=True)
    models = workdir / "models"
    run(sys.executable, "-m", "keras_rnn.cli", "export", workdir / "tiny", models,
        "--max-beam-size", "3", cwd=ROOT, env=env, capture=True)
    # Readable by the image's user (uid 10001), as a mounted volume would be.
    for path in [models, *models.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return models


def expected_translations(models):
    import tensorflow as tf

    from keras_rnn.training.tokenizer import register_tf_text_ops

    register_tf_text_ops()
    version = models / "tiny" / "1"
    # serving_default takes the sentences only (the export's beam size and
    # maximum length), as stock TensorFlow Serving calls it.
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    out = signature(inputs=tf.constant(SENTENCES))
    return [t.decode() for t in out["translations"].numpy()[:, 0]]


def wait_serving(target, process, timeout):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return f"exited {process.returncode}"
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return "SERVING"
            except grpc.RpcError:
                pass
            time.sleep(0.5)
    return "timeout"


def server_pid(root):
    """The `keras-rnn serve` Python process under `buildah run` (pid `root`)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    stack, found = [root], []
    while stack:
        pid = stack.pop()
        try:
            argv = (Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"))
        except OSError:
            continue
        if b"python" in argv[0] and b"serve" in argv:
            found.append(pid)
        stack += children.get(pid, [])
    if len(found) != 1:
        raise SystemExit(f"image-test: FAILED: server processes under {root}: {found}")
    return found[0]


def stock_predict(target):
    """A stock PredictionService stub with default options (no deadline)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "tiny"
        request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(SENTENCES))
        response = stub.Predict(request)
    return [t.decode() for t in tf.make_ndarray(response.outputs["translations"])[:, 0]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep-image", action="store_true",
                        help=f"leave {IMAGE} in buildah's storage")
    parser.add_argument("--ready-timeout", type=float, default=240)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("image-test: buildah with chroot isolation needs root here")
    check = Checks()
    started = time.monotonic()
    ensure_tools()
    phase = time.monotonic()
    ensure_base()
    say(f"base image ready in {time.monotonic() - phase:.0f} s")
    workdir = Path(tempfile.mkdtemp(prefix="keras-rnn-image-test-", dir="/var/tmp"))
    container = server = None
    try:
        phase = time.monotonic()
        models = tiny_model(workdir)
        expected = expected_translations(models)
        say(f"tiny model trained and exported in {time.monotonic() - phase:.0f} s")

        phase = time.monotonic()
        build()
        build_s = time.monotonic() - phase
        info = inspect(IMAGE)
        size = _image_bytes(IMAGE)
        say(f"built {IMAGE} in {build_s:.0f} s: {size / 1e9:.2f} GB "
            f"({size / 2**30:.2f} GiB)")
        config = info["Docker"]["config"]
        check(size < SIZE_LIMIT, f"image size {size / 1e9:.2f} GB < {SIZE_LIMIT / 1e9} GB")
        check(config.get("User") not in (None, "", "root", "0", "0:0"),
              f"runs as a non-root user ({config.get('User')})")
        healthcheck = config.get("Healthcheck") or {}
        check(healthcheck.get("Test", [""])[0] == "CMD",
              "the docker-format image keeps its HEALTHCHECK")
        check(not config.get("Volumes"), "no VOLUME shadows the mounted /models")

        container = run("buildah", "from", "--pull=false", "--name",
                        f"keras-rnn-image-test-{os.getpid()}", IMAGE,
                        capture=True).stdout.strip()
        inside = run("buildah", "run", *ISOLATION, container, "--", "python", "-c",
                     "import importlib.util as u, shutil; print(sorted(m for m in "
                     "('matplotlib', 'tensorboard', 'pip', 'sentencepiece', 'sacrebleu', "
                     "'tensorflow_text', 'tensorflow', 'grpc') if u.find_spec(m)), "
                     "[c for c in ('gcc', 'cc', 'g++', 'strip') if shutil.which(c)])",
                     capture=True).stdout.strip()
        # The serving extra: TensorFlow, TF Text and gRPC to serve, and
        # SentencePiece (with pyyaml) for `keras-rnn export` of a trained run.
        check(inside == "['grpc', 'sentencepiece', 'tensorflow', 'tensorflow_text'] []",
              f"only the serving stack inside, no compiler: {inside}")

        grpc_port, metrics_port = free_port(), free_port()
        target = f"127.0.0.1:{grpc_port}"
        command = with_ports(config["Entrypoint"] + config["Cmd"], grpc_port, metrics_port)
        phase = time.monotonic()
        server = subprocess.Popen(
            ["buildah", "run", *ISOLATION, "-v", f"{models}:/models:ro", container,
             "--", *command],
            stdout=(workdir / "server.log").open("w"), stderr=subprocess.STDOUT)
        state = wait_serving(target, server, args.ready_timeout)
        ready_s = time.monotonic() - phase
        if state != "SERVING":
            print((workdir / "server.log").read_text()[-4000:])
        check(state == "SERVING", f"health SERVING {ready_s:.1f} s after start "
                                  f"(the mounted /models holds tiny/1)")
        probe = [a.replace("127.0.0.1:8500", target) for a in healthcheck["Test"][1:]]
        result = run("buildah", "run", *ISOLATION, container, "--", *probe, check=False,
                     capture=True)
        check(result.returncode == 0, "the image's HEALTHCHECK command passes inside it")
        got = stock_predict(target)
        check(got == expected, f"stock PredictionService Predict translates: {got}")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        result = run(sys.executable, "-m", "keras_rnn.cli", "translate", "--server", target,
                     *SENTENCES, cwd=ROOT, env=env, capture=True, check=False)
        check(result.returncode == 0 and result.stdout.splitlines() == expected,
              f"keras-rnn translate --server {target}: {result.stdout.splitlines()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=10) as response:
            metrics = response.read().decode()
        check('keras_rnn_requests_total{code="OK",method="Predict",model="tiny"} 1.0'
              in metrics, "/metrics counts the Predict")

        # SIGTERM to the server process itself, as `docker stop` signals a
        # container's PID 1 (buildah run does not forward signals).
        phase = time.monotonic()
        pid = server_pid(server.pid)
        os.kill(pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        stop_s = time.monotonic() - phase
        output = (workdir / "server.log").read_text()
        stopped = server.returncode == 0 and '"event": "server_stopped"' in output
        if not stopped:
            print(output[-4000:])
        check(stopped, f"SIGTERM to the server (pid {pid}): drained and exited 0 "
                       f"in {stop_s:.1f} s")
    finally:
        if server is not None and server.poll() is None:
            try:
                os.kill(server_pid(server.pid), signal.SIGKILL)
            except (SystemExit, OSError):
                pass
            server.kill()
            server.wait()
        if container:
            run("buildah", "rm", container, check=False, capture=True)
        if not args.keep_image and image_exists(IMAGE):
            run("buildah", "rmi", IMAGE, check=False, capture=True)
        shutil.rmtree(workdir, ignore_errors=True)
    say(f"done in {time.monotonic() - started:.0f} s (build {build_s:.0f} s, "
        f"start-to-ready {ready_s:.1f} s, image {size / 1e9:.2f} GB)")
    print(f"image-test: {check.passed} passed, 0 failed", flush=True)
    return 0


def _image_bytes(name):
    """The image's size: the sum of its layers as its manifest lists them
    (uncompressed tar, as buildah stores them locally; what `docker images`
    shows after a pull)."""
    manifest = json.loads(run("buildah", "inspect", "--type", "image", "--format",
                              "{{.Manifest}}", name, capture=True).stdout)
    return sum(layer["size"] for layer in manifest["layers"])


if __name__ == "__main__":
    sys.exit(main())
