"""The serving configuration, plain data: `ServerConfig`, `BatchingOptions`
and `ExportConfig`, and `configure`, the one map from a config (or parsed
flags) to a dataclass.

    config = config_from_args(args)                      # keras-rnn serve flags
    options = configure(BatchingOptions, config)         # the batcher's part of it

`keras-rnn serve` and `keras-rnn export` flags are named after these fields
and take their defaults from them; this module imports only `dataclasses`,
so the command line can show the defaults without importing gRPC or
TensorFlow.
"""

import dataclasses

# Deadline, in seconds, of every call `keras-rnn translate --server` sends.
DEFAULT_CLIENT_TIMEOUT = 30.0


def configure(cls, source):
    """An instance of the dataclass `cls` from the same-named attributes of
    `source` (a config, or parsed flags): the one map from a config to the
    object it configures."""
    return cls(**{field.name: getattr(source, field.name)
                  for field in dataclasses.fields(cls)})


@dataclasses.dataclass
class BatchingOptions:
    """Dynamic batching settings, per model version (`batching.Batcher`).

    Attributes:
        max_batch_size: most sentences in one batch.
        batch_timeout_ms: longest wait of a batch's first sentence for more,
            in milliseconds.
        max_enqueued_batches: most batches (open or full) waiting to run.
        max_queued_sentences: most sentences waiting, over all batches.
        num_batch_threads: threads running batches. Two by default: one
            runs a large request's chunk while the other takes the small
            requests that arrive meanwhile (on the quick model a small
            request then waits 1.4-1.7x its unloaded latency behind a
            maximal request, against 2.8-6.5x with one thread;
            benchmarks/README.md, "Serving under pressure").
        max_chunk_cost: most decoder steps (sentences x beam_size x
            max_length) of a request queued at a time: a larger request runs
            in chunks of that cost, interleaved with other requests, so one
            arriving meanwhile waits about one chunk (`batching.Batcher`).
            0: no chunks (a request's batches are all queued at once).
    """

    max_batch_size: int = 32
    batch_timeout_ms: float = 5.0
    max_enqueued_batches: int = 64
    max_queued_sentences: int = 1024
    num_batch_threads: int = 2
    max_chunk_cost: int = 2048


@dataclasses.dataclass
class ServerConfig:
    """Everything `Server` needs; each `keras-rnn serve` flag sets the field
    of its name (`config_from_args`).

    Attributes:
        model_base_dir: every subdirectory is a model (versions inside).
        models: dict of model name -> model directory (with or instead of
            `model_base_dir`).
        versions: "latest" or "all".
        version_labels: dict of model name -> {label: version}, TensorFlow
            Serving's `version_labels` ("stable", "canary"): a request's
            `model_spec.version_label` (REST: `/labels/LABEL`) asks for the
            version its label names. Model name "" labels every model.
        poll_seconds: how often to look for new versions (0: never).
        host, port: where to listen (port 0: any free port).
        batching: merge concurrent requests into batches.
        max_batch_size, batch_timeout_ms, max_enqueued_batches,
        max_queued_sentences, num_batch_threads, max_chunk_cost: the
            `BatchingOptions`.
        max_request_sentences: most sentences in one request.
        max_request_cost: most decoder steps one request may ask for
            (sentences x beam_size x max_length), checked before it runs.
        max_sentence_chars: longest sentence accepted, in characters.
        max_request_seconds: longest a request may wait for its batch and
            run: the deadline of requests without one (stock clients and
            grpcurl send none by default), and a cap on longer ones.
        max_message_bytes: largest gRPC message received or sent; a
            request whose response could be larger (alignments: sentences x
            n_best x max_length x source pieces x 4 bytes) is refused
            before it runs.
        workers: gRPC handler threads, and as many REST API workers
            (`rest_server.RestServer`).
        max_concurrent_rpcs: RPCs in progress before RESOURCE_EXHAUSTED.
        grace_seconds: on stop (SIGTERM/SIGINT), how long in-flight RPCs may
            still take.
        drain_seconds: on stop, how long the server keeps answering after
            its health says NOT_SERVING (at most `grace_seconds`), so that
            clients watching health move away first. 0: stop refusing at
            once; Kubernetes' preStop sleep does the draining there, and
            `TranslatorClient` retries the calls a stopping server refuses
            or cancels.
        metrics_port: Prometheus HTTP port (0: no metrics endpoint).
        rest_api_port: TensorFlow Serving's REST API port (0: off), on
            `host`, with the same TLS settings, body limit
            (`max_message_bytes`) and stop (`grace_seconds`) as gRPC; at most
            `max_concurrent_rpcs` idle keep-alive connections.
        metrics_host: address of the metrics endpoint.
        tls_cert, tls_key: PEM server certificate chain and key (TLS on).
        tls_client_ca: PEM CA that client certificates must chain to
            (mutual TLS: clients without such a certificate are refused).
        warmup: replay each version's warm-up requests before serving it.
        tensorflow_intra_op_parallelism: threads one TensorFlow op may use
            (0: TensorFlow's default, every core it sees, which in a
            container is the node's, not the CPU limit's). Flag default:
            the `TF_NUM_INTRAOP_THREADS` environment variable (Kubernetes
            sets it from `limits.cpu`, serving/k8s/).
        tensorflow_inter_op_parallelism: ops TensorFlow runs side by side
            (0: its default); flag default `TF_NUM_INTEROP_THREADS`.
        graph_optimizations: run TensorFlow's Grappler on each signature
            when it is first called. Off by default: on the exported
            translators it more than doubles the time to load and warm a
            version (6.0 s against 2.5 s per signature for the quick model)
            and did not make translation faster (32 sentences, beam 5: 77 ms
            with, 75 ms without).
    """

    model_base_dir: str = None
    models: dict = dataclasses.field(default_factory=dict)
    versions: str = "latest"
    version_labels: dict = dataclasses.field(default_factory=dict)
    poll_seconds: float = 2.0
    host: str = "127.0.0.1"
    port: int = 8500
    batching: bool = True
    max_batch_size: int = BatchingOptions.max_batch_size
    batch_timeout_ms: float = BatchingOptions.batch_timeout_ms
    max_enqueued_batches: int = BatchingOptions.max_enqueued_batches
    max_queued_sentences: int = BatchingOptions.max_queued_sentences
    num_batch_threads: int = BatchingOptions.num_batch_threads
    max_chunk_cost: int = BatchingOptions.max_chunk_cost
    max_request_sentences: int = 64
    max_request_cost: int = 32768
    max_sentence_chars: int = 1000
    max_request_seconds: float = 60.0
    max_message_bytes: int = 4 * 1024 * 1024
    workers: int = 64
    max_concurrent_rpcs: int = 256
    grace_seconds: float = 10.0
    drain_seconds: float = 0.0
    metrics_port: int = 0
    rest_api_port: int = 0
    metrics_host: str = "127.0.0.1"
    tls_cert: str = None
    tls_key: str = None
    tls_client_ca: str = None
    warmup: bool = True
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    graph_optimizations: bool = False


@dataclasses.dataclass
class ExportConfig:
    """What `keras-rnn export` writes into a version beside the model
    (`export.export`); each flag sets the field of its name.

    Attributes:
        model_name: default: the run's config `name`.
        version: integer version; default: one more than the highest there.
        beam_size: default beam size of the signature (default: the
            model's decoding setting, the config's `evaluation.beam_size`).
        max_beam_size: the largest beam a request may ask for (default:
            the larger of `DEFAULT_MAX_BEAM_SIZE` and `beam_size`, so the
            default beam is always accepted).
        max_length: default `max_length` (default: the model's setting).
        max_length_limit: the largest `max_length` accepted (default:
            `max_length`).
        max_source_tokens: longest source sentence accepted, in subwords
            (default: the model's `max_source_length`, else 4 x the
            training data's `max_length`).
        quantize: None (float32), or `"int8"`: the loaded model is
            quantized with `Seq2Seq.quantize("int8")` before the graph is
            traced (int8 kernels of the cells, `Dense` layers and
            embeddings; `QUANTIZE_MODES`).
    """

    model_name: str = None
    version: int = None
    beam_size: int = None
    max_beam_size: int = None
    max_length: int = None
    max_length_limit: int = None
    max_source_tokens: int = None
    quantize: str = None


# `ExportConfig.max_beam_size` when neither it nor a larger default beam is set.
DEFAULT_MAX_BEAM_SIZE = 8

# The values of `ExportConfig.quantize` (`keras-rnn export --quantize`).
QUANTIZE_MODES = ("int8",)


def config_from_args(args):
    """A `ServerConfig` from parsed `keras-rnn serve` flags: each field from
    the flag of its name, `--model` and `--version-label` parsed.

    Raises:
        ValueError: a --model flag is not NAME=PATH, or a --version-label
            flag not [MODEL:]LABEL=VERSION.
    """
    flags = configure(ServerConfig, args)  # models, version_labels: the flags' lists
    return dataclasses.replace(flags, models=parse_models(flags.models),
                               version_labels=parse_version_labels(flags.version_labels))


# TensorFlow's own environment variables for its thread pools (it reads them
# too); `keras-rnn serve` takes its thread flags' defaults from them.
THREAD_ENVIRONMENT = {"tensorflow_intra_op_parallelism": "TF_NUM_INTRAOP_THREADS",
                      "tensorflow_inter_op_parallelism": "TF_NUM_INTEROP_THREADS"}


def thread_count(text):
    """A thread flag's value (or its environment variable's): a whole number
    >= 0. A Kubernetes `resourceFieldRef` of `limits.cpu` with divisor 1
    gives the CPU limit rounded up ("2" for 1500m).

    Args:
        text: the flag's or variable's text.

    Returns:
        The number of threads (0: TensorFlow's default).

    Raises:
        ValueError: not a whole number >= 0.
    """
    text = str(text).strip()
    if not text.isdigit():
        raise ValueError(f"{text!r}: expected a whole number of threads (0: default)")
    return int(text)


def parse_models(items):
    """`--model NAME=PATH` flags -> `models` ({name: path}).

    Raises:
        ValueError: an item is not of that form.
    """
    models = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--model {item!r}: expected NAME=PATH")
        models[name] = path
    return models


def parse_version_labels(items):
    """`--version-label [MODEL:]LABEL=VERSION` flags -> `version_labels`.

    Raises:
        ValueError: an item is not of that form, or labels a version twice.
    """
    labels = {}
    for item in items:
        target, sep, version = item.partition("=")
        model, _, label = target.rpartition(":")
        if not sep or not label or not version.strip().isdigit():
            raise ValueError(f"--version-label {item!r}: expected [MODEL:]LABEL=VERSION "
                             "(e.g. stable=1 or de_en:canary=2)")
        if label in labels.get(model, {}):
            raise ValueError(f"--version-label {item!r}: label {label!r} given twice")
        labels.setdefault(model, {})[label] = int(version)
    return labels
