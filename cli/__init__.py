"""The `keras-rnn` command line: its flags, and the dispatch to each command.

    keras-rnn train training/configs/quick.yaml [--set training.epochs=3]
    keras-rnn evaluate runs/quick [--split test_2016_flickr] [--beam-size 5]
    keras-rnn average runs/quick [--last 2] [--output runs/quick/averaged]
    keras-rnn translate runs/quick "Ein Hund rennt durch den Schnee."
    keras-rnn plot runs/quick [--index 0 1 2]
    keras-rnn download data/multi30k
    keras-rnn export runs/quick models [--name quick] [--version 2]
    keras-rnn serve --model-base-dir models
    keras-rnn translate --server 127.0.0.1:8500 "Ein Hund rennt durch den Schnee."

This module holds only flags: it imports `argparse` and the serving
defaults (plain dataclasses, which the `serve` and `export` flags are named
after and take their defaults from). Each command imports its
implementation when it runs (`keras_rnn.training.commands`,
`keras_rnn.serving.commands`), so the training commands need neither gRPC
nor protobuf, `--help` needs neither, and `export`, `serve` and `translate
--server` say in one line when the serving extra is missing. A command that
needs Keras's TensorFlow backend says so (`keras_rnn._backend`), and runs
again on it.
"""

import argparse
import importlib
import sys

from keras_rnn.cli.extras import MissingExtra, require, require_options
from keras_rnn.serving.config import (DEFAULT_CLIENT_TIMEOUT, DEFAULT_MAX_BEAM_SIZE,
                                      THREAD_ENVIRONMENT, ExportConfig,
                                      ServerConfig, thread_count)

# What `keras-rnn --help` opens with.
SUMMARY = ("keras-rnn: train, evaluate, export and serve attention translators.\n"
           "Recurrent seq2seq models for Keras 3 with beam search, served over gRPC and "
           "REST\nwith the TensorFlow Serving API.")

# command -> (module, function); `translate` goes to serving with --server.
COMMANDS = {
    "train": ("keras_rnn.training.commands", "train"),
    "evaluate": ("keras_rnn.training.commands", "evaluate"),
    "average": ("keras_rnn.training.commands", "average"),
    "translate": ("keras_rnn.training.commands", "translate"),
    "plot": ("keras_rnn.training.commands", "plot"),
    "download": ("keras_rnn.training.commands", "download"),
    "export": ("keras_rnn.serving.commands", "export"),
    "serve": ("keras_rnn.serving.commands", "serve"),
    "translate --server": ("keras_rnn.serving.commands", "translate"),
}
# The errors a command reports in one line (exit status 2) instead of a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, RuntimeError)


def main(argv=None):
    """Runs `keras-rnn ARGV` and returns its exit status."""
    from keras_rnn._backend import TensorFlowRequired

    args = parse_args(argv)
    command = args.command
    if command == "translate" and args.server:
        command = "translate --server"
    module_name, function = COMMANDS[command]
    if args.compile_cache:
        use_compile_cache()
    try:
        if command != "download":  # which only fetches files
            require("serving" if module_name.startswith("keras_rnn.serving") else "training")
        require_options(args.command, args)
        module = importlib.import_module(module_name)
        try:
            return getattr(module, function)(args)
        except TensorFlowRequired:
            if _on_tensorflow_already():
                raise
            return _rerun_on_tensorflow(argv)
    except MissingExtra as error:
        print(f"keras-rnn {args.command}: {error}", file=sys.stderr)
        return 3
    except USER_ERRORS as error:  # DataError is a ValueError
        print(f"keras-rnn {args.command}: error: {error}", file=sys.stderr)
        return 2


def parse_args(argv=None):
    """`keras-rnn ARGV` parsed; `translate` takes its options and sentences
    in any order (`translate RUN --method greedy "S1" "S2"`)."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]  # paths welcome
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command != "translate":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return args
    # argparse cannot intermix the arguments of a subcommand; its own parser can.
    translate = parser.commands.choices["translate"]
    return translate.parse_intermixed_args(argv[argv.index("translate") + 1:],
                                           argparse.Namespace(command="translate",
                                                              compile_cache=args.compile_cache))


def compile_cache_dir():
    """Where `keras-rnn` keeps JAX's compiled programs between runs:
    `$JAX_COMPILATION_CACHE_DIR` if set, else `keras-rnn/jax` in the user's
    cache directory (`$XDG_CACHE_HOME`, default `~/.cache`)."""
    import os
    from pathlib import Path

    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "keras-rnn" / "jax"


def use_compile_cache():
    """Turns on JAX's persistent compilation cache for this process.

    On JAX every traced shape is an XLA compilation (seconds on a CPU); with
    the cache, a second `keras-rnn translate RUN` or a resumed `train` loads
    the compiled programs instead of compiling them again. Programs that
    compiled in under half a second are not kept. Nothing happens on the
    other backends (JAX is not imported for them).
    """
    import os

    path = str(compile_cache_dir())
    settings = {"jax_compilation_cache_dir": path,
                "jax_persistent_cache_min_compile_time_secs": float(
                    os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", 0.5))}
    jax = sys.modules.get("jax")
    if jax is None:  # imported later, if at all: it reads these variables then
        for name, value in settings.items():
            os.environ.setdefault(name.upper(), str(value))
        return
    for name, value in settings.items():
        jax.config.update(name, value)


def _on_tensorflow_already():
    import os

    return os.environ.get("KERAS_BACKEND") == "tensorflow"


def _rerun_on_tensorflow(argv):
    """Runs the same command again in a process whose Keras backend is TensorFlow.

    `import keras_rnn` has already started Keras on another backend here,
    and Keras cannot switch backends inside a process. The command line
    replaces this process (so `serve` gets the signals); a call of `main`
    from Python runs a child process and returns its exit status.
    """
    import os
    import subprocess

    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    command = [sys.executable, "-m", "keras_rnn.cli"]
    if argv is None:
        from keras_rnn._quiet import restore_stderr

        sys.stdout.flush()
        sys.stderr.flush()
        restore_stderr()  # the new process reads its own stderr; this one's pipe ends here
        os.execve(sys.executable, [*command, *sys.argv[1:]], env)
    return subprocess.run([*command, *map(str, argv)], env=env).returncode


class _Parser(argparse.ArgumentParser):
    """The top-level parser: its help opens with what the tool does."""

    def format_help(self):
        return f"{SUMMARY}\n\n{super().format_help()}"


def build_parser():
    """The `keras-rnn` parser with every subcommand and its flags.

    Its `commands` attribute is the subparsers action (`commands.choices`:
    command name -> parser).
    """
    parser = _Parser(prog="keras-rnn")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--verbose", action="store_true",
                        help="keep TensorFlow's and XLA's native log lines on stderr (dropped "
                             "by default, as are those below a TF_CPP_MIN_LOG_LEVEL you set; "
                             "keras_rnn/_quiet.py)")
    parser.add_argument("--no-compile-cache", dest="compile_cache", action="store_false",
                        help="on JAX, do not keep compiled programs between runs (kept by "
                             "default in $XDG_CACHE_HOME/keras-rnn/jax, or "
                             "$JAX_COMPILATION_CACHE_DIR)")
    commands = parser.commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train (or resume) a translator")
    train.add_argument("config", help="YAML config file, or the name of a shipped config "
                                      "(quick, multi30k_de_en, multi30k_en_de)")
    train.add_argument("--data-dir", default=None, metavar="DIR",
                       help="the corpus directory (overrides the config's data.dir; default "
                            "$KERAS_RNN_DATA_DIR, else the config's, else data/multi30k "
                            "for a shipped config)")
    train.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a config value (repeatable)")
    train.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                       help="multi-process data parallel on JAX: process 0's address "
                            "(default $KERAS_DISTRIBUTION_JOB_ADDRESSES)")
    train.add_argument("--num-processes", type=int, default=None, metavar="N",
                       help="the number of processes (default $KERAS_DISTRIBUTION_NUM_PROCESSES)")
    train.add_argument("--process-id", type=int, default=None, metavar="I",
                       help="this process, 0..N-1 (default $KERAS_DISTRIBUTION_PROCESS_ID)")

    evaluate = commands.add_parser("evaluate", help="beam search + sacreBLEU on a split")
    evaluate.add_argument("run", help="run directory (the config's output_dir), or a model "
                                      "directory such as keras-rnn average's")
    evaluate.add_argument("--split", default=None,
                          help="split name (default: the config's test_split; "
                               "the validation split is usually val)")
    evaluate.add_argument("--beam-size", type=int, default=None)
    evaluate.add_argument("--alpha", type=float, default=None, help="length penalty")
    evaluate.add_argument("--batch-size", type=int, default=None)
    evaluate.add_argument("--limit", type=int, default=None)
    evaluate.add_argument("--output", default=None, help="translations file")

    average = commands.add_parser(
        "average", help="average the last K checkpoints into a model directory",
        description="keras-rnn average RUN writes the element-wise mean of the weights of "
                    "the run's newest checkpoints as a model directory (model.keras and "
                    "tokenizers) that evaluate, translate and export take in place of RUN. "
                    "The run's own model/ and checkpoints/ are left as they are.")
    average.add_argument("run", help="run directory (the config's output_dir)")
    average.add_argument("--last", type=int, default=None, metavar="K",
                         help="how many of the newest checkpoints (default: all the run kept)")
    average.add_argument("--output", default=None, metavar="DIR",
                         help="model directory to write (default: RUN/averaged)")

    translate = commands.add_parser(
        "translate", help="translate sentences: RUN SENTENCE... in process, or --server",
        description="keras-rnn translate RUN [SENTENCE...] translates with a trained run in "
                    "this process; keras-rnn translate --server HOST:PORT [SENTENCE...] asks "
                    "a keras-rnn serve (or TensorFlow Serving-compatible) server over gRPC. "
                    "Without sentences it translates stdin line by line.")
    add_client_arguments(translate)
    translate.set_defaults(server=None)  # in process unless --server is given
    translate.add_argument("--method", choices=("beam", "greedy"), default="beam",
                           help="in process only")

    add_serve_arguments(commands.add_parser("serve", help="serve exported translators over gRPC"))

    plot = commands.add_parser("plot", help="loss/BLEU curves and attention heat maps")
    plot.add_argument("run")
    plot.add_argument("--index", type=int, nargs="*", default=[0, 1, 2],
                      help="test sentences (line numbers from 0) to draw alignments for")
    plot.add_argument("--sentence", action="append", default=[],
                      help="extra source sentence to draw alignments for")

    download = commands.add_parser("download", help="fetch Multi30k (SHA-256 checked)")
    download.add_argument("dest")
    download.add_argument("--splits", nargs="+", default=["train", "val", "test_2016_flickr"])
    download.add_argument("--langs", nargs="+", default=["de", "en"])

    export = commands.add_parser(
        "export", help="SavedModel (text in, text out) as BASE_DIR/NAME/VERSION")
    export.add_argument("run", help="run directory (the config's output_dir), or a model "
                                    "directory such as keras-rnn average's")
    export.add_argument("base_dir", help="model base directory (what a server watches)")
    exported = ExportConfig()
    export.add_argument("--name", dest="model_name", default=exported.model_name,
                        help="model name (default: the config's name)")
    export.add_argument("--version", type=int, default=exported.version,
                        help="integer version (default: one more than the highest there)")
    export.add_argument("--beam-size", type=int, default=exported.beam_size,
                        help="default beam size (default: the config's)")
    export.add_argument("--max-beam-size", type=int, default=exported.max_beam_size,
                        help="largest beam size a request may ask for (default: the "
                             f"larger of {DEFAULT_MAX_BEAM_SIZE} and the default beam size)")
    export.add_argument("--max-length", type=int, default=exported.max_length,
                        help="default maximum target tokens")
    export.add_argument("--max-length-limit", type=int, default=exported.max_length_limit,
                        help="largest max_length a request may ask for")
    export.add_argument("--max-source-tokens", type=int, default=exported.max_source_tokens,
                        help="longest source sentence accepted, in subwords")
    export.add_argument("--quantize", default=exported.quantize, metavar="MODE",
                        help="quantize the weights before tracing: int8 (kernels of the "
                             "cells, Dense layers and embeddings; default: float32)")

    return parser


def _version():
    from importlib import metadata

    try:
        return metadata.version("keras-rnn")
    except metadata.PackageNotFoundError:  # a checkout that is not installed
        return "(not installed)"


def add_client_arguments(parser):
    """Adds the `keras-rnn translate` flags to an argparse parser.

    Args:
        parser: an `argparse.ArgumentParser` (or subparser).

    Returns:
        The parser.
    """
    parser.add_argument("sentences", nargs="*",
                        help="sentences to translate (default: read stdin line by line)")
    parser.add_argument("--server", default="127.0.0.1:8500",
                        help="HOST:PORT of keras-rnn serve, or several joined by commas, "
                             "or dns:///NAME:PORT for every address of NAME: calls go "
                             "round robin and retry on another server when one is "
                             "UNAVAILABLE (default: %(default)s)")
    parser.add_argument("--model", default="",
                        help="model name (default: the server's only model)")
    parser.add_argument("--version", type=int, help="model version (default: newest)")
    parser.add_argument("--beam-size", type=int, help="beam width (default: the model's)")
    parser.add_argument("--n-best", type=int, default=1,
                        help="hypotheses per sentence (default: %(default)s)")
    parser.add_argument("--max-length", type=int,
                        help="longest translation in tokens (default: the model's)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_CLIENT_TIMEOUT,
                        help="deadline of each call in seconds (default: %(default)s)")
    parser.add_argument("--tls-ca", help="PEM CA of the server certificate (turns TLS on)")
    parser.add_argument("--tls-cert", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls-key", help="PEM client key (mutual TLS)")
    return parser


def add_serve_arguments(parser):
    """Adds the `keras-rnn serve` flags to an argparse parser: each sets the
    `ServerConfig` field of its name and defaults to it (`config_from_args`).

    Args:
        parser: an `argparse.ArgumentParser` (or subparser).

    Returns:
        The parser.
    """
    defaults = ServerConfig()
    models = parser.add_argument_group("models")
    models.add_argument("--model-base-dir", metavar="DIR", default=defaults.model_base_dir,
                        help="serve every subdirectory of DIR as a model "
                             "(DIR/NAME/VERSION/saved_model.pb)")
    models.add_argument("--model", dest="models", action="append", default=[],
                        metavar="NAME=PATH",
                        help="serve the model directory PATH as NAME (repeatable)")
    models.add_argument("--versions", choices=("latest", "all"), default=defaults.versions,
                        help="serve the highest version only, or every version "
                             "(default: %(default)s)")
    models.add_argument("--version-label", dest="version_labels", action="append", default=[],
                        metavar="[MODEL:]LABEL=VERSION",
                        help="TensorFlow Serving's version labels: requests for LABEL "
                             "(model_spec.version_label, REST /labels/LABEL) get VERSION "
                             "(repeatable; with --versions all to keep older versions "
                             "loaded)")
    models.add_argument("--poll-seconds", type=float, default=defaults.poll_seconds,
                        help="look for new versions every N seconds, 0 = never "
                             "(default: %(default)s)")
    models.add_argument("--graph-optimizations", action="store_true",
                        default=defaults.graph_optimizations,
                        help="run TensorFlow's Grappler on the signatures (slower to "
                             "load and warm; no faster on the exported translators)")
    models.add_argument("--no-warmup", dest="warmup", action="store_false",
                        default=defaults.warmup,
                        help="do not replay assets.extra/tf_serving_warmup_requests")
    import os

    for field, what in (("tensorflow_intra_op_parallelism", "threads one TensorFlow op may use"),
                        ("tensorflow_inter_op_parallelism", "TensorFlow ops run side by side")):
        variable = THREAD_ENVIRONMENT[field]
        models.add_argument(
            "--" + field.replace("_", "-"), "--" + field, dest=field, type=thread_count,
            default=os.environ.get(variable, "").strip() or getattr(defaults, field),
            help=f"{what}; 0 = TensorFlow's default: every core it sees, in a container "
                 f"the node's, not the CPU limit (default: ${variable}, else 0)")
    net = parser.add_argument_group("network")
    net.add_argument("--host", default=defaults.host,
                     help="address to listen on (default: %(default)s; 0.0.0.0 = all)")
    net.add_argument("--port", type=int, default=defaults.port,
                     help="gRPC port, 0 = any free port (default: %(default)s)")
    net.add_argument("--rest-api-port", "--rest_api_port", dest="rest_api_port", type=int,
                     default=defaults.rest_api_port,
                     help="TensorFlow Serving's REST API (POST /v1/models/NAME:predict) on "
                          "this port, 0 = off (default: %(default)s)")
    net.add_argument("--workers", type=int, default=defaults.workers,
                     help="gRPC handler threads, and as many REST API workers "
                          "(default: %(default)s)")
    net.add_argument("--max-concurrent-rpcs", type=int, default=defaults.max_concurrent_rpcs,
                     help="RPCs in progress before RESOURCE_EXHAUSTED (default: %(default)s)")
    net.add_argument("--max-message-bytes", type=int, default=defaults.max_message_bytes,
                     help="largest message received or sent (default: %(default)s)")
    net.add_argument("--grace-seconds", type=float, default=defaults.grace_seconds,
                     help="on SIGTERM/SIGINT, time in-flight RPCs get to finish "
                          "(default: %(default)s)")
    net.add_argument("--drain-seconds", type=float, default=defaults.drain_seconds,
                     help="on SIGTERM/SIGINT, time the server keeps answering after its "
                          "health says NOT_SERVING, so that clients watching health move "
                          "to other servers first, where nothing (such as a Kubernetes "
                          "preStop hook) drains it before the signal; at most "
                          "--grace-seconds (default: %(default)s)")
    net.add_argument("--tls-cert", default=defaults.tls_cert,
                     help="PEM server certificate chain (turns TLS on)")
    net.add_argument("--tls-key", default=defaults.tls_key, help="PEM server private key")
    net.add_argument("--tls-client-ca", default=defaults.tls_client_ca,
                     help="PEM CA for client certificates (mutual TLS: required)")
    batch = parser.add_argument_group("batching and limits")
    batch.add_argument("--no-batching", dest="batching", action="store_false",
                       default=defaults.batching,
                       help="run each request alone instead of merging concurrent ones")
    batch.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size,
                       help="most sentences in one batch (default: %(default)s)")
    batch.add_argument("--batch-timeout-ms", type=float, default=defaults.batch_timeout_ms,
                       help="longest wait for a batch to fill (default: %(default)s)")
    batch.add_argument("--max-enqueued-batches", type=int,
                       default=defaults.max_enqueued_batches,
                       help="batches waiting before RESOURCE_EXHAUSTED (default: %(default)s)")
    batch.add_argument("--max-queued-sentences", type=int,
                       default=defaults.max_queued_sentences,
                       help="sentences waiting before RESOURCE_EXHAUSTED "
                            "(default: %(default)s)")
    batch.add_argument("--num-batch-threads", type=int, default=defaults.num_batch_threads,
                       help="threads running batches, per version (default: %(default)s)")
    batch.add_argument("--max-chunk-cost", type=int, default=defaults.max_chunk_cost,
                       help="most decoder steps (sentences x beam_size x max_length) of a "
                            "request run at a time: larger requests run in chunks "
                            "interleaved with other requests; 0 = no chunks "
                            "(default: %(default)s)")
    batch.add_argument("--max-request-sentences", type=int,
                       default=defaults.max_request_sentences,
                       help="most sentences in one request (default: %(default)s)")
    batch.add_argument("--max-request-cost", type=int, default=defaults.max_request_cost,
                       help="most decoder steps (sentences x beam_size x max_length) one "
                            "request may ask for; refused before it runs "
                            "(default: %(default)s)")
    batch.add_argument("--max-sentence-chars", type=int, default=defaults.max_sentence_chars,
                       help="longest sentence, in characters (default: %(default)s)")
    batch.add_argument("--max-request-seconds", type=float,
                       default=defaults.max_request_seconds,
                       help="longest a request may queue and run; the deadline of requests "
                            "that set none (default: %(default)s)")
    obs = parser.add_argument_group("observability")
    obs.add_argument("--metrics-port", type=int, default=defaults.metrics_port,
                     help="Prometheus /metrics HTTP port, 0 = off (default: %(default)s)")
    obs.add_argument("--metrics-host", default=defaults.metrics_host,
                     help="address of the metrics endpoint (default: %(default)s)")
    obs.add_argument("--log-level", default="INFO",
                     choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                     help="JSON log level on stderr; DEBUG logs every batch "
                          "(default: %(default)s)")
    return parser
