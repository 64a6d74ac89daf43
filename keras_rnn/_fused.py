"""`FusedRNN`: the fast path of the keras_rnn sequence layers.

A `keras.layers.RNN` over a `RecurrentCell` that hoists the input half of
every step (`project_inputs`: input dropout, `W x`, its layer norm and bias)
out of the time loop, and takes Keras's cuDNN kernels where they apply.
"""

import keras
from keras import ops

from keras_rnn import _keras_private


def check_use_cudnn(use_cudnn):
    """Returns `use_cudnn` if it is "auto", True or False, else raises."""
    if use_cudnn not in ("auto", True, False):
        raise ValueError(
            "Argument `use_cudnn` must be 'auto', True or False, "
            f"got {use_cudnn!r}."
        )
    return use_cudnn


class FusedRNN(keras.layers.RNN):
    """A `keras.layers.RNN` over a `RecurrentCell`, with the fast path.

    The input dropout mask and the input projection (with its layer norm and
    bias) are applied to all time steps at once, before the loop; zoneout
    masks for all steps are drawn before the loop too. Only the recurrent
    matmul and element-wise work run inside Keras's backend loop
    (`tf.while_loop` / `jax.lax.scan`), which has static shapes and compiles
    under XLA (JAX; TensorFlow with `jit_compile=True`).

    The sequence layers (`keras_rnn.LSTM`, ...) build their cell from their
    arguments and pass it here; they also subclass Keras's layer of the same
    name (`class LSTM(FusedRNN, keras.layers.LSTM)`), whose `__init__` is
    skipped (it would build Keras's own cell) and whose properties expose the
    Keras arguments (`units`, `dropout`, ...). This class adds the properties
    of the arguments every keras_rnn cell adds. Layers with a cuDNN kernel
    override `_has_cudnn_kernel` and `_backend_kernel`.

    Args:
        cell: the layer's `RecurrentCell`.
        return_sequences, return_state, go_backwards, stateful, unroll: as
            `keras.layers.RNN`.
        use_cudnn: "auto", True or False (see the `use_cudnn` property).
        **kwargs: other `keras.layers.RNN` and `Layer` arguments; the
            deprecated `implementation` is accepted and ignored, as Keras's
            layers do.
    """

    def __init__(
        self,
        cell,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_cudnn="auto",
        **kwargs,
    ):
        self._use_cudnn = check_use_cudnn(use_cudnn)
        kwargs.pop("implementation", None)
        # `keras.layers.RNN.__init__`, not `super().__init__`: the next class
        # in the MRO is Keras's `LSTM` / `GRU` / `SimpleRNN`, whose
        # constructor builds a Keras cell.
        keras.layers.RNN.__init__(
            self,
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            **kwargs,
        )
        self.input_spec = keras.layers.InputSpec(ndim=3)

    # -- the cuDNN switch ---------------------------------------------------

    @property
    def _has_cudnn_kernel(self):
        """Whether a Keras cuDNN kernel computes this configuration.

        Keras's kernels compute the plain LSTM and GRU; layer norm,
        peepholes and zoneout have none. Recurrent dropout (training only)
        is checked where the kernel is chosen, as Keras does.
        """
        return False

    @property
    def use_cudnn(self):
        """The `use_cudnn` argument; False where `_has_cudnn_kernel` is not.

        Keras's `Bidirectional` takes its fused cuDNN path for an instance
        of `keras.layers.LSTM` / `GRU` whose `use_cudnn` is "auto" or True
        (and no dropout); it checks neither layer norm nor peepholes nor
        zoneout, so those configurations report False here. `get_config`
        keeps the argument as given.
        """
        return self._use_cudnn if self._cudnn_applies else False

    @property
    def _cudnn_applies(self):
        # An int8 cell (`cell.quantize`) runs the fused loop: Keras's kernels
        # take float weights.
        return self._has_cudnn_kernel and not self.cell.quantization_mode

    @use_cudnn.setter
    def use_cudnn(self, value):
        # `Bidirectional` copies `layer.use_cudnn` onto its two copies of the
        # layer: writing back the value read leaves the argument (and the
        # saved config) as it was.
        if value != self.use_cudnn:
            self._use_cudnn = check_use_cudnn(value)

    def _backend_kernel(self, sequences, initial_state, mask):
        """Keras's cuDNN kernel (`backend.lstm` / `backend.gru`) on this
        layer's weights, for a configuration with `_has_cudnn_kernel`.

        Raises `NotImplementedError` where the backend or device has none,
        as Keras's own `backend.lstm` / `backend.gru` do.
        """
        raise NotImplementedError

    # -- the arguments every keras_rnn cell adds to Keras's -----------------

    @property
    def seed(self):
        """The cell's `seed` argument."""
        return self.cell.seed

    @property
    def zoneout(self):
        """The cell's `zoneout` argument."""
        return self.cell.zoneout

    @property
    def layer_norm(self):
        """The cell's `layer_norm` argument."""
        return self.cell.layer_norm

    @property
    def norm_epsilon(self):
        """The cell's `norm_epsilon` argument."""
        return self.cell.norm_epsilon

    @property
    def norm_gamma_initializer(self):
        """The cell's `norm_gamma_initializer` argument."""
        return self.cell.norm_gamma_initializer

    @property
    def norm_beta_initializer(self):
        """The cell's `norm_beta_initializer` argument."""
        return self.cell.norm_beta_initializer

    @property
    def peephole(self):
        """The cell's `peephole` argument (False but for the LSTM)."""
        return self.cell.peephole

    # -- the time loop ------------------------------------------------------

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if keras.tree.is_nested(mask):
            mask = mask[0]
        cell = self.cell
        training = bool(training)
        # The cell's noise for this sequence, drawn once (`CellNoise`);
        # zoneout masks for every step, since the steps run in one loop.
        noise = cell.draw_noise(
            sequences[:, 0, :], initial_state[0], training,
            steps=ops.shape(sequences)[1],
        )
        # One input mask per sequence, the same at every step.
        sequences = noise.mask_inputs(sequences)  # (batch, time, features)

        # As Keras does, never take cuDNN with recurrent dropout configured,
        # even at inference: on TensorFlow it would turn XLA off for the
        # training step too.
        if (
            self._use_cudnn in ("auto", True)
            and self._cudnn_applies
            and not cell.recurrent_dropout
        ):
            try:
                out = self._backend_kernel(sequences, initial_state, mask)
                if keras.backend.backend() == "tensorflow":
                    # cuDNN kernels are not XLA-compilable.
                    self.supports_jit = False
                return out
            except NotImplementedError:
                pass
        if self._use_cudnn is True:
            raise ValueError(
                "use_cudnn=True was specified, but cuDNN is not supported for "
                "this layer configuration with this backend and device. Pass "
                "use_cudnn='auto' to fall back to the fused keras_rnn loop."
            )

        # Work time-major: transposing the narrow input costs less than
        # transposing the wide projection, which the backend loop would do.
        inputs = ops.transpose(sequences, (1, 0, 2))  # (time, batch, features)
        zx = cell.project_inputs(inputs)  # (time, batch, gates * units)
        if mask is not None:
            mask = ops.transpose(mask, (1, 0))  # (time, batch)
        last_output, outputs, states = self._time_loop(
            zx, list(initial_state), mask, noise
        )
        if self.return_sequences:
            outputs = ops.transpose(outputs, (1, 0, 2))  # (batch, time, units)
        return last_output, outputs, states

    def _time_loop(self, zx, initial_state, mask, noise):
        """Runs `cell.step` over time on the hoisted projection `zx`.

        Args:
            zx: `(time, batch, gates * units)` input projection.
            initial_state: list of `(batch, units)` states.
            mask: `(time, batch)` boolean or None.
            noise: the sequence's `CellNoise` from `cell.draw_noise`; its
                `per_step()` zoneout masks are fed through the loop.

        Returns:
            `(last_output, outputs, final_states)`, `outputs` time-major, as
            `backend.rnn(..., time_major=True)` returns them.
        """
        cell = self.cell
        per_step = noise.per_step()  # (time, batch, n * units) or None
        if per_step is not None:
            loop_inputs = (zx, per_step)

            def step(inputs, states):
                zx_t, zoneout_t = inputs
                return cell.step(zx_t, list(states), noise.at_step(zoneout_t))

        else:
            loop_inputs = zx

            def step(zx_t, states):
                return cell.step(zx_t, list(states), noise)

        return _keras_private.rnn(
            step,
            loop_inputs,
            initial_state,
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            time_major=True,
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences,
        )

    def call(self, sequences, initial_state=None, mask=None, training=False):
        return super().call(
            sequences, mask=mask, training=training, initial_state=initial_state
        )

    def get_config(self):
        # `keras.layers.RNN`'s config, not that of Keras's `LSTM` (next in
        # the MRO), which lists only Keras's arguments.
        config = keras.layers.RNN.get_config(self)
        del config["cell"]
        # The cell's arguments are the layer's; its name, dtype and
        # trainable flag come from the layer's.
        cell_config = {
            key: value
            for key, value in self.cell.get_config().items()
            if key not in ("name", "trainable", "dtype", "quantization_config")
        }
        config = {
            **config,
            **cell_config,
            "activity_regularizer": keras.regularizers.serialize(
                self.activity_regularizer
            ),
            "use_cudnn": self._use_cudnn,
        }
        if self.cell.quantization_mode:
            # An int8 cell (`cell.quantize`): its policy and quantization
            # config, for `from_config` to rebuild its int8 variables.
            config["cell_quantization"] = {
                "dtype": keras.dtype_policies.serialize(self.cell.dtype_policy),
                "config": keras.saving.serialize_keras_object(
                    self.cell.quantization_config
                ),
            }
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        quantization = config.pop("cell_quantization", None)
        layer = cls(**config)
        if quantization is not None:
            cell = layer.cell
            cell._init_quantization(quantization["config"])
            cell.dtype_policy = keras.dtype_policies.deserialize(quantization["dtype"])
        return layer
