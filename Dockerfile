# The keras-rnn gRPC translation service (TensorFlow Serving's
# PredictionService/ModelService plus our Translator service), CPU only.
#
#   docker build -t keras-rnn-serving .
#   docker run --rm -p 127.0.0.1:8500:8500 -p 127.0.0.1:9100:9100 \
#       -v "$PWD/models:/models:ro" keras-rnn-serving
#
# Without Docker, `make image-test` builds this same file with buildah
# (serving/container/image_test.sh), from a Debian base it makes with
# debootstrap, passed as the same build argument:
#
#   docker build --build-arg BASE_IMAGE=python:3.11-slim-bookworm -t keras-rnn-serving .
#   buildah bud --format docker --isolation chroot \
#       --build-arg BASE_IMAGE=localhost/keras-rnn-base:bookworm -t keras-rnn-serving .
#
# BASE_IMAGE must have Python 3.10+ with venv (both stages use it, so the
# virtual environment's interpreter link holds in the runtime stage). The
# install is the README's with the pinned constraints, not editable, and only
# the tensorflow and serving extras. The runtime stage then holds the
# virtual environment and nothing else: no compiler, no pip, no training
# extras (matplotlib, TensorBoard, sacreBLEU), no TensorFlow C++ headers.
# (SentencePiece and pyyaml are in: the serving extra exports too.)
# Serving needs no GPU; TensorFlow finds none here and runs on the CPU.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
# (pip's cache stays in this stage, which the image does not keep.)
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=3
# strip (binutils) only in this stage: TensorFlow's libraries ship with
# their symbol tables (about 280 MB of them).
RUN apt-get update && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY requirements/ requirements/
# setup.cfg's package_dir installs training/, serving/ and cli/ as
# keras_rnn.training, keras_rnn.serving and keras_rnn.cli.
COPY keras_rnn/ keras_rnn/
COPY training/ training/
COPY serving/ serving/
COPY cli/ cli/
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install -c requirements/constraints.txt ".[tensorflow,serving]"
# Slimming, each step checked by the import below and by `make image-test`:
# - libclang (a TensorFlow requirement) is for TensorFlow's code generators;
# - pip, TensorFlow's C++ headers and the packages' own test suites
#   (tests/, and Cheroot's test/);
# - TF Text: `import tensorflow_text` fails in 2.21 (its ICU symbols), so
#   keras_rnn loads only the SentencePiece op library (tokenizer.py); the
#   other op libraries (~130 MB) cannot be reached and go;
# - StableHLO's Python bindings (25 MB): nothing in TensorFlow imports them,
#   and serving never loads them;
# - symbol tables of TensorFlow's libraries (strip; not the auditwheel-repaired
#   ones like numpy.libs, which break when stripped);
# - byte code: only for the modules `serve` imports (compiled again by the
#   check below, as root, so the non-root runtime needs no write access).
RUN /opt/venv/bin/pip uninstall --yes libclang pip \
    && cd /opt/venv/lib/python3*/site-packages \
    && rm -rf tensorflow/include tensorflow/compiler/mlir/stablehlo \
    && find tensorflow_text -name '*.so' ! -name _sentencepiece_tokenizer.so -delete \
    && find tensorflow tensorflow_text -type f \( -name '*.so' -o -name '*.so.*' \) -print0 \
        | xargs -0 strip --strip-unneeded \
    && find /opt/venv -depth -type d \( -name __pycache__ -o -name tests \
        -o -path '*/site-packages/cheroot/test' \) -exec rm -rf {} + \
    && /opt/venv/bin/python -c "import tensorflow as tf, keras_rnn.serving.server, \
keras_rnn.serving.models, keras_rnn.serving.client, keras_rnn.serving.batching, \
keras_rnn.serving.rest_server, \
prometheus_client, grpc_health.v1.health, grpc_reflection.v1alpha.reflection, \
tensorflow_serving.apis.predict_pb2, tensorflow_serving.apis.get_model_metadata_pb2, \
tensorflow_serving.apis.get_model_status_pb2, tensorflow_serving.apis.prediction_log_pb2; \
from keras_rnn.training.tokenizer import register_tf_text_ops; register_tf_text_ops(); \
print('TensorFlow', tf.__version__, float(tf.reduce_sum(tf.ones(3))))"

FROM ${BASE_IMAGE} AS runtime
COPY --from=builder /opt/venv /opt/venv
# The Kubernetes init container that fills the model volume from an archive
# URL (serving/k8s/): standard library only, run by path so that it imports
# neither keras_rnn nor TensorFlow.
COPY serving/container/fetch_models.py /opt/keras-rnn/fetch_models.py
# A numeric non-root user (Kubernetes' runAsNonRoot checks the number).
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        serving \
    && mkdir -p /models
ENV PATH=/opt/venv/bin:$PATH \
    KERAS_BACKEND=tensorflow \
    KERAS_HOME=/tmp/.keras \
    TF_CPP_MIN_LOG_LEVEL=3 \
    PYTHONUNBUFFERED=1
USER 10001:10001

# 8500: gRPC (TensorFlow Serving's port); 9100: Prometheus metrics.
EXPOSE 8500 9100
# Models: mount the model base directory (NAME/VERSION/saved_model.pb)
# read-only at /models. No VOLUME instruction on purpose: buildah run (1.28)
# mounts a fresh anonymous volume (the container's buildah-volumes/ dir) at
# every declared VOLUME, and that mount hid a -v bind mount of the same
# path, so /models came up empty; Docker makes an unused anonymous volume.
# HEALTHCHECK is part of the Docker image format only (build with
# `buildah bud --format docker`; OCI images drop it).
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import grpc, sys; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; s = g.HealthStub(grpc.insecure_channel('127.0.0.1:8500')).Check(h.HealthCheckRequest(), timeout=4).status; sys.exit(s != h.HealthCheckResponse.SERVING)"]
# SIGTERM drains: in-flight requests finish (`serve --grace-seconds`, default 10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["keras-rnn", "serve"]
CMD ["--model-base-dir", "/models", "--host", "0.0.0.0", "--port", "8500", \
     "--metrics-host", "0.0.0.0", "--metrics-port", "9100"]
