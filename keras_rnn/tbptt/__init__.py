"""Truncated backpropagation through time (TBPTT) for Keras 3.

Backpropagation through time over a sequence of `T` steps keeps every step's
activations until the backward pass and makes one update per sequence.
TBPTT (Williams & Peng 1990, "An efficient gradient-based algorithm for
on-line training of recurrent network trajectories", Neural Computation 2(4);
written TBPTT(k1, k2) in Sutskever 2013, "Training Recurrent Neural
Networks", PhD thesis, University of Toronto: an update every k1 steps,
gradients through k2) cuts the sequence into consecutive chunks of `k`
steps and, for the chunk `c` of every sequence,

    h_0^(c)   = stop_gradient(h_k^(c-1))         # h_0^(1) = 0
    h_k^(c)   = RNN(x^(c), h_0^(c); theta)       # forward k steps
    theta    <- theta - lr * d L^(c)(theta; x^(c), h_0^(c)) / d theta

so the forward pass sees the whole past through the carried state while
gradients flow back at most `k` steps, memory is `O(k)` rather than `O(T)`,
and there are `T / k` updates per sequence: TBPTT(k, k).

Two ways to use it, on any Keras backend:

- `model.fit(..., shuffle=False)` with recurrent layers wrapped in
  `StatefulRNN`, a `TBPTTSequence` that serves the chunks in order, and the
  `TBPTTResetStates` callback that zeroes the states at the first chunk of
  every new group of sequences. `StatefulRNN` carries a layer's final state
  into its next call in non-trainable variables, which gradients do not
  flow through, so the stop at chunk boundaries is implicit.
- `chunked_forward` for custom training loops: runs a non-stateful layer
  chunk by chunk, passing the state explicitly and applying
  `keras.ops.stop_gradient` to it at every boundary.

Why a wrapper rather than `stateful=True`: Keras 3.15 keeps a stateful RNN's
states in variables that it does not track, so they are not among the
model's `non_trainable_variables`. The TensorFlow trainer reads and assigns
them directly and carries them fine; the JAX trainer's compiled steps only
thread tracked variables through, so there the state is frozen at the value
it had when the step was traced (zeros, typically) and never carried.
`StatefulRNN` keeps the state in tracked variables, which both trainers
thread through, as they do BatchNormalization's moving statistics.
"""

from keras_rnn.tbptt.chunked import chunked_forward
from keras_rnn.tbptt.data import TBPTTSequence
from keras_rnn.tbptt.stateful import StatefulRNN
from keras_rnn.tbptt.stateful import TBPTTResetStates
from keras_rnn.tbptt.stateful import reset_rnn_states
from keras_rnn.tbptt.stateful import stateful_layers

__all__ = ["StatefulRNN", "TBPTTResetStates", "TBPTTSequence", "chunked_forward",
           "reset_rnn_states", "stateful_layers"]
