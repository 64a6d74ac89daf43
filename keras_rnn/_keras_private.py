"""Every use of private Keras (`keras.src`) in keras_rnn, in one place.

Keras is pinned to 3.15.x in `setup.cfg`; when it moves, this module is the
one to check. Everything else in keras_rnn uses public Keras (`keras.ops`,
`keras.tree`, `keras.random`, ...).
"""

import contextlib

from keras import ops
from keras import tree

# `DropoutRNNCell`: `keras.layers.RNN` draws (and caches) a cell's dropout
# masks before its time loop, as JAX's `scan` requires, and clears them
# after, only for cells that are instances of this mixin. Our cells inherit it
# so they keep that contract inside `keras.layers.RNN`, `StackedRNNCells` and
# `Bidirectional`.
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell  # noqa: F401

# `backend.rnn`: the backend's time loop (`tf.while_loop` / `jax.lax.scan`)
# with masking, `go_backwards` and unrolling; `keras.ops` exposes no
# equivalent. `backend.lstm` / `backend.gru`: the cuDNN kernels Keras's own
# LSTM/GRU take on a GPU, also not in `keras.ops`.
# `backend.get_autocast_scope` / `backend.AutocastScope`: see `autocast`.
from keras.src import backend as _backend
from keras.src.quantizers.utils import should_quantize_layer  # noqa: F401

lstm = _backend.lstm
gru = _backend.gru


def autocast(layer):
    """A context in which float variables read as `layer.compute_dtype`.

    `Layer.__call__` opens this scope for layers with a mixed policy
    (`mixed_bfloat16`, `mixed_float16`), but `Layer.stateless_call`, which
    the JAX trainer runs, does not; code that calls cell methods directly
    (`project_inputs`, `step`, the attention wrapper's `call`) would then read
    float32 kernels and promote the whole recurrence to float32. Wrapping
    such code in `with autocast(model):` gives the same numbers under both.
    The scope is private Keras (`keras.src.backend.AutocastScope`).

    Args:
        layer: the layer whose dtype policy applies.

    Returns:
        A context manager (a no-op when the policy is not mixed or a scope
        with the same dtype is already open).
    """
    compute = layer.compute_dtype
    current = _backend.get_autocast_scope()
    if current is not None and current.dtype == compute:
        return contextlib.nullcontext()
    if current is None and compute == layer.variable_dtype:
        return contextlib.nullcontext()
    return _backend.AutocastScope(compute)


def rnn(step_function, inputs, initial_states, *, time_major=False, input_length=None,
        **kwargs):
    """`backend.rnn` (Keras's time loop), always told how many steps to run.

    Keras's TensorFlow and PyTorch loops take `input_length or
    inputs.shape[1]` as the iteration bound. For a time-major input whose
    length is unknown when traced (`tf.function` with relaxed shapes: a
    second call with another source length) `shape[1]` is the *batch* size,
    so the loop ran `batch` steps and silently returned a truncated
    recurrence. Here a missing length is the static length where there is
    one, else the dynamic one (in a list: truthy, and its maximum is the
    bound, which both backends accept).

    Args:
        step_function, inputs, initial_states, **kwargs: as `backend.rnn`.
        time_major: whether `inputs` is `(time, batch, ...)`.
        input_length: the number of steps, or None to read it off `inputs`.

    Returns:
        `(last_output, outputs, new_states)`, as `backend.rnn`.
    """
    if input_length is None:
        first = tree.flatten(inputs)[0]
        axis = 0 if time_major else 1
        steps = first.shape[axis]
        input_length = steps if steps is not None else [ops.shape(first)[axis]]
    return _backend.rnn(step_function, inputs, initial_states, time_major=time_major,
                        input_length=input_length, **kwargs)


@contextlib.contextmanager
def unlocked(layer):
    """A context in which a built `layer` may still create weights.

    Keras 3 locks a layer's state when its `build` returns. TF Addons'
    attention mechanisms build in two phases, `build(memory_shape)` and then,
    once the memory is set, `build([query_shape, state_shape])`, whose
    query-side weights come after the lock. `layer._tracker` is private.

    Args:
        layer: a Keras layer.
    """
    tracker = layer._tracker
    was_locked = tracker.locked
    tracker.unlock()
    try:
        yield
    finally:
        if was_locked:
            layer._lock_state()
