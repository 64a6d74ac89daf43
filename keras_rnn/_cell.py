"""The base of the keras_rnn cells, and their noise protocol.

`RecurrentCell` holds what every cell has (weights, layer normalization,
variational dropout, zoneout, config) and splits one step into the two
halves the fast path needs:

    zx = cell.project_inputs(x)                        # no dependence on h_{t-1}
    h_t, states_t = cell.step(zx, states_{t-1}, noise)  # the recurrent half

The noise protocol: a cell's random noise for one sequence (the input
dropout mask, the recurrent dropout mask, the zoneout keep masks) is drawn
in one place, `RecurrentCell.draw_noise`, before the time loop, and returned
as a `CellNoise`; every time loop steps the cell with it:

    noise = cell.draw_noise(x[:, 0], states[0], training, steps=time)
    zx = cell.project_inputs(noise.mask_inputs(x))
    for t: h_t, states = cell.step(zx[t], states, noise.at_step(zoneout[t]))

(`zoneout = noise.per_step()` is what the loop slices). Its users:
`cell.call` (one step, so `keras.layers.RNN(cell)` works),
`keras_rnn._fused.FusedRNN` (the sequence layers), `AttentionWrapper` and the
`Seq2Seq` training loop. The dropout masks go through Keras's
`DropoutRNNCell` cache, so a mask that `keras.layers.RNN` drew before its loop
is the one used, and the same `seed_generator` draws in the same order as
Keras's cells.

`cell.call` runs both halves for one time step (the readable cell, usable in
`keras.layers.RNN`, `StackedRNNCells`, ...). `FusedRNN` runs `project_inputs`
once over the whole `(time, batch, features)` tensor and only `step` inside
the time loop, with the same weights, so the two paths agree to rounding and
checkpoints swap between them.
"""

import numbers
from typing import NamedTuple

import keras
from keras import ops

from keras_rnn._checks import check_rate
from keras_rnn._checks import check_units
from keras_rnn._checks import get_activation
from keras_rnn._checks import get_initializer
from keras_rnn._keras_private import DropoutRNNCell
from keras_rnn._quantize import QuantizableCell


class CellNoise(NamedTuple):
    """A cell's random noise for one sequence (from `draw_noise`).

    Attributes:
        input_mask: `(batch, input_dim)` variational dropout mask of `x_t`
            (values 0 and `1 / (1 - dropout)`), the same at every step; None
            without input dropout or outside training.
        recurrent_mask: `(batch, units)` variational dropout mask of
            `h_{t-1}` where it enters the recurrent matmul, the same at every
            step; None without recurrent dropout or outside training.
        zoneout: the zoneout factor `k` of `RecurrentCell.apply_zoneout`, or
            None without zoneout. In training, 0/1 keep masks drawn afresh
            for every step: `(time, batch, n_states * units)` for a sequence
            (`per_step()` returns it, for the time loop to slice),
            `(batch, n_states * units)` for one step. At inference the
            constant rates, `(n_states * units,)`.
    """

    input_mask: object = None
    recurrent_mask: object = None
    zoneout: object = None

    def per_step(self):
        """The part a time loop must feed step by step, or None.

        Returns:
            The `(time, batch, n_states * units)` zoneout keep masks drawn for
            a whole sequence in training; None otherwise (then the same
            noise serves every step).
        """
        zoneout = self.zoneout
        if zoneout is None or len(zoneout.shape) != 3:
            return None
        return zoneout

    def at_step(self, zoneout_t):
        """The noise of one step, given the loop's slice of `per_step()`."""
        if self.per_step() is None:
            return self
        return self._replace(zoneout=zoneout_t)

    def mask_inputs(self, inputs):
        """`inputs * input_mask`, for one step `(batch, input_dim)` or a
        batch-major sequence `(batch, time, input_dim)`."""
        if self.input_mask is None:
            return inputs
        mask = self.input_mask
        if len(inputs.shape) == 3:
            mask = ops.expand_dims(mask, 1)  # (batch, 1, input_dim)
        return inputs * ops.cast(mask, inputs.dtype)


NO_NOISE = CellNoise()


class _LayerNorm(keras.layers.LayerNormalization):
    """`LayerNormalization` over the last axis, computed in two passes.

        y = (z - mean(z)) * rsqrt(var(z) + epsilon) * gamma + beta

    Same weights and result as Keras's layer; this form (centre once, reuse
    it for the variance and the output) measured 5-10% faster training steps
    for the layer-norm LSTM/GRU under JAX's XLA on CPU than
    `ops.layer_normalization`, and no slower on TensorFlow
    (`benchmarks/README.md`). Statistics are computed in float32 under mixed
    precision.
    """

    def call(self, inputs):
        z = inputs
        if keras.backend.standardize_dtype(z.dtype) in ("float16", "bfloat16"):
            z = ops.cast(z, "float32")
        mean = ops.mean(z, axis=-1, keepdims=True)
        centered = z - mean
        variance = ops.mean(ops.square(centered), axis=-1, keepdims=True)
        scale = ops.rsqrt(variance + self.epsilon) * ops.cast(self.gamma, z.dtype)
        outputs = centered * scale + ops.cast(self.beta, z.dtype)
        return ops.cast(outputs, self.compute_dtype)


class RecurrentCell(QuantizableCell, DropoutRNNCell, keras.layers.Layer):
    """Base of `SimpleRNNCell`, `LSTMCell` and `GRUCell`.

    Subclasses set `num_gates` (blocks of `units` columns in `kernel`),
    `state_size`, and implement `step`; they may override
    `_build_extra_weights` and `_input_bias`.

    Variational dropout (Gal & Ghahramani 2016): one input mask of shape
    `(batch, input_dim)` and one recurrent mask of shape `(batch, units)` per
    sequence, shared by all gates and reused at every time step; they are drawn
    from `seed_generator` by `draw_noise` and only used when `training` is
    true.

    Zoneout (Krueger et al. 2017): in training each unit of each state keeps
    its previous value with probability `rate`, drawn afresh at every step;
    at inference the state is the expectation
    `state_t = rate * state_{t-1} + (1 - rate) * new_state_t`.
    Both are written as `new + k * (old - new)`, with `k` the 0/1 keep mask
    in training and `rate` at inference.
    """

    num_gates = 1

    def __init__(
        self,
        units,
        *,
        activation,
        use_bias,
        kernel_initializer,
        recurrent_initializer,
        bias_initializer,
        kernel_regularizer,
        recurrent_regularizer,
        bias_regularizer,
        kernel_constraint,
        recurrent_constraint,
        bias_constraint,
        dropout,
        recurrent_dropout,
        zoneout,
        layer_norm,
        norm_epsilon,
        norm_gamma_initializer,
        norm_beta_initializer,
        seed,
        **kwargs,
    ):
        # Keras 2's `implementation` (1 or 2: how the gate matmuls were
        # split, the same function either way): Keras 3's cells accept it,
        # and so do ours; it changes nothing.
        kwargs.pop("implementation", None)
        quantization_config = kwargs.pop("quantization_config", None)
        super().__init__(**kwargs)
        self._init_quantization(quantization_config)  # `cell.quantize`
        self.units = check_units(units)
        self.activation = get_activation("activation", activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = get_initializer(
            "kernel_initializer", kernel_initializer
        )
        self.recurrent_initializer = get_initializer(
            "recurrent_initializer", recurrent_initializer
        )
        self.bias_initializer = get_initializer(
            "bias_initializer", bias_initializer
        )
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(
            recurrent_regularizer
        )
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = check_rate("dropout", dropout)
        self.recurrent_dropout = check_rate(
            "recurrent_dropout", recurrent_dropout
        )
        self.zoneout = check_rate("zoneout", zoneout)
        self.layer_norm = bool(layer_norm)
        if not (isinstance(norm_epsilon, numbers.Real) and norm_epsilon > 0):
            raise ValueError(
                "Argument `norm_epsilon` must be a positive float, "
                f"got {norm_epsilon!r}."
            )
        self.norm_epsilon = float(norm_epsilon)
        self.norm_gamma_initializer = get_initializer(
            "norm_gamma_initializer", norm_gamma_initializer
        )
        self.norm_beta_initializer = get_initializer(
            "norm_beta_initializer", norm_beta_initializer
        )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)
        self.output_size = self.units
        self.peephole = False  # only the LSTM has a cell state to peep at
        if self.layer_norm:
            self.kernel_norm = self._make_norm("kernel_norm")
            self.recurrent_norm = self._make_norm("recurrent_norm")

    # -- construction -----------------------------------------------------

    def _make_norm(self, name):
        return _LayerNorm(
            axis=-1,
            epsilon=self.norm_epsilon,
            gamma_initializer=self.norm_gamma_initializer,
            beta_initializer=self.norm_beta_initializer,
            dtype=self.dtype_policy,
            name=name,
        )

    @property
    def zoneout_rates(self):
        """Zoneout probability of each state, in `state_size` order."""
        return [self.zoneout]

    def build(self, input_shape):
        input_dim = input_shape[-1]
        width = self.num_gates * self.units
        if self.quantization_mode:
            # A saved int8 cell (`keras_rnn._quantize`), as `Dense` builds.
            self.quantized_build(
                (input_dim, width), self.quantization_mode, self.quantization_config
            )
        else:
            self.kernel = self.add_weight(
                shape=(input_dim, width),
                name="kernel",
                initializer=self.kernel_initializer,
                regularizer=self.kernel_regularizer,
                constraint=self.kernel_constraint,
            )
            self.recurrent_kernel = self.add_weight(
                shape=(self.units, width),
                name="recurrent_kernel",
                initializer=self.recurrent_initializer,
                regularizer=self.recurrent_regularizer,
                constraint=self.recurrent_constraint,
            )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=self._bias_shape(),
                name="bias",
                initializer=self._bias_initializer(),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        self._build_extra_weights()
        if self.layer_norm:
            self.kernel_norm.build((None, width))
            self.recurrent_norm.build((None, self._recurrent_norm_width()))
        self.built = True

    def _bias_shape(self):
        return (self.num_gates * self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def _recurrent_norm_width(self):
        return self.num_gates * self.units

    def _build_extra_weights(self):
        pass

    # -- the two halves of a step -----------------------------------------

    def _input_bias(self):
        return self.bias

    def project_inputs(self, inputs):
        """The part of a step that does not depend on the state.

        `zx = LN_x(inputs @ kernel) + b` (no `LN_x` without `layer_norm`).
        Works on one step `(batch, input_dim)` or on a whole sequence
        `(batch, time, input_dim)`, which is how the fused layers hoist it out
        of the time loop.

        Args:
            inputs: input tensor, dropout mask already applied.

        Returns:
            Tensor of shape `inputs.shape[:-1] + (num_gates * units,)`.
        """
        zx = self.input_matmul(inputs)
        if self.layer_norm:
            zx = self.kernel_norm(zx)
        if self.use_bias:
            zx = zx + self._input_bias()
        return zx

    def step(self, zx, states, noise=None):
        """The recurrent half of a step; see the subclass for equations.

        Args:
            zx: `project_inputs` of this step's (dropped-out) input,
                `(batch, gates * units)`.
            states: list of state tensors, each `(batch, units)`.
            noise: this step's `CellNoise` (its `recurrent_mask` and
                `zoneout`; `input_mask` is applied before `project_inputs`),
                or None for none.

        Returns:
            `(output, new_states)`.
        """
        raise NotImplementedError

    def apply_zoneout(self, new_states, old_states, zoneout):
        """`new + k * (old - new)` for each state (see the class docstring)."""
        if zoneout is None:
            return new_states
        factors = ops.split(zoneout, len(new_states), axis=-1)
        return [
            new + k * (old - new)
            for new, old, k in zip(new_states, old_states, factors)
        ]

    def draw_noise(self, step_input, state, training=False, steps=None):
        """Draws the cell's noise for one sequence: the one place it is drawn.

        Call it once before the time loop and step with the result (see the
        module docstring). The dropout masks come from Keras's
        `DropoutRNNCell` cache (`get_dropout_mask`), so a mask that
        `keras.layers.RNN` already drew for this sequence is reused; whoever
        owns the loop clears the cache after it (`keras.layers.RNN` does).
        Zoneout keep masks are drawn from `seed_generator` here, after the
        dropout masks.

        Args:
            step_input: `(batch, input_dim)` a step's input (only its shape
                and dtype are read).
            state: `(batch, units)` the first state `h_{t-1}` (shape and
                dtype only).
            training: Python bool; without it there is no dropout and the
                zoneout factor is the constant rate.
            steps: number of time steps to draw zoneout masks for, or None
                for one step (`cell.call`).

        Returns:
            A `CellNoise`.
        """
        input_mask = recurrent_mask = None
        if training and self.dropout > 0:
            input_mask = self.get_dropout_mask(step_input)
        if training and self.recurrent_dropout > 0:
            recurrent_mask = self.get_recurrent_dropout_mask(state)
        batch_shape = tuple(ops.shape(step_input)[:1])
        if steps is not None:
            batch_shape = (steps,) + batch_shape
        zoneout = self._zoneout_factor(batch_shape, training)
        return CellNoise(input_mask, recurrent_mask, zoneout)

    def _zoneout_factor(self, batch_shape, training):
        """The zoneout factor `k`: keep masks of shape
        `batch_shape + (n_states * units,)` in training, the constant rates
        `(n_states * units,)` at inference, None without zoneout."""
        rates = self.zoneout_rates
        if not any(rates):
            return None
        per_unit = ops.concatenate(
            [ops.full((self.units,), rate, dtype=self.compute_dtype) for rate in rates]
        )
        if not training:
            return per_unit
        shape = tuple(batch_shape) + (len(rates) * self.units,)
        draw = keras.random.uniform(
            shape, dtype=self.compute_dtype, seed=self.seed_generator
        )
        return ops.cast(ops.less(draw, per_unit), self.compute_dtype)

    def call(self, inputs, states, training=False):
        """One time step: `draw_noise`, `project_inputs`, then `step`.

        Args:
            inputs: `(batch, input_dim)` input at time t.
            states: state tensor or list of state tensors at time t-1.
            training: Python bool; enables dropout and random zoneout.

        Returns:
            `(output, new_states)`, `new_states` nested like `states`.
        """
        nested = keras.tree.is_nested(states)
        states = list(states) if nested else [states]
        noise = self.draw_noise(inputs, states[0], training)
        zx = self.project_inputs(noise.mask_inputs(inputs))
        output, new_states = self.step(zx, states, noise)
        if not nested and len(new_states) == 1:
            return output, new_states[0]
        return output, new_states

    def get_initial_state(self, batch_size=None):
        sizes = self.state_size
        sizes = sizes if isinstance(sizes, (list, tuple)) else [sizes]
        return [ops.zeros((batch_size, d), dtype=self.compute_dtype) for d in sizes]

    def get_config(self):
        config = {
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "recurrent_initializer": keras.initializers.serialize(
                self.recurrent_initializer
            ),
            "bias_initializer": keras.initializers.serialize(
                self.bias_initializer
            ),
            "kernel_regularizer": keras.regularizers.serialize(
                self.kernel_regularizer
            ),
            "recurrent_regularizer": keras.regularizers.serialize(
                self.recurrent_regularizer
            ),
            "bias_regularizer": keras.regularizers.serialize(
                self.bias_regularizer
            ),
            "kernel_constraint": keras.constraints.serialize(
                self.kernel_constraint
            ),
            "recurrent_constraint": keras.constraints.serialize(
                self.recurrent_constraint
            ),
            "bias_constraint": keras.constraints.serialize(
                self.bias_constraint
            ),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "zoneout": self.zoneout,
            "layer_norm": self.layer_norm,
            "norm_epsilon": self.norm_epsilon,
            "norm_gamma_initializer": keras.initializers.serialize(
                self.norm_gamma_initializer
            ),
            "norm_beta_initializer": keras.initializers.serialize(
                self.norm_beta_initializer
            ),
            "seed": self.seed,
            **self._quantization_config_entry(),
        }
        base_config = super().get_config()
        return {**base_config, **config}


def per_step_noise(noises):
    """Splits the noise of a stack of cells into loop inputs and the rest.

    A time loop feeds the `(time, batch, ...)` part of each `CellNoise`
    (`per_step()`) step by step; the masks that are the same at every step
    stay outside.

    Args:
        noises: sequence of `CellNoise` (or None for a cell without one).

    Returns:
        `(per_step, at_step)`: the tuple of `(time, batch, ...)` tensors to
        feed the loop, and a function that turns one step's slices of them
        back into the per-cell step noise (None stays None).
    """
    noises = list(noises)
    present = [
        i for i, noise in enumerate(noises)
        if noise is not None and noise.per_step() is not None
    ]

    def at_step(slices):
        step_noises = list(noises)
        for i, zoneout_t in zip(present, slices):
            step_noises[i] = noises[i].at_step(zoneout_t)
        return step_noises

    return tuple(noises[i].per_step() for i in present), at_step
