"""`FusedRNN`: the fast path of the keras_rnn sequence layers.

A `keras.layers.RNN` over a `RecurrentCell` that hoists the input half of
every step (`project_inputs`: input dropout, `W x`, its layer norm and bias)
out of the time loop, and takes Keras's cuDNN kernels where they apply.
"""

import inspect
import re

import keras
from keras import ops

from keras_rnn import _keras_private


def _cell_getter(name):
    def getter(self):
        return getattr(self.cell, name)

    getter.__doc__ = f"The cell's `{name}` argument."
    return getter


# Layer-level arguments of `keras.layers.RNN` (everything else that a sequence
# layer takes goes to its cell).
_LAYER_KEYS = ("name", "trainable", "dtype", "activity_regularizer")


class FusedRNN(keras.layers.RNN):
    """A `keras.layers.RNN` over a `RecurrentCell`, with the fast path.

    The input dropout mask and the input projection (with its layer norm and
    bias) are applied to all time steps at once, before the loop; zoneout
    masks for all steps are drawn before the loop too. Only the recurrent
    matmul and element-wise work run inside Keras's backend loop
    (`tf.while_loop` / `jax.lax.scan`), which has static shapes and compiles
    under XLA (JAX; TensorFlow with `jit_compile=True`). Subclasses with a
    cuDNN kernel override `_backend_kernel`.

    Subclasses set `cell_class`; their constructor takes the cell's
    arguments and the `keras.layers.RNN` ones.
    """

    cell_class = None

    def __init__(
        self,
        units,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_cudnn="auto",
        **kwargs,
    ):
        if use_cudnn not in ("auto", True, False):
            raise ValueError(
                "Argument `use_cudnn` must be 'auto', True or False, "
                f"got {use_cudnn!r}."
            )
        cell_names = self.cell_argument_names()
        cell_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in cell_names}
        for key in ("dtype", "trainable"):
            if key in kwargs:
                cell_kwargs[key] = kwargs[key]
        cell_name = re.sub(r"(?<=.)(?=Cell$)", "_", self.cell_class.__name__)
        cell = self.cell_class(units, name=cell_name.lower(), **cell_kwargs)
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            **kwargs,
        )
        self.use_cudnn = use_cudnn
        self.input_spec = keras.layers.InputSpec(ndim=3)

    @classmethod
    def cell_argument_names(cls):
        params = inspect.signature(cls.cell_class.__init__).parameters
        return [
            name
            for name, p in params.items()
            if name not in ("self", "units")
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]

    def __init_subclass__(cls, **kwargs):
        # Expose the cell's arguments (`units`, `dropout`, `layer_norm`, ...)
        # as read-only properties of the layer, as Keras's LSTM does.
        super().__init_subclass__(**kwargs)
        if cls.cell_class is None:
            return
        for name in ["units"] + cls.cell_argument_names():
            if name not in cls.__dict__:
                setattr(cls, name, property(_cell_getter(name)))

    def _backend_kernel(self, sequences, initial_state, mask):
        """A fused backend kernel (cuDNN) for this configuration.

        Raises `NotImplementedError` where none applies, as Keras's own
        `backend.lstm` / `backend.gru` do.
        """
        raise NotImplementedError

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
        if self.use_cudnn in ("auto", True) and not cell.recurrent_dropout:
            try:
                out = self._backend_kernel(sequences, initial_state, mask)
                if keras.backend.backend() == "tensorflow":
                    # cuDNN kernels are not XLA-compilable.
                    self.supports_jit = False
                return out
            except NotImplementedError:
                pass
        if self.use_cudnn is True:
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
            input_length=zx.shape[0],
            time_major=True,
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences,
        )

    def call(self, sequences, initial_state=None, mask=None, training=False):
        return super().call(
            sequences, mask=mask, training=training, initial_state=initial_state
        )

    def get_config(self):
        config = super().get_config()
        del config["cell"]
        cell_config = self.cell.get_config()
        for key in _LAYER_KEYS:
            cell_config.pop(key, None)
        return {**config, **cell_config, "use_cudnn": self.use_cudnn}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
