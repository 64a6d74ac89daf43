"""The Elman RNN: `SimpleRNNCell` and the `SimpleRNN` layer over it.

As `keras/src/layers/rnn/simple_rnn.py` holds Keras's; the options the
keras_rnn cells share (layer norm, variational dropout, zoneout) are
described in `keras_rnn.cells`.
"""

import keras

from keras_rnn._cell import NO_NOISE
from keras_rnn._cell import RecurrentCell
from keras_rnn._checks import reject_option
from keras_rnn._fused import FusedRNN

register = keras.saving.register_keras_serializable(package="keras_rnn")


@register
class SimpleRNNCell(RecurrentCell):
    """Elman RNN cell, optionally layer-normalized.

    h_t = act(LN_x(W x_t) + LN_h(U h_{t-1}) + b)

    (without `layer_norm` the `LN`s are the identity, which is
    `keras.layers.SimpleRNNCell`).

    Args:
        units: positive int, size of `h`.
        activation: non-linearity `act`. Default `"tanh"`.
        use_bias: whether to add `b`.
        kernel_initializer, recurrent_initializer, bias_initializer:
            initializers of `W`, `U`, `b`.
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        kernel_constraint, recurrent_constraint, bias_constraint:
            as in Keras.
        dropout: variational dropout rate on `x_t`, in [0, 1).
        recurrent_dropout: variational dropout rate on `h_{t-1}` in the
            recurrent matmul, in [0, 1).
        seed: seed of the dropout and zoneout draws.
        zoneout: probability that a unit of `h` keeps its previous value.
        layer_norm: normalize `W x` and `U h` (see the module docstring).
        norm_epsilon: epsilon of the layer normalizations.
        norm_gamma_initializer, norm_beta_initializer: their gain and bias
            initializers.
        peephole: only False; True raises a `ValueError` (no cell state).
        **kwargs: `Layer` arguments (`name`, `dtype`, `trainable`); the
            deprecated `implementation` (Keras 2's layout of the gate
            matmuls) is accepted and ignored, as Keras 3's cells do.

    Call arguments:
        inputs: `(batch, input_dim)`.
        states: `[h_{t-1}]`, `(batch, units)`.
        training: Python bool.

    Returns:
        `(h_t, [h_t])`.

    Example:

    >>> cell = SimpleRNNCell(8, layer_norm=True)
    >>> keras.layers.RNN(cell)(np.zeros((2, 5, 3))).shape
    (2, 8)
    """

    num_gates = 1

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
        peephole=False,
        **kwargs,
    ):
        reject_option(
            "SimpleRNNCell", "peephole", peephole,
            "peepholes connect an LSTM's cell state to its gates.",
        )
        super().__init__(
            units,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            zoneout=zoneout,
            layer_norm=layer_norm,
            norm_epsilon=norm_epsilon,
            norm_gamma_initializer=norm_gamma_initializer,
            norm_beta_initializer=norm_beta_initializer,
            seed=seed,
            **kwargs,
        )
        self.state_size = self.units

    def step(self, zx, states, noise=None):
        noise = NO_NOISE if noise is None else noise
        h_tm1 = states[0]
        h_in = h_tm1 if noise.recurrent_mask is None else h_tm1 * noise.recurrent_mask
        zh = self.recurrent_matmul(h_in)
        if self.layer_norm:
            zh = self.recurrent_norm(zh)
        h = self.activation(zx + zh)
        (h,) = self.apply_zoneout([h], [h_tm1], noise.zoneout)
        return h, [h]


@register
class SimpleRNN(FusedRNN, keras.layers.SimpleRNN):
    """Fully-connected RNN over `SimpleRNNCell`, optionally
    layer-normalized, with variational dropout and zoneout.

        h_t = act(LN_x(W x_t) + LN_h(U h_{t-1}) + b)

    A `keras.layers.SimpleRNN` (a subclass) that takes all of its arguments
    with the same defaults; with the extra options off it computes the
    same function on the same weights. It runs the fused loop of
    `keras_rnn._fused.FusedRNN` (Keras has no cuDNN kernel for it).

    Args:
        units: positive int, size of `h`.
        activation: non-linearity `act`. Default `"tanh"`.
        use_bias: whether to add `b`. Default True.
        kernel_initializer: initializer of `W`. Default `"glorot_uniform"`.
        recurrent_initializer: initializer of `U`. Default `"orthogonal"`.
        bias_initializer: initializer of `b`. Default `"zeros"`.
        kernel_regularizer: regularizer of `W`. Default None.
        recurrent_regularizer: regularizer of `U`. Default None.
        bias_regularizer: regularizer of `b`. Default None.
        activity_regularizer: regularizer of the layer's output. Default
            None.
        kernel_constraint: constraint on `W`. Default None.
        recurrent_constraint: constraint on `U`. Default None.
        bias_constraint: constraint on `b`. Default None.
        dropout: variational dropout rate on `x_t` (one mask per sequence),
            in [0, 1). Default 0.
        recurrent_dropout: variational dropout rate on `h_{t-1}` in `U h`
            (one mask per sequence), in [0, 1). Default 0.
        seed: seed of the dropout and zoneout draws. Default None.
        zoneout: probability that a unit of `h` keeps its previous value
            (Krueger et al. 2017). Default 0.
        layer_norm: layer-normalize `W x` and `U h` separately (Ba et al.
            2016). Default False.
        norm_epsilon: epsilon of the layer normalizations. Default 1e-3.
        norm_gamma_initializer: initializer of their gains. Default
            `"ones"`.
        norm_beta_initializer: initializer of their biases. Default
            `"zeros"`.
        peephole: only False (peepholes read an LSTM's cell state); taken so
            that the same options fit every layer.
        return_sequences: return the output of every step, not only the
            last. Default False.
        return_state: also return the final state. Default False.
        go_backwards: run over the sequence backwards (and return the
            reversed sequence). Default False.
        stateful: carry the final state of each sample of a batch over to
            the next batch. Default False.
        unroll: unroll the time loop (short sequences only). Default False.
        use_cudnn: "auto", True or False, as Keras's layers take it; there
            is no cuDNN kernel for this layer, so True raises at call time.
        **kwargs: other `keras.layers.RNN` / `Layer` arguments (`name`,
            `dtype`, `trainable`, `zero_output_for_mask`); the deprecated
            `implementation` is accepted and ignored, as in Keras.

    Example:

    >>> layer = SimpleRNN(8, layer_norm=True, return_sequences=True)
    >>> layer(np.zeros((2, 5, 3))).shape
    (2, 5, 8)
    """

    cell_class = SimpleRNNCell

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
        peephole=False,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_cudnn="auto",
        **kwargs,
    ):
        cell = self.cell_class(
            units,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            zoneout=zoneout,
            layer_norm=layer_norm,
            norm_epsilon=norm_epsilon,
            norm_gamma_initializer=norm_gamma_initializer,
            norm_beta_initializer=norm_beta_initializer,
            peephole=peephole,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="simple_rnn_cell",
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            use_cudnn=use_cudnn,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )
