"""The LSTM: `LSTMCell` (with optional peepholes) and the `LSTM` layer over it.

As `keras/src/layers/rnn/lstm.py` holds Keras's; the options the
keras_rnn cells share (layer norm, variational dropout, zoneout) are
described in `keras_rnn.cells`.
"""

import keras
from keras import ops

from keras_rnn import _keras_private
from keras_rnn._cell import NO_NOISE
from keras_rnn._cell import RecurrentCell
from keras_rnn._checks import check_rate
from keras_rnn._checks import get_activation
from keras_rnn._checks import get_initializer
from keras_rnn._fused import FusedRNN

register = keras.saving.register_keras_serializable(package="keras_rnn")


@register
class LSTMCell(RecurrentCell):
    """LSTM cell (Hochreiter & Schmidhuber 1997), with optional layer norm,
    peepholes, variational dropout and zoneout.

        z = LN_x(W x_t) + LN_h(U h_{t-1}) + b        # gate blocks i, f, g, o
        i = σ(z_i + p_i ⊙ c_{t-1})    f = σ(z_f + p_f ⊙ c_{t-1})
        g = tanh(z_g)
        c_t = f ⊙ c_{t-1} + i ⊙ g
        o = σ(z_o + p_o ⊙ c_t)
        h_t = o ⊙ tanh(LN_c(c_t))

    `LN_*` are the identity without `layer_norm` (Ba et al. 2016, eq. 20-22:
    `c_t` itself stays unnormalized in the state); the `p ⊙ c` peephole terms
    (Gers & Schmidhuber 2000, diagonal weights `input_gate_peephole_weights`,
    `forget_gate_peephole_weights`, `output_gate_peephole_weights`) are absent
    without `peephole`. σ is `recurrent_activation`, tanh is `activation`.
    Zoneout then mixes `h_t, c_t` with `h_{t-1}, c_{t-1}` (rates `zoneout`,
    `zoneout_cell`).

    Args:
        units: positive int, size of `h` and `c`.
        activation, recurrent_activation: default `"tanh"`, `"sigmoid"`.
        use_bias: whether to add `b`.
        kernel_initializer, recurrent_initializer, bias_initializer: as Keras.
        unit_forget_bias: initialize the forget-gate bias to 1 (Jozefowicz
            et al. 2015), as Keras.
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        kernel_constraint, recurrent_constraint, bias_constraint: as Keras.
        dropout: variational dropout rate on `x_t` (one mask, all gates).
        recurrent_dropout: variational dropout rate on `h_{t-1}` in
            `U h_{t-1}` (one mask, all gates).
        seed: seed of the dropout and zoneout draws.
        zoneout: zoneout probability of `h`.
        zoneout_cell: zoneout probability of `c`.
        layer_norm: layer-normalize `W x`, `U h` and `c_t` (output path).
        norm_epsilon, norm_gamma_initializer, norm_beta_initializer: of the
            three layer normalizations.
        peephole: add the diagonal peephole connections.
        peephole_initializer: initializer of the peephole weights.
        **kwargs: `Layer` arguments (`name`, `dtype`, `trainable`); the
            deprecated `implementation` (Keras 2's layout of the gate
            matmuls) is accepted and ignored, as Keras 3's cells do.

    Call arguments:
        inputs: `(batch, input_dim)`.
        states: `[h_{t-1}, c_{t-1}]`, each `(batch, units)`.
        training: Python bool.

    Returns:
        `(h_t, [h_t, c_t])`.

    Example:

    >>> cell = LSTMCell(16, layer_norm=True, peephole=True)
    >>> keras.layers.RNN(cell)(np.zeros((4, 7, 3))).shape
    (4, 16)
    """

    num_gates = 4
    # TF Addons' `LayerNormLSTMCell` (keras_rnn.tfa.rnn) carries LN_c(c_t)
    # in the state; Ba et al. (here) carry c_t.
    carries_normalized_state = False

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
        **kwargs,
    ):
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
        self.unit_forget_bias = bool(unit_forget_bias)
        self.zoneout_cell = check_rate("zoneout_cell", zoneout_cell)
        self.peephole = bool(peephole)
        self.peephole_initializer = get_initializer(
            "peephole_initializer", peephole_initializer
        )
        self.state_size = [self.units, self.units]
        if self.layer_norm:
            self.state_norm = self._make_norm("state_norm")

    @property
    def zoneout_rates(self):
        return [self.zoneout, self.zoneout_cell]

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        units, bias_initializer = self.units, self.bias_initializer

        def initializer(_, *args, **kwargs):
            return ops.concatenate(
                [
                    bias_initializer((units,), *args, **kwargs),
                    keras.initializers.get("ones")((units,), *args, **kwargs),
                    bias_initializer((units * 2,), *args, **kwargs),
                ]
            )

        return initializer

    def _build_extra_weights(self):
        if self.peephole:
            for gate in ("input", "forget", "output"):
                weight = self.add_weight(
                    shape=(self.units,),
                    name=f"{gate}_gate_peephole_weights",
                    initializer=self.peephole_initializer,
                )
                setattr(self, f"{gate}_gate_peephole_weights", weight)
        if self.layer_norm:
            self.state_norm.build((None, self.units))

    def step(self, zx, states, noise=None):
        noise = NO_NOISE if noise is None else noise
        h_tm1, c_tm1 = states[0], states[1]
        h_in = h_tm1 if noise.recurrent_mask is None else h_tm1 * noise.recurrent_mask
        zh = self.recurrent_matmul(h_in)
        if self.layer_norm:
            zh = self.recurrent_norm(zh)
        i, f, g, o = ops.split(zx + zh, 4, axis=-1)
        if self.peephole:
            i = i + self.input_gate_peephole_weights * c_tm1
            f = f + self.forget_gate_peephole_weights * c_tm1
        i = self.recurrent_activation(i)
        f = self.recurrent_activation(f)
        g = self.activation(g)
        c = f * c_tm1 + i * g
        if self.peephole:
            o = o + self.output_gate_peephole_weights * c
        o = self.recurrent_activation(o)
        c_out = self.state_norm(c) if self.layer_norm else c
        if self.carries_normalized_state:
            c = c_out
        h = o * self.activation(c_out)
        h, c = self.apply_zoneout([h, c], [h_tm1, c_tm1], noise.zoneout)
        return h, [h, c]

    def get_config(self):
        config = {
            "recurrent_activation": keras.activations.serialize(
                self.recurrent_activation
            ),
            "unit_forget_bias": self.unit_forget_bias,
            "zoneout_cell": self.zoneout_cell,
            "peephole": self.peephole,
            "peephole_initializer": keras.initializers.serialize(
                self.peephole_initializer
            ),
        }
        return {**super().get_config(), **config}


@register
class LSTM(FusedRNN, keras.layers.LSTM):
    """LSTM layer over `LSTMCell` (layer norm, peepholes, variational
    dropout, zoneout); see `LSTMCell` for the equations.

    A `keras.layers.LSTM` (a subclass) that takes all of its arguments with
    the same defaults; with the extra options off it computes the same
    function on the same weights, takes Keras's cuDNN kernel on a GPU, and
    inside `keras.layers.Bidirectional` Keras's fused bidirectional kernel.
    Otherwise it runs the fused loop of `keras_rnn._fused.FusedRNN`.

    Args:
        units: positive int, size of `h` and `c`.
        activation: the candidate's and the output's non-linearity. Default
            `"tanh"`.
        recurrent_activation: the gates' non-linearity. Default
            `"sigmoid"`.
        use_bias: whether to add `b`. Default True.
        kernel_initializer: initializer of `W`. Default `"glorot_uniform"`.
        recurrent_initializer: initializer of `U`. Default `"orthogonal"`.
        bias_initializer: initializer of `b`. Default `"zeros"`.
        unit_forget_bias: initialize the forget-gate bias to 1 (Jozefowicz
            et al. 2015), as Keras. Default True.
        kernel_regularizer: regularizer of `W`. Default None.
        recurrent_regularizer: regularizer of `U`. Default None.
        bias_regularizer: regularizer of `b`. Default None.
        activity_regularizer: regularizer of the layer's output. Default
            None.
        kernel_constraint: constraint on `W`. Default None.
        recurrent_constraint: constraint on `U`. Default None.
        bias_constraint: constraint on `b`. Default None.
        dropout: variational dropout rate on `x_t` (one mask per sequence,
            shared by all gates), in [0, 1). Default 0.
        recurrent_dropout: variational dropout rate on `h_{t-1}` in `U h`
            (one mask per sequence, all gates), in [0, 1). Default 0.
        seed: seed of the dropout and zoneout draws. Default None.
        zoneout: probability that a unit of `h` keeps its previous value
            (Krueger et al. 2017). Default 0.
        zoneout_cell: the same for `c`. Default 0.
        layer_norm: layer-normalize `W x`, `U h` and, on its way to `h_t`,
            `c_t` (Ba et al. 2016). Default False.
        norm_epsilon: epsilon of the layer normalizations. Default 1e-3.
        norm_gamma_initializer: initializer of their gains. Default
            `"ones"`.
        norm_beta_initializer: initializer of their biases. Default
            `"zeros"`.
        peephole: add the diagonal peephole connections (Gers &
            Schmidhuber 2000). Default False.
        peephole_initializer: initializer of the peephole weights. Default
            `"glorot_uniform"`.
        return_sequences: return the output of every step, not only the
            last. Default False.
        return_state: also return the final states `h`, `c`. Default False.
        go_backwards: run over the sequence backwards (and return the
            reversed sequence). Default False.
        stateful: carry the final states of each sample of a batch over to
            the next batch. Default False.
        unroll: unroll the time loop (short sequences only). Default False.
        use_cudnn: "auto" (Keras's cuDNN kernel where the configuration and
            device allow: no layer norm, peepholes, zoneout or recurrent
            dropout), True (require it) or False. Default "auto".
        **kwargs: other `keras.layers.RNN` / `Layer` arguments (`name`,
            `dtype`, `trainable`, `zero_output_for_mask`); the deprecated
            `implementation` is accepted and ignored, as in Keras.

    Example:

    >>> layer = LSTM(16, layer_norm=True, recurrent_dropout=0.25)
    >>> layer(np.zeros((4, 7, 3))).shape
    (4, 16)
    """

    cell_class = LSTMCell

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
        cell = self.cell_class(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
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
            zoneout_cell=zoneout_cell,
            layer_norm=layer_norm,
            norm_epsilon=norm_epsilon,
            norm_gamma_initializer=norm_gamma_initializer,
            norm_beta_initializer=norm_beta_initializer,
            peephole=peephole,
            peephole_initializer=peephole_initializer,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="lstm_cell",
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
    def zoneout_cell(self):
        """The cell's `zoneout_cell` argument."""
        return self.cell.zoneout_cell

    @property
    def peephole_initializer(self):
        """The cell's `peephole_initializer` argument."""
        return self.cell.peephole_initializer

    @property
    def _has_cudnn_kernel(self):
        cell = self.cell
        return not (
            cell.layer_norm or cell.peephole or cell.zoneout or cell.zoneout_cell
        )

    def _backend_kernel(self, sequences, initial_state, mask):
        cell = self.cell
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
