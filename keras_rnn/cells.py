"""Recurrent cells: SimpleRNN, LSTM (optionally with peepholes) and GRU.

Each cell is a `keras.layers.Layer` usable in `keras.layers.RNN`,
`keras.layers.StackedRNNCells` and, through the sequence layers in
`keras_rnn.layers`, `keras.layers.Bidirectional`. All three take:

- `layer_norm=True`: layer normalization (Ba, Kiros & Hinton 2016,
  arXiv:1607.06450) of the input projection `W x` and of the recurrent
  projection `U h` separately, each over all its gate blocks together, with
  its own gain and bias (`norm_epsilon`, `norm_gamma_initializer`,
  `norm_beta_initializer`); the LSTM also normalizes `c_t` before the output
  non-linearity.
- `dropout` / `recurrent_dropout`: variational dropout (Gal & Ghahramani
  2016, arXiv:1512.05287): one mask on `x` and one on `h_{t-1}` per
  sequence, shared by all gates and the same at every time step.
- `zoneout` (and `zoneout_cell` on the LSTM): Krueger et al. 2017,
  arXiv:1606.01305.

Weight names, shapes and gate order are those of `keras.layers.LSTMCell`
(`i, f, c, o`), `GRUCell` (`z, r, h`) and `SimpleRNNCell`, so with the extra
options off the weights load into Keras's layers and back.
"""

import keras
from keras import ops

from keras_rnn._cell import NO_NOISE
from keras_rnn._cell import RecurrentCell
from keras_rnn._checks import check_rate
from keras_rnn._checks import get_activation
from keras_rnn._checks import get_initializer
from keras_rnn._checks import reject_option

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
        zh = ops.matmul(h_in, self.recurrent_kernel)
        if self.layer_norm:
            zh = self.recurrent_norm(zh)
        h = self.activation(zx + zh)
        (h,) = self.apply_zoneout([h], [h_tm1], noise.zoneout)
        return h, [h]


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
    # TF Addons' `LayerNormLSTMCell` (keras_rnn.migration) carries LN_c(c_t)
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
        zh = ops.matmul(h_in, self.recurrent_kernel)
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
            zh = ops.matmul(h_in, self.recurrent_kernel)
            if self.layer_norm:
                zh = self.recurrent_norm(zh)
            if self.use_bias:
                zh = zh + self.bias[1]
            h_z, h_r, h_h = ops.split(zh, 3, axis=-1)
            z = self.recurrent_activation(x_z + h_z)
            r = self.recurrent_activation(x_r + h_r)
            candidate = self.activation(x_h + r * h_h)
        else:
            zh = ops.matmul(h_in, self.recurrent_kernel[:, : 2 * units])
            if self.layer_norm:
                zh = self.recurrent_norm(zh)
            h_z, h_r = ops.split(zh, 2, axis=-1)
            z = self.recurrent_activation(x_z + h_z)
            r = self.recurrent_activation(x_r + h_r)
            h_h = ops.matmul(r * h_in, self.recurrent_kernel[:, 2 * units :])
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
class LayerNormGRUCell(GRUCell):
    """A `GRUCell` with `layer_norm=True` (TF Addons never had one).

    Args:
        units: positive int.
        **kwargs: any other `keras_rnn.GRUCell` argument; `layer_norm`, if
            given (a saved config carries it), must be `True`.

    Example:

    >>> LayerNormGRUCell(8).layer_norm
    True
    """

    def __init__(self, units, **kwargs):
        layer_norm = kwargs.pop("layer_norm", True)
        if layer_norm != True:  # noqa: E712 (1, as in an old config, is fine)
            raise ValueError(
                "LayerNormGRUCell: `layer_norm` is True; got "
                f"{layer_norm!r}. Use `keras_rnn.GRUCell` for other values."
            )
        super().__init__(units, layer_norm=True, **kwargs)
