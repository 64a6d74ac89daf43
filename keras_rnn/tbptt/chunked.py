"""`chunked_forward`: TBPTT in a custom training loop (see `keras_rnn.tbptt`)."""

from keras import ops

from keras_rnn._checks import check_positive_int


def chunked_forward(
    layer,
    inputs,
    chunk_length,
    initial_state=None,
    *,
    stop_gradient=True,
    training=None,
):
    """Runs a recurrent layer chunk by chunk, carrying the state explicitly.

    For custom training loops (`tf.GradientTape`, `jax.grad`):

        outputs_c, *state = layer(inputs[:, c*k:(c+1)*k], initial_state=state)
        state = [stop_gradient(s) for s in state]

    With `stop_gradient=True` the gradient of a loss on these outputs is the
    TBPTT gradient: the loss of chunk `c` reaches the inputs and weights
    through chunk `c` only, the incoming state being a constant. The
    forward values are those of one call over the whole sequence (up to
    rounding). Summing the chunk losses and taking one step accumulates the
    truncated gradients of all chunks; for TBPTT(k, k) proper, take one
    optimizer step per chunk (or use `TBPTTSequence` with `fit`).

    Args:
        layer: a non-stateful recurrent layer built with
            `return_sequences=True, return_state=True` (any callable
            `layer(x, initial_state=..., training=...)` returning
            `[outputs, *states]`).
        inputs: `(batch, time, features)`. `time` need not be a multiple of
            `chunk_length`: the last chunk is then shorter.
        chunk_length: `k`, steps per chunk.
        initial_state: list of state tensors for the first chunk, or None
            for the layer's zeros.
        stop_gradient: whether to cut the gradient at chunk boundaries
            (False gives full backpropagation through time, for comparison).
        training: passed to `layer`.

    Returns:
        `(outputs, states)`: outputs `(batch, time, units)` of all chunks
        concatenated along time, and the list of final states.

    Example:

    >>> lstm = keras_rnn.LSTM(16, return_sequences=True, return_state=True)
    >>> outputs, (h, c) = chunked_forward(lstm, np.zeros((2, 100, 3)), 25)
    >>> outputs.shape
    (2, 100, 16)
    """
    chunk_length = check_positive_int("chunk_length", chunk_length)
    for flag in ("return_sequences", "return_state"):
        if getattr(layer, flag, True) is not True:
            raise ValueError(
                f"Argument `layer` must be built with {flag}=True, "
                f"got {getattr(layer, 'name', layer)!r} with {flag}=False."
            )
    if getattr(layer, "stateful", False):
        raise ValueError(
            "Argument `layer` must not be stateful: `chunked_forward` passes "
            "the state from chunk to chunk itself."
        )
    time = inputs.shape[1]
    if time is None:
        raise ValueError(
            "Argument `inputs` must have a static time dimension, got shape "
            f"{tuple(inputs.shape)}."
        )
    state = None if initial_state is None else list(initial_state)
    outputs = []
    for start in range(0, time, chunk_length):
        chunk = inputs[:, start:start + chunk_length]  # (batch, <= k, features)
        if state is None:
            result = layer(chunk, training=training)
        else:
            result = layer(chunk, initial_state=state, training=training)
        output, state = result[0], list(result[1:])
        outputs.append(output)  # (batch, <= k, units)
        if stop_gradient:
            state = [ops.stop_gradient(s) for s in state]
    return ops.concatenate(outputs, axis=1), state  # (batch, time, units)
