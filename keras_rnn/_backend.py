"""The Keras backend keras-rnn starts Keras with, when the user chose none.

Keras defaults to TensorFlow. On a machine that has JAX (say, with CUDA)
but no TensorFlow, `import keras` would then fail; `select_backend` picks the
installed backend instead, before Keras is first imported. An explicit
choice (`KERAS_BACKEND`, or `backend` in `~/.keras/keras.json`) always wins.
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

# In Keras's own order of preference after its default.
FALLBACKS = ("jax", "torch")


def select_backend():
    """Sets `KERAS_BACKEND` when TensorFlow is absent and nothing was chosen.

    Returns:
        The backend set, or None when this left the choice to Keras.
    """
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND") or _configured():
        return None
    if importlib.util.find_spec("tensorflow") is not None:
        return None
    for name in FALLBACKS:
        if importlib.util.find_spec(name) is not None:
            os.environ["KERAS_BACKEND"] = name
            return name
    return None


def _configured():
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        return bool(json.loads((home / "keras.json").read_text()).get("backend"))
    except (OSError, ValueError, AttributeError):
        return False
