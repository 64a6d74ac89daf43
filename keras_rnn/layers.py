"""Sequence layers `SimpleRNN`, `LSTM`, `GRU` over the keras_rnn cells.

Each takes its cell's arguments (see `keras_rnn.cells`) plus those of
`keras.layers.RNN` (`return_sequences`, `return_state`, `go_backwards`,
`stateful`, `unroll`, `zero_output_for_mask`) and `use_cudnn`, and runs the
fast path of `keras_rnn._base.FusedRNN`: input dropout, input projection and
its layer norm for all time steps in one matmul before the loop, only the
recurrent half of the step inside it. Plain LSTM/GRU configurations (no
layer norm, peephole, zoneout or recurrent dropout) take Keras's cuDNN
kernel on a GPU (`use_cudnn="auto"`).

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

import keras

from keras_rnn import cells
from keras_rnn._base import FusedRNN
from keras_rnn._base import keras_backend

register = keras.saving.register_keras_serializable(package="keras_rnn")


@register
class SimpleRNN(FusedRNN):
    """Fully-connected RNN over `keras_rnn.SimpleRNNCell`.

    Example:

    >>> layer = SimpleRNN(8, layer_norm=True, return_sequences=True)
    >>> layer(np.zeros((2, 5, 3))).shape
    (2, 5, 8)
    """

    cell_class = cells.SimpleRNNCell


@register
class LSTM(FusedRNN):
    """LSTM layer over `keras_rnn.LSTMCell` (layer norm, peepholes,
    variational dropout, zoneout).

    Example:

    >>> layer = LSTM(16, layer_norm=True, recurrent_dropout=0.25)
    >>> layer(np.zeros((4, 7, 3))).shape
    (4, 16)
    """

    cell_class = cells.LSTMCell

    def _backend_kernel(self, sequences, initial_state, mask):
        cell = self.cell
        if cell.layer_norm or cell.peephole or cell.zoneout or cell.zoneout_cell:
            raise NotImplementedError
        return keras_backend.lstm(
            sequences,
            initial_state[0],
            initial_state[1],
            mask,
            kernel=cell.kernel,
            recurrent_kernel=cell.recurrent_kernel,
            bias=cell.bias,
            activation=cell.activation,
            recurrent_activation=cell.recurrent_activation,
            return_sequences=self.return_sequences,
            go_backwards=self.go_backwards,
            unroll=self.unroll,
        )


@register
class GRU(FusedRNN):
    """GRU layer over `keras_rnn.GRUCell` (layer norm, variational dropout,
    zoneout; both `reset_after` conventions).

    Example:

    >>> layer = GRU(8, layer_norm=True, return_state=True)
    >>> output, state = layer(np.zeros((2, 5, 3)))
    >>> output.shape, state.shape
    ((2, 8), (2, 8))
    """

    cell_class = cells.GRUCell

    def _backend_kernel(self, sequences, initial_state, mask):
        cell = self.cell
        if cell.layer_norm or cell.zoneout:
            raise NotImplementedError
        return keras_backend.gru(
            sequences,
            initial_state[0],
            mask,
            kernel=cell.kernel,
            recurrent_kernel=cell.recurrent_kernel,
            bias=cell.bias,
            activation=cell.activation,
            recurrent_activation=cell.recurrent_activation,
            return_sequences=self.return_sequences,
            go_backwards=self.go_backwards,
            unroll=self.unroll,
            reset_after=cell.reset_after,
        )
