"""Sequence layers `SimpleRNN`, `LSTM`, `GRU` over the keras_rnn cells.

Each takes its cell's arguments (see `keras_rnn.cells`) plus those of
`keras.layers.RNN` (`return_sequences`, `return_state`, `go_backwards`,
`stateful`, `unroll`, `zero_output_for_mask`) and `use_cudnn`, and runs the
fast path of `keras_rnn._fused.FusedRNN`: input dropout, input projection and
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

from keras_rnn import _keras_private
from keras_rnn import cells
from keras_rnn._fused import FusedRNN

register = keras.saving.register_keras_serializable(package="keras_rnn")

_LAYER_ARGS_DOC = """
        return_sequences: return the output of every step, not only the
            last.
        return_state: also return the final states.
        go_backwards: run over the sequence backwards.
        stateful: carry the final states of a batch over to the next one.
        unroll: unroll the time loop (short sequences only).
        use_cudnn: "auto" (Keras's cuDNN kernel where the configuration
            allows, on a GPU), True (require it) or False.
        **kwargs: other `keras.layers.RNN` / `Layer` arguments (`name`,
            `dtype`, `zero_output_for_mask`, ...)."""

_COMMON_ARGS_DOC = """
        use_bias: whether to add the bias.
        kernel_initializer, recurrent_initializer, bias_initializer:
            initializers of `W`, `U`, `b`.
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        activity_regularizer, kernel_constraint, recurrent_constraint,
        bias_constraint: as in Keras.
        dropout: variational dropout rate on `x_t` (one mask per sequence,
            shared by all gates), in [0, 1).
        recurrent_dropout: variational dropout rate on `h_{t-1}` in the
            recurrent matmul (one mask per sequence, all gates), in [0, 1).
        seed: seed of the dropout and zoneout draws.
        zoneout: probability that a unit of `h` keeps its previous value
            (Krueger et al. 2017)."""

_NORM_ARGS_DOC = """
        layer_norm: layer-normalize `W x` and `U h` separately (Ba et al.
            2016); see `keras_rnn.cells`.
        norm_epsilon: epsilon of the layer normalizations.
        norm_gamma_initializer, norm_beta_initializer: their gain and bias
            initializers."""


def _arguments(local_vars):
    """A constructor's arguments, from its `locals()`, as one keyword dict."""
    arguments = {
        key: value
        for key, value in local_vars.items()
        if key not in ("self", "__class__", "kwargs")
    }
    return {**arguments, **local_vars["kwargs"]}


@register
class SimpleRNN(FusedRNN):
    """Fully-connected RNN over `keras_rnn.SimpleRNNCell`, optionally
    layer-normalized, with variational dropout and zoneout.

        h_t = act(LN_x(W x_t) + LN_h(U h_{t-1}) + b)

    Args:
        units: positive int, size of `h`.
        activation: non-linearity `act`. Default `"tanh"`.{common}{norm}{layer}

    Example:

    >>> layer = SimpleRNN(8, layer_norm=True, return_sequences=True)
    >>> layer(np.zeros((2, 5, 3))).shape
    (2, 5, 8)
    """

    cell_class = cells.SimpleRNNCell

    def __init__(
        self,
        units,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        zoneout=0.0,
        layer_norm=False,
        norm_epsilon=1e-3,
        norm_gamma_initializer="ones",
        norm_beta_initializer="zeros",
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_cudnn="auto",
        **kwargs,
    ):
        super().__init__(**_arguments(locals()))


@register
class LSTM(FusedRNN):
    """LSTM layer over `keras_rnn.LSTMCell` (layer norm, peepholes,
    variational dropout, zoneout); see `keras_rnn.LSTMCell` for the
    equations.

    Args:
        units: positive int, size of `h` and `c`.
        activation, recurrent_activation: default `"tanh"`, `"sigmoid"`.
        unit_forget_bias: initialize the forget-gate bias to 1 (Jozefowicz
            et al. 2015), as Keras.{common}
        zoneout_cell: zoneout probability of `c`.{norm}
            With an LSTM, `c_t` is also normalized on its way to `h_t`.
        peephole: add the diagonal peephole connections (Gers &
            Schmidhuber 2000).
        peephole_initializer: initializer of the peephole weights.{layer}

    Example:

    >>> layer = LSTM(16, layer_norm=True, recurrent_dropout=0.25)
    >>> layer(np.zeros((4, 7, 3))).shape
    (4, 16)
    """

    cell_class = cells.LSTMCell

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        zoneout=0.0,
        zoneout_cell=0.0,
        layer_norm=False,
        norm_epsilon=1e-3,
        norm_gamma_initializer="ones",
        norm_beta_initializer="zeros",
        peephole=False,
        peephole_initializer="glorot_uniform",
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_cudnn="auto",
        **kwargs,
    ):
        super().__init__(**_arguments(locals()))

    def _backend_kernel(self, sequences, initial_state, mask):
        cell = self.cell
        if cell.layer_norm or cell.peephole or cell.zoneout or cell.zoneout_cell:
            raise NotImplementedError
        return _keras_private.lstm(
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
    zoneout; both `reset_after` conventions); see `keras_rnn.GRUCell` for
    the equations.

    Args:
        units: positive int, size of `h`.
        activation, recurrent_activation: default `"tanh"`, `"sigmoid"`.{common}{norm}
        reset_after: apply the reset gate after the recurrent matmul
            (Keras's default and cuDNN's convention) or before it (Cho et
            al. 2014).{layer}

    Example:

    >>> layer = GRU(8, layer_norm=True, return_state=True)
    >>> output, state = layer(np.zeros((2, 5, 3)))
    >>> output.shape, state.shape
    ((2, 8), (2, 8))
    """

    cell_class = cells.GRUCell

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        zoneout=0.0,
        layer_norm=False,
        norm_epsilon=1e-3,
        norm_gamma_initializer="ones",
        norm_beta_initializer="zeros",
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        reset_after=True,
        use_cudnn="auto",
        **kwargs,
    ):
        super().__init__(**_arguments(locals()))

    def _backend_kernel(self, sequences, initial_state, mask):
        cell = self.cell
        if cell.layer_norm or cell.zoneout:
            raise NotImplementedError
        return _keras_private.gru(
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


for _layer in (SimpleRNN, LSTM, GRU):
    for _key, _text in (("{common}", _COMMON_ARGS_DOC), ("{norm}", _NORM_ARGS_DOC),
                        ("{layer}", _LAYER_ARGS_DOC)):
        _layer.__doc__ = _layer.__doc__.replace(_key, _text)
del _key, _text
del _layer
