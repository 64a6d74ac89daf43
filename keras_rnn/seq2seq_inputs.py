"""The inputs `Seq2Seq` accepts, and the checks that name what is wrong
with a batch: the `(source, target)` pair, a source batch's shape, length
and ids. Value checks run only on concrete arrays, never inside a traced
function. Tests: `tests/keras_rnn/test_seq2seq_model.py`.
"""

import numpy as np

import keras
from keras import ops


def check_source(source, vocab_size, pad_id, max_source_length=None):
    """Raises ValueError for a source batch a `Seq2Seq` cannot decode.

    Checks the rank, an empty batch, sentences longer than
    `max_source_length` and ids outside the source vocabulary (values
    only when `source` is concrete, not inside a traced function).

    Args:
        source: `(batch, S)` ids padded with `pad_id`.
        vocab_size: the source vocabulary size.
        pad_id: the padding id.
        max_source_length: longest sentence (in tokens) accepted, or None.
    """
    shape = tuple(getattr(source, "shape", np.shape(source)))
    if len(shape) != 2:
        raise ValueError(
            f"source must be a (batch, time) matrix of token ids; got shape {shape}."
        )
    if shape[0] == 0:
        raise ValueError("The source batch is empty (batch size 0).")
    values = concrete(source)
    if values is None:
        return
    check_ids("source", values, vocab_size)
    if max_source_length is not None:
        lengths = np.sum(values != pad_id, axis=1)
        longest = int(np.argmax(lengths))
        if lengths[longest] > max_source_length:
            raise ValueError(
                f"Source sentence {longest} has {lengths[longest]} tokens, more "
                f"than max_source_length={max_source_length}."
            )


def split_inputs(inputs):
    """`(source, target)` of `Seq2Seq` inputs: a dict or a pair."""
    if isinstance(inputs, dict):
        missing = {"source", "target"} - set(inputs)
        if missing:
            raise ValueError(
                f"Seq2Seq inputs need the keys 'source' and 'target'; missing {sorted(missing)}."
            )
        return inputs["source"], inputs["target"]
    if isinstance(inputs, (list, tuple)) and len(inputs) == 2:
        return inputs[0], inputs[1]
    raise ValueError(
        "Seq2Seq inputs must be {'source': ids, 'target': ids} or "
        f"(source, target); got {type(inputs).__name__}."
    )


def concrete(x):
    """`x` as a NumPy array, or None if it is symbolic / traced."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, keras.KerasTensor):
        return None
    try:
        return np.asarray(ops.convert_to_numpy(x))
    except Exception:  # TF graph tensors and JAX tracers
        return None


def check_ids(name, values, vocab_size):
    """Raises ValueError naming the first id of `values` outside `[0, vocab_size)`."""
    bad = (values < 0) | (values >= vocab_size)
    if np.any(bad):
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} token id {int(values[row, col])} at sentence {row}, "
            f"position {col} is outside the vocabulary [0, {vocab_size})."
        )
