"""Regenerates the Python code of keras-rnn's serving protos.

    python -m keras_rnn.serving.protos.generate            # rewrites serving/translator_pb2*.py
    python -m keras_rnn.serving.protos.generate --out DIR  # writes them to DIR instead

`protoc` (from `grpcio-tools`) compiles `serving/protos/keras_rnn/serving/
translator.proto` and `grpc_predict_v2.proto` (the Open Inference Protocol's
`inference.GRPCInferenceService`, `serving/kserve.py`) with the proto path
`serving/protos`, so they register as `keras_rnn/serving/translator.proto`
(package `keras_rnn.serving`, what server reflection shows) and
`keras_rnn/serving/grpc_predict_v2.proto` (package `inference`). The generated modules
are moved to `serving/`, which is the package `keras_rnn.serving`, so their
one cross-import (`from keras_rnn.serving import translator_pb2`) works
unchanged. `tests/serving/test_server.py` checks that
the committed files equal a fresh generation.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PROTOS = ("keras_rnn/serving/translator.proto", "keras_rnn/serving/grpc_predict_v2.proto")
SERVING_DIR = PROTO_ROOT.parent
GENERATED_PACKAGE = "keras_rnn.serving"


def generate(out_dir=SERVING_DIR):
    """Compiles `PROTOS` into `out_dir`.

    Args:
        out_dir: directory that receives `translator_pb2.py`,
            `translator_pb2.pyi`, `translator_pb2_grpc.py` and the same
            three of `grpc_predict_v2`.

    Returns:
        The sorted list of written `Path`s.

    Raises:
        RuntimeError: protoc failed (its exit status is in the message).
    """
    import grpc_tools

    out_dir = Path(out_dir)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        include = Path(grpc_tools.__file__).resolve().parent / "_proto"
        # protoc runs in a process of its own: in one that has loaded
        # TensorFlow's protobuf runtime it crashes.
        args = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}",
                f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}",
                *PROTOS]
        result = subprocess.run(args, cwd=PROTO_ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"protoc exited with status {result.returncode}: "
                               f"{' '.join(args)}\n{result.stderr}")
        generated = Path(tmp) / GENERATED_PACKAGE.replace(".", "/")
        for source in sorted(generated.iterdir()):
            target = out_dir / source.name
            target.write_text(source.read_text())
            written.append(target)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(SERVING_DIR),
                        help="output directory (default: serving/)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
