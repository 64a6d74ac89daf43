"""The serving commands of `keras-rnn` (flags in `keras_rnn.cli`).

`export`, `serve` and `translate --server` need the serving extra; the
command line checks it before importing this module (`keras_rnn.cli.extras`).
`export` and `serve` need Keras's TensorFlow backend and say so first
(`keras_rnn._backend.require_tensorflow`); the command line then runs them
again on it.
"""

from keras_rnn.serving.config import ExportConfig, configure


def export(args):
    """`keras-rnn export`."""
    from keras_rnn.serving.export import export as export_run

    path = export_run(args.run, args.base_dir, configure(ExportConfig, args))
    print(f"exported {path}")
    return 0


def serve(args):
    """`keras-rnn serve`: runs until SIGTERM/SIGINT, then exits at once.

    The server has stopped and unloaded its models when `run_serve` returns;
    the interpreter's own teardown (TensorFlow's, gRPC's) took 2-6 s more,
    so the process ends here with `os._exit` once the streams are flushed.
    """
    import logging
    import os
    import sys

    from keras_rnn._backend import require_tensorflow

    require_tensorflow("keras-rnn serve")  # before TensorFlow is imported here
    from keras_rnn.serving.server import run_serve

    from keras_rnn._quiet import restore_stderr

    status = run_serve(args)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    restore_stderr()  # the last log lines out of the quiet filter's pipe
    os._exit(status)


def translate(args):
    """`keras-rnn translate --server HOST:PORT`."""
    from keras_rnn.serving.client import run_client

    return run_client(args)
