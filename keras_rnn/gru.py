"""The GRU: `GRUCell` (both `reset_after` conventions) and the `GRU` layer over it.

As `keras/src/layers/rnn/gru.py` holds Keras's; the options the
keras_rnn cells share (layer norm, variational dropout, zoneout) are
described in `keras_rnn.cells`.
"""

import keras
from keras import ops

from keras_rnn import _keras_private
from keras_rnn._cell import NO_NOISE
from keras_rnn._cell import RecurrentCell
from keras_rnn._checks import get_activation
from keras_rnn._checks import reject_option
from keras_rnn._fused import FusedRNN

register = keras.saving.register_keras_serializable(package="keras_rnn")


@register
class GRUCell(RecurrentCell):
    """GRU cell (Cho et al. 2014), optionally layer-normalized — the
    layer-norm GRU TF Addons never had.

    With `reset_after=True` (Keras's default, cuDNN's convention):

        x_z, x_r, x_h = LN_x(W x_t) + b_in
        h_z, h_r, h_h = LN_h(U h_{t-1}) + b_rec
        z = σ(x_z + h_z)    r = σ(x_r + h_r)
        h̃ = tanh(x_h + r ⊙ h_h)
        h_t = z ⊙ h_{t-1} + (1 - z) ⊙ h̃

    With `reset_after=False` (Cho et al.'s original), `b` is one vector, the
    candidate is `h̃ = tanh(x_h + LN_c(U_h (r ⊙ h_{t-1})))`, and `LN_h`
    normalizes only the `z, r` blocks `U_{zr} h_{t-1}` (the candidate's
    recurrent term cannot be computed before `r`, so it gets its own
    normalization `candidate_norm`). `LN_*` are the identity without
    `layer_norm`.

    Args:
        units: positive int, size of `h`.
        activation, recurrent_activation: default `"tanh"`, `"sigmoid"`.
        use_bias: whether to add the biases.
        kernel_initializer, recurrent_initializer, bias_initializer,
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        kernel_constraint, recurrent_constraint, bias_constraint: as Keras.
        dropout: variational dropout rate on `x_t` (one mask, all gates).
        recurrent_dropout: variational dropout rate on `h_{t-1}` where it is
            multiplied by `U` (one mask, all gates).
        reset_after: apply the reset gate after the recurrent matmul.
        seed: seed of the dropout and zoneout draws.
        zoneout: zoneout probability of `h`.
        layer_norm, norm_epsilon, norm_gamma_initializer,
        norm_beta_initializer: layer normalization (see above).
        peephole: only False; True raises a `ValueError` (no cell state).
        **kwargs: `Layer` arguments (`name`, `dtype`, `trainable`); the
            deprecated `implementation` (Keras 2's layout of the gate
            matmuls) is accepted and ignored, as Keras 3's cells do.

    Call arguments:
        inputs: `(batch, input_dim)`.
        states: `h_{t-1}` or `[h_{t-1}]`, `(batch, units)`.
        training: Python bool.

    Returns:
        `(h_t, h_t)` (or `(h_t, [h_t])` when `states` is a list).

    Example:

    >>> cell = GRUCell(8, layer_norm=True)
    >>> keras.layers.RNN(cell)(np.zeros((2, 5, 3))).shape
    (2, 8)
    """

    num_gates = 3

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
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        reset_after=True,
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
            "GRUCell", "peephole", peephole,
            "a GRU has no cell state for peepholes to read; use LSTMCell.",
        )
        self.reset_after = bool(reset_after)
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
        self.recurrent_activation = get_activation(
            "recurrent_activation", recurrent_activation
        )
        self.state_size = self.units
        if self.layer_norm and not self.reset_after:
            self.candidate_norm = self._make_norm("candidate_norm")

    def _bias_shape(self):
        if self.reset_after:
            return (2, 3 * self.units)  # (input bias, recurrent bias)
        return (3 * self.units,)

    def _input_bias(self):
        return self.bias[0] if self.reset_after else self.bias

    def _recurrent_norm_width(self):
        return (3 if self.reset_after else 2) * self.units

    def _build_extra_weights(self):
        if self.layer_norm and not self.reset_after:
            self.candidate_norm.build((None, self.units))

    def step(self, zx, states, noise=None):
        noise = NO_NOISE if noise is None else noise
        h_tm1 = states[0]
        h_in = h_tm1 if noise.recurrent_mask is None else h_tm1 * noise.recurrent_mask
        x_z, x_r, x_h = ops.split(zx, 3, axis=-1)
        units = self.units
        if self.reset_after:
            zh = self.recurrent_matmul(h_in)
            if self.layer_norm:
                zh = self.recurrent_norm(zh)
            if self.use_bias:
                zh = zh + self.bias[1]
            h_z, h_r, h_h = ops.split(zh, 3, axis=-1)
            z = self.recurrent_activation(x_z + h_z)
            r = self.recurrent_activation(x_r + h_r)
            candidate = self.activation(x_h + r * h_h)
        else:
            zh = self.recurrent_matmul(h_in, 0, 2 * units)
            if self.layer_norm:
                zh = self.recurrent_norm(zh)
            h_z, h_r = ops.split(zh, 2, axis=-1)
            z = self.recurrent_activation(x_z + h_z)
            r = self.recurrent_activation(x_r + h_r)
            h_h = self.recurrent_matmul(r * h_in, 2 * units)
            if self.layer_norm:
                h_h = self.candidate_norm(h_h)
            candidate = self.activation(x_h + h_h)
        h = z * h_tm1 + (1.0 - z) * candidate
        (h,) = self.apply_zoneout([h], [h_tm1], noise.zoneout)
        return h, [h]

    def get_config(self):
        config = {
            "recurrent_activation": keras.activations.serialize(
                self.recurrent_activation
            ),
            "reset_after": self.reset_after,
        }
        return {**super().get_config(), **config}


@register
class GRU(FusedRNN, keras.layers.GRU):
    """GRU layer over `GRUCell` (layer norm, variational dropout, zoneout;
    both `reset_after` conventions); see `GRUCell` for the equations.

    A `keras.layers.GRU` (a subclass) that takes all of its arguments with
    the same defaults; with the extra options off it computes the same
    function on the same weights, takes Keras's cuDNN kernel on a GPU, and
    inside `keras.layers.Bidirectional` Keras's fused bidirectional kernel.
    Otherwise it runs the fused loop of `keras_rnn._fused.FusedRNN`.

    Args:
        units: positive int, size of `h`.
        activation: the candidate's non-linearity. Default `"tanh"`.
        recurrent_activation: the gates' non-linearity. Default
            `"sigmoid"`.
        use_bias: whether to add the biases. Default True.
        kernel_initializer: initializer of `W`. Default `"glorot_uniform"`.
        recurrent_initializer: initializer of `U`. Default `"orthogonal"`.
        bias_initializer: initializer of the biases. Default `"zeros"`.
        kernel_regularizer: regularizer of `W`. Default None.
        recurrent_regularizer: regularizer of `U`. Default None.
        bias_regularizer: regularizer of the biases. Default None.
        activity_regularizer: regularizer of the layer's output. Default
            None.
        kernel_constraint: constraint on `W`. Default None.
        recurrent_constraint: constraint on `U`. Default None.
        bias_constraint: constraint on the biases. Default None.
        dropout: variational dropout rate on `x_t` (one mask per sequence,
            shared by all gates), in [0, 1). Default 0.
        recurrent_dropout: variational dropout rate on `h_{t-1}` where it is
            multiplied by `U` (one mask per sequence, all gates), in
            [0, 1). Default 0.
        seed: seed of the dropout and zoneout draws. Default None.
        zoneout: probability that a unit of `h` keeps its previous value
            (Krueger et al. 2017). Default 0.
        layer_norm: layer-normalize `W x` and `U h` (Ba et al. 2016; see
            `GRUCell` for `reset_after=False`). Default False.
        norm_epsilon: epsilon of the layer normalizations. Default 1e-3.
        norm_gamma_initializer: initializer of their gains. Default
            `"ones"`.
        norm_beta_initializer: initializer of their biases. Default
            `"zeros"`.
        peephole: only False (a GRU has no cell state); taken so that the
            same options fit every layer.
        return_sequences: return the output of every step, not only the
            last. Default False.
        return_state: also return the final state. Default False.
        go_backwards: run over the sequence backwards (and return the
            reversed sequence). Default False.
        stateful: carry the final state of each sample of a batch over to
            the next batch. Default False.
        unroll: unroll the time loop (short sequences only). Default False.
        reset_after: apply the reset gate after the recurrent matmul
            (Keras's default and cuDNN's convention) or before it (Cho et
            al. 2014). Default True.
        use_cudnn: "auto" (Keras's cuDNN kernel where the configuration and
            device allow: `reset_after=True`, no layer norm, zoneout or
            recurrent dropout), True (require it) or False. Default "auto".
        **kwargs: other `keras.layers.RNN` / `Layer` arguments (`name`,
            `dtype`, `trainable`, `zero_output_for_mask`); the deprecated
            `implementation` is accepted and ignored, as in Keras.

    Example:

    >>> layer = GRU(8, layer_norm=True, return_state=True)
    >>> output, state = layer(np.zeros((2, 5, 3)))
    >>> output.shape, state.shape
    ((2, 8), (2, 8))
    """

    cell_class = GRUCell

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
        peephole=False,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        reset_after=True,
        use_cudnn="auto",
        **kwargs,
    ):
        cell = self.cell_class(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
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
            reset_after=reset_after,
            seed=seed,
            zoneout=zoneout,
            layer_norm=layer_norm,
            norm_epsilon=norm_epsilon,
            norm_gamma_initializer=norm_gamma_initializer,
            norm_beta_initializer=norm_beta_initializer,
            peephole=peephole,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="gru_cell",
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

    @property
    def _has_cudnn_kernel(self):
        # (`reset_after=False` has none either; Keras's `backend.gru` and
        # `Bidirectional` check it themselves.)
        return not (self.cell.layer_norm or self.cell.zoneout)

    def _backend_kernel(self, sequences, initial_state, mask):
        cell = self.cell
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
