"""Which Keras backend keras-rnn runs on: the one home of that rule.

- `select_backend`: the backend `import keras_rnn` starts Keras with, when
  the chosen one is absent; `missing_backend`: what to install when there is
  none.
- `require_tensorflow`: what needs the TensorFlow backend (`keras-rnn
  export` and `serve` build or run TensorFlow graphs) says so by raising
  `TensorFlowRequired`; the command line answers that by running the same
  command again on TensorFlow (a model trained on JAX loads unchanged).

Keras uses the backend named by `KERAS_BACKEND`, else by `backend` in
`~/.keras/keras.json` (which Keras itself writes on first import, with
"tensorflow"), else TensorFlow. On a machine that has JAX (say, with CUDA)
but no TensorFlow, `import keras` then fails. `select_backend` runs before
Keras is first imported and, only when the backend Keras would load is not
installed and `KERAS_BACKEND` is unset, sets `KERAS_BACKEND` to one that is.
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

# Keras's default, then the others in the order keras-rnn is tested on.
PREFERENCE = ("tensorflow", "jax", "torch")


def select_backend():
    """Sets `KERAS_BACKEND` when the backend Keras would load is not installed.

    Returns:
        The backend set, or None when the choice was left to Keras.
    """
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND"):
        return None
    if _installed(_configured() or "tensorflow"):
        return None
    for name in PREFERENCE:
        if _installed(name):
            os.environ["KERAS_BACKEND"] = name
            return name
    return None


def missing_backend():
    """What to install when no Keras backend is installed (keras-rnn alone).

    Returns:
        One sentence naming the extras, or None when Keras has a backend
        it can load.
    """
    if "keras" in sys.modules or any(_installed(name) for name in PREFERENCE):
        return None
    return ("keras-rnn needs a Keras backend: pip install 'keras-rnn[jax]' (or [tensorflow], "
            "or [torch])")


def _configured():
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        return json.loads((home / "keras.json").read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # an import hook that refuses the module
        return False


class TensorFlowRequired(RuntimeError):
    """Keras runs on another backend than TensorFlow, and the caller builds
    or runs TensorFlow graphs (Keras cannot switch backends in a process)."""


def require_tensorflow(what):
    """Raises `TensorFlowRequired` unless Keras runs on TensorFlow.

    Args:
        what: who needs it, for the message ("keras-rnn export").
    """
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise TensorFlowRequired(
            f"{what} builds TensorFlow graphs and needs the TensorFlow backend; this "
            f"process runs Keras on {backend!r}. Run it with KERAS_BACKEND=tensorflow "
            "(the weights of a model trained on another backend load there unchanged).")
