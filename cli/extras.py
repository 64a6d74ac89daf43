"""Which pip extra a command needs, checked before it runs.

A `keras-rnn` command whose extra is not installed stops with one line that
names the extra and the missing module (`MissingExtra`), not a traceback
from deep inside an import.
"""

import importlib.util
import sys

# extra -> {import name: pip name} of what it installs and commands import.
EXTRAS = {
    "training": {"sentencepiece": "sentencepiece", "sacrebleu": "sacrebleu", "yaml": "pyyaml"},
    "serving": {"grpc": "grpcio", "google.protobuf": "protobuf", "tensorflow": "tensorflow",
                "tensorflow_text": "tensorflow-text",
                "tensorflow_serving": "tensorflow-serving-api",
                "grpc_health": "grpcio-health-checking",
                "grpc_reflection": "grpcio-reflection",
                "prometheus_client": "prometheus-client",
                # export reads the run's config and tokenizers
                "yaml": "pyyaml", "sentencepiece": "sentencepiece"},
}
# What one option of a command needs beyond its extra's core:
# (command, argparse dest) -> (extra, {import name: pip name}).
OPTION_EXTRAS = {
    ("serve", "rest_api_port"): ("serving", {"werkzeug": "werkzeug", "cheroot": "cheroot"}),
}


class MissingExtra(ImportError):
    """A command needs a pip extra that is not installed."""

    def __init__(self, extra, package, error):
        super().__init__(f"needs the {extra} extra (pip install 'keras-rnn[{extra}]'): "
                         f"{package} cannot be imported ({error})")


def require(extra):
    """Raises `MissingExtra` naming the first module of `extra` that is missing.

    Looks the modules up without importing them, so the check costs nothing
    beside the command's own imports.

    Args:
        extra: a key of `EXTRAS` ("training" or "serving").
    """
    require_modules(extra, EXTRAS[extra])


def require_options(command, args):
    """`require` for the modules that the options set in `args` need
    (`OPTION_EXTRAS`), e.g. `serve --rest-api-port` needs Werkzeug."""
    for (name, dest), (extra, modules) in OPTION_EXTRAS.items():
        if name == command and getattr(args, dest, None):
            require_modules(extra, modules)


def require_modules(extra, modules):
    """Raises `MissingExtra` for the first of `modules` ({import name: pip
    name}) that is missing, naming `extra` as the way to install it."""
    for module, package in modules.items():
        if module in sys.modules:  # imported already (find_spec raises ValueError
            continue               # for modules whose __spec__ is None: tensorflow_text)
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # a missing parent package ("google" of google.protobuf)
            found = False
        if not found:
            raise MissingExtra(extra, package, f"no module named {module!r}")
