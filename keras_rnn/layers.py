"""Sequence layers `SimpleRNN`, `LSTM`, `GRU` over the keras_rnn cells.

Each is a subclass of Keras's layer of the same name and takes all its
arguments with the same defaults, plus its cell's options (see
`keras_rnn.cells`). Each builds its cell from its arguments, as Keras's
layers do, and runs the fast path of `keras_rnn._fused.FusedRNN`: input
dropout, input projection and its layer norm for all time steps in one matmul
before the loop, only the recurrent half of the step inside it. Plain
LSTM/GRU configurations (no layer norm, peephole, zoneout or recurrent
dropout) take Keras's cuDNN kernel on a GPU (`use_cudnn="auto"`), and
Keras's fused bidirectional kernel inside `keras.layers.Bidirectional`.

Each layer lives with its cell, as in Keras: `keras_rnn/simple_rnn.py`,
`keras_rnn/lstm.py`, `keras_rnn/gru.py`.

Call arguments (all three):
    sequences: `(batch, time, features)`.
    initial_state: list of `(batch, units)` tensors, or None for zeros.
    mask: `(batch, time)` boolean; masked steps keep the previous state.
    training: Python bool; enables dropout and random zoneout.

Returns:
    The last output `(batch, units)`, or all of them `(batch, time, units)`
    with `return_sequences`; followed by the final states with
    `return_state`.
"""

from keras_rnn.gru import GRU
from keras_rnn.lstm import LSTM
from keras_rnn.simple_rnn import SimpleRNN

__all__ = ["GRU", "LSTM", "SimpleRNN"]
