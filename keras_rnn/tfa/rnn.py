"""TensorFlow Addons' cells, exactly: `tfa.rnn.LayerNormLSTMCell`,
`LayerNormSimpleRNNCell` and `PeepholeLSTMCell` (exported as
`keras_rnn.rnn.*` and at the top level).

Each computes TF Addons' equations, takes TF Addons' arguments in TF Addons'
positional order, and creates TF Addons' weights (same names, shapes and
order), so `cell.set_weights(tfa_cell.get_weights())` loads a TF Addons
checkpoint. Each is a subclass of the general `keras_rnn` cell, so it works
everywhere that one does (`keras.layers.RNN`, `StackedRNNCells`,
`AttentionWrapper`); the keras_rnn-only options (`seed`, `zoneout`, ...)
are keyword-only extras. (`keras_rnn.LayerNormGRUCell`, which TF Addons
never had, is a core cell, in `keras_rnn.cells`.)

Where TF Addons' equations differ from the Ba et al. variants of the general
cells (`LSTMCell(layer_norm=True)`, `SimpleRNNCell(layer_norm=True)`), these
classes follow TF Addons; `docs/MIGRATION.md` tables the differences.
Tests: `tests/keras_rnn/tfa/test_rnn.py`.
"""

import keras

from keras_rnn import cells
from keras_rnn._cell import NO_NOISE
from keras_rnn._checks import get_initializer

register = keras.saving.register_keras_serializable(package="keras_rnn")


def _forced(kwargs, name, value, cell_name):
    """Sets `kwargs[name] = value`, refusing a conflicting user value (a
    saved config carries the forced value, which is accepted)."""
    given = kwargs.pop(name, value)
    if given != value:
        raise ValueError(
            f"{cell_name}: `{name}` is {value!r} in TF Addons' cell; got "
            f"{given!r}. Use the general keras_rnn cell for other values."
        )
    kwargs[name] = value


@register
class LayerNormLSTMCell(cells.LSTMCell):
    """`tfa.rnn.LayerNormLSTMCell`: TF Addons' layer-normalized LSTM.

    TF Addons' equations (gate blocks `i, f, g, o` as Keras):

        z   = LN_x(W x_t) + LN_h(U h_{t-1}) + b
        c_t = LN_c(σ(z_f) ⊙ c_{t-1} + σ(z_i) ⊙ tanh(z_g))
        h_t = σ(z_o) ⊙ tanh(c_t)
        return h_t, [h_t, c_t]

    The state carries the *normalized* `c_t` (TF Addons'
    `c = self.state_norm(c); h = o * self.activation(c); return h, [h, c]`);
    `keras_rnn.LSTMCell(layer_norm=True)` keeps Ba et al.'s unnormalized
    `c_t` in the state instead. Dropout: one input mask and one recurrent
    mask, shared by the four gates, the same at every step (TF Addons uses
    mask 0 of Keras's four).

    Weights, in order (TF Addons' names and shapes): `kernel`
    `(input_dim, 4 units)`, `recurrent_kernel` `(units, 4 units)`, `bias`
    `(4 units,)`, then `gamma`, `beta` `(4 units,)` of `kernel_norm` and of
    `recurrent_norm`, and `(units,)` of `state_norm`.

    Args:
        units, activation, recurrent_activation, use_bias,
        kernel_initializer, recurrent_initializer, bias_initializer,
        unit_forget_bias, kernel_regularizer, recurrent_regularizer,
        bias_regularizer, kernel_constraint, recurrent_constraint,
        bias_constraint, dropout, recurrent_dropout, norm_gamma_initializer,
        norm_beta_initializer, norm_epsilon: TF Addons' arguments, in TF
            Addons' order, with its defaults.
        **kwargs: keras_rnn extras (`seed`, `zoneout`, `zoneout_cell`,
            `peephole`, ...) and layer arguments.

    Example:

    >>> cell = LayerNormLSTMCell(8, "tanh", "sigmoid")
    >>> keras.layers.RNN(cell)(np.zeros((2, 5, 3))).shape
    (2, 8)
    """

    carries_normalized_state = True

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
        norm_gamma_initializer="ones",
        norm_beta_initializer="zeros",
        norm_epsilon=1e-3,
        **kwargs,
    ):
        _forced(kwargs, "layer_norm", True, "LayerNormLSTMCell")
        super().__init__(
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
            norm_gamma_initializer=norm_gamma_initializer,
            norm_beta_initializer=norm_beta_initializer,
            norm_epsilon=norm_epsilon,
            **kwargs,
        )


@register
class LayerNormSimpleRNNCell(cells.SimpleRNNCell):
    """`tfa.rnn.LayerNormSimpleRNNCell`: TF Addons' layer-normalized Elman
    cell.

    TF Addons' equation: one scale-only layer normalization of the summed
    pre-activation, the bias added after it,

        h_t = act(LN(W x_t + U h_{t-1}) + b),  LN(z) = γ (z - μ) / sqrt(σ² + ε)

    (`SimpleRNNCell(layer_norm=True)` instead normalizes `W x` and `U h`
    separately, each with a gain and a bias, as the other keras_rnn cells).

    Weights, in order (TF Addons' names and shapes): `kernel`
    `(input_dim, units)`, `recurrent_kernel` `(units, units)`, `bias`
    `(units,)`, `layernorm/gamma` `(units,)` — four, no beta.

    Args:
        units, activation, use_bias, layernorm_epsilon, kernel_initializer,
        recurrent_initializer, bias_initializer, gamma_initializer,
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        gamma_regularizer, kernel_constraint, recurrent_constraint,
        bias_constraint, gamma_constraint, dropout, recurrent_dropout:
            TF Addons' arguments, in TF Addons' order, with its defaults.
        **kwargs: keras_rnn extras (`seed`, `zoneout`) and layer arguments.

    Example:

    >>> cell = LayerNormSimpleRNNCell(4, "tanh", True, 1e-5)
    >>> rnn = keras.layers.RNN(cell)
    >>> rnn(np.zeros((2, 5, 3))).shape, len(rnn.weights)
    ((2, 4), 4)
    """

    def __init__(
        self,
        units,
        activation="tanh",
        use_bias=True,
        layernorm_epsilon=1e-5,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        gamma_initializer="ones",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        gamma_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        gamma_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        **kwargs,
    ):
        for name in ("norm_epsilon", "norm_gamma_initializer",
                     "norm_beta_initializer", "beta_initializer"):
            if name in kwargs:
                raise ValueError(
                    f"LayerNormSimpleRNNCell takes TF Addons' arguments: "
                    f"`{name}` is not one (use `layernorm_epsilon`, "
                    "`gamma_initializer`; the normalization has no beta)."
                )
        _forced(kwargs, "layer_norm", False, "LayerNormSimpleRNNCell")
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
            **kwargs,
        )
        self.layernorm_epsilon = float(layernorm_epsilon)
        self.gamma_initializer = get_initializer(
            "gamma_initializer", gamma_initializer
        )
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
        self.gamma_constraint = keras.constraints.get(gamma_constraint)
        self.layernorm = keras.layers.LayerNormalization(
            axis=-1,
            epsilon=self.layernorm_epsilon,
            center=False,
            scale=True,
            gamma_initializer=self.gamma_initializer,
            gamma_regularizer=self.gamma_regularizer,
            gamma_constraint=self.gamma_constraint,
            dtype=self.dtype_policy,
            name="layernorm",
        )

    def build(self, input_shape):
        super().build(input_shape)
        self.layernorm.build((None, self.units))

    def project_inputs(self, inputs):
        """`W x` only: TF Addons adds the bias after the normalization."""
        return self.input_matmul(inputs)

    def step(self, zx, states, noise=None):
        noise = NO_NOISE if noise is None else noise
        h_tm1 = states[0]
        h_in = h_tm1 if noise.recurrent_mask is None else h_tm1 * noise.recurrent_mask
        z = self.layernorm(zx + self.recurrent_matmul(h_in))
        if self.use_bias:
            z = z + self.bias
        h = self.activation(z)
        (h,) = self.apply_zoneout([h], [h_tm1], noise.zoneout)
        return h, [h]

    def get_config(self):
        config = super().get_config()
        for name in ("layer_norm", "norm_epsilon", "norm_gamma_initializer",
                     "norm_beta_initializer", "peephole"):
            config.pop(name, None)
        config.update(
            layernorm_epsilon=self.layernorm_epsilon,
            gamma_initializer=keras.initializers.serialize(self.gamma_initializer),
            gamma_regularizer=keras.regularizers.serialize(self.gamma_regularizer),
            gamma_constraint=keras.constraints.serialize(self.gamma_constraint),
        )
        return config


@register
class PeepholeLSTMCell(cells.LSTMCell):
    """`tfa.rnn.PeepholeLSTMCell`: Keras's LSTM cell with diagonal peepholes
    (Gers et al. 2002; Sak et al. 2014), TF Addons' equations:

        i = σ(z_i + p_i ⊙ c_{t-1})    f = σ(z_f + p_f ⊙ c_{t-1})
        c_t = f ⊙ c_{t-1} + i ⊙ tanh(z_g)
        o = σ(z_o + p_o ⊙ c_t)        h_t = o ⊙ tanh(c_t)

    with `z = W x_t + U h_{t-1} + b`. Weights, in order: `kernel`,
    `recurrent_kernel`, `bias`, `input_gate_peephole_weights`,
    `forget_gate_peephole_weights`, `output_gate_peephole_weights` (each
    `(units,)`, initialized with `kernel_initializer` as TF Addons does,
    unless `peephole_initializer` is given).

    Args:
        units, ..., recurrent_dropout: `keras.layers.LSTMCell`'s arguments
            in its order (TF Addons' class takes exactly those).
        **kwargs: keras_rnn extras (`seed`, `zoneout`, `layer_norm`,
            `peephole_initializer`, ...) and layer arguments.

    Example:

    >>> cell = PeepholeLSTMCell(8)
    >>> keras.layers.RNN(cell)(np.zeros((2, 5, 3))).shape
    (2, 8)
    """

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
        **kwargs,
    ):
        _forced(kwargs, "peephole", True, "PeepholeLSTMCell")
        kwargs.setdefault("peephole_initializer", kernel_initializer)
        super().__init__(
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
            **kwargs,
        )

