"""`StatefulRNN` and the state resets between groups of sequences (see `keras_rnn.tbptt`)."""

import warnings

import keras
from keras import ops

from keras_rnn.tbptt.data import TBPTTSequence


register = keras.saving.register_keras_serializable(package="keras_rnn")


@register
class StatefulRNN(keras.layers.Wrapper):
    """Carries a recurrent layer's final state into its next call.

    What `stateful=True` does, on every backend, `fit` on JAX included (see
    the module docstring): the state lives in non-trainable variables
    `(batch_size, state_size)` of this wrapper; each call starts the wrapped
    layer from them and writes its final state back,

        outputs, *s_T = layer(x, initial_state=stop_gradient(s_0))
        s_0 <- s_T

    so consecutive batches continue each other row by row and gradients do
    not cross from one batch into the previous one. `reset_state()` zeroes
    the state (`TBPTTResetStates` calls it where a new group of sequences
    starts). The batch size must be static: build the model with
    `keras.Input(batch_shape=(batch_size, ...))`.

    The state variables are weights of the model: `get_weights()` and saved
    files include them, with the training batch size in their shape. To use
    trained layers at another batch size, wrap the same (shared) layer
    again, or copy the wrapped layer's weights
    (`new.layer.set_weights(old.layer.get_weights())`).

    Args:
        layer: a non-stateful recurrent layer taking `initial_state` and
            `mask` (`keras_rnn.LSTM`/`GRU`/`SimpleRNN`, `keras.layers.RNN`
            and its subclasses). The wrapper switches it to
            `return_state=True` to read the final state.
        return_state: whether to return `[outputs, *states]` rather than the
            layer's outputs alone.
        **kwargs: `keras.layers.Layer` arguments (`name`, ...).

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input(batch_shape=(32, None), dtype="int32"),
    ...     keras.layers.Embedding(100, 16),
    ...     StatefulRNN(keras_rnn.LSTM(128, return_sequences=True)),
    ...     keras.layers.Dense(100)])
    """

    def __init__(self, layer, return_state=False, **kwargs):
        super().__init__(layer, **kwargs)
        if getattr(layer, "stateful", False):
            raise ValueError(
                "Argument `layer` must not be stateful: StatefulRNN keeps the "
                f"state itself. Build {layer.name!r} with stateful=False."
            )
        if not hasattr(layer, "return_state") or not callable(
            getattr(layer, "get_initial_state", None)
        ):
            raise ValueError(
                "Argument `layer` must be a recurrent layer with "
                "`return_state` and `get_initial_state` (a keras.layers.RNN), "
                f"got {type(layer).__name__}."
            )
        layer.return_state = True
        self.return_state = bool(return_state)
        self.stateful = True
        self.supports_masking = True
        self.states = None

    def build(self, input_shape):
        batch_size = input_shape[0]
        if batch_size is None:
            raise ValueError(
                "StatefulRNN needs a static batch size: build the model with "
                "`keras.Input(batch_shape=(batch_size, ...))`. Got input "
                f"shape {tuple(input_shape)}."
            )
        super().build(input_shape)
        initial = self.layer.get_initial_state(batch_size)
        initial = initial if isinstance(initial, (list, tuple)) else [initial]
        self.states = [
            self.add_weight(
                shape=tuple(state.shape),
                initializer="zeros",
                trainable=False,
                name=f"state_{i}",
            )
            for i, state in enumerate(initial)
        ]

    def call(self, inputs, mask=None, training=None):
        # A copy: PyTorch's `assign` below writes into the variable's tensor
        # in place, which the backward pass still needs (autograd refuses).
        initial_state = [ops.copy(ops.stop_gradient(s.value)) for s in self.states]
        result = self.layer(
            inputs, initial_state=initial_state, mask=mask, training=training
        )
        outputs, states = result[0], list(result[1:])
        for variable, state in zip(self.states, states):
            variable.assign(ops.cast(state, variable.dtype))
        if self.return_state:
            return [outputs] + states
        return outputs

    def compute_output_shape(self, input_shape):
        shapes = self.layer.compute_output_shape(input_shape)
        return shapes if self.return_state else shapes[0]

    def compute_mask(self, inputs, mask=None):
        masks = self.layer.compute_mask(inputs, mask)  # [outputs, *states]
        if self.return_state or not isinstance(masks, (list, tuple)):
            return masks
        return masks[0]

    def reset_state(self):
        """Zeroes the carried state."""
        if self.states is not None:
            for variable in self.states:
                variable.assign(ops.zeros(variable.shape, variable.dtype))

    def reset_states(self):
        """Alias of `reset_state`, as Keras's RNN layers have."""
        self.reset_state()

    def get_config(self):
        return {**super().get_config(), "return_state": self.return_state}


def stateful_layers(model):
    """The layers of `model` (itself included, nested ones too) with
    `stateful=True` and a `reset_state` method."""
    # `_flatten_layers` is private (Keras is pinned to 3.15.x in setup.cfg);
    # Keras 3 has no public recursive walk over a model's layers.
    return [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if getattr(layer, "stateful", False)
        and callable(getattr(layer, "reset_state", None))
    ]


def reset_rnn_states(model):
    """Zeroes the state of every stateful layer of `model`.

    Keras 3 models have no `reset_states`; this calls `reset_state()` on each
    of `stateful_layers(model)`. Safe inside `fit`/`evaluate`/`predict` on
    the JAX backend too: it first writes the trainer's in-flight state back
    to the variables (`jax_state_sync`), so that the trainer reads the
    zeroed states at its next step.

    Args:
        model: a `keras.Model` or layer.

    Returns:
        The number of layers reset.
    """
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync):
        sync()
    layers = stateful_layers(model)
    for layer in layers:
        layer.reset_state()
    return len(layers)


class TBPTTResetStates(keras.callbacks.Callback):
    """Resets a model's recurrent states where a `TBPTTSequence` says so.

    Before each batch that starts a new group of sequences
    (`sequence.is_first_chunk(batch)`: the first batch of every epoch
    included) and at every epoch end, zeroes the state of every stateful
    layer (`reset_rnn_states`). Also handles `evaluate` and `predict` over a
    `TBPTTSequence`: during `fit`, test batches (validation) follow
    `validation_sequence`; outside `fit`, `sequence`. With no sequence for
    a phase, the states are reset once, before its first batch.

    States cannot be reset between the steps of one execution, so the model
    must be compiled with `steps_per_execution=1` (the default).

    Args:
        sequence: the `TBPTTSequence` given to `fit` (or to `evaluate` /
            `predict` when the callback is passed there).
        validation_sequence: the `TBPTTSequence` given to `fit` as
            `validation_data`, if any.

    Example:

    >>> train = TBPTTSequence(x, y, batch_size=32, chunk_length=50)
    >>> val = TBPTTSequence(x_val, y_val, batch_size=32, chunk_length=50)
    >>> model.fit(train, validation_data=val, epochs=5, shuffle=False,
    ...           callbacks=[TBPTTResetStates(train, val)])
    """

    def __init__(self, sequence, validation_sequence=None):
        super().__init__()
        for name, value in (("sequence", sequence),
                            ("validation_sequence", validation_sequence)):
            if value is not None and not isinstance(value, TBPTTSequence):
                raise ValueError(
                    f"Argument `{name}` must be a TBPTTSequence, "
                    f"got {type(value).__name__}."
                )
        self.sequence = sequence
        self.validation_sequence = validation_sequence
        self._in_fit = False

    def reset(self):
        """Zeroes the model's states; subclasses may extend it."""
        reset_rnn_states(self.model)

    def _check_model(self):
        steps = getattr(self.model, "steps_per_execution", 1) or 1
        if steps != 1:
            raise ValueError(
                "TBPTTResetStates needs the model compiled with "
                f"`steps_per_execution=1`, got {steps}: states cannot be "
                "reset between the steps of one execution."
            )
        if keras.backend.backend() == "jax":
            tracked = {id(v) for v in self.model.variables}
            for layer in stateful_layers(self.model):
                states = getattr(layer, "states", None) or []
                states = keras.tree.flatten(states)
                if any(id(v) not in tracked for v in states):
                    raise ValueError(
                        f"Layer {layer.name!r} is stateful=True, whose state "
                        "the JAX trainer does not carry from one batch to the "
                        "next in Keras 3 (it keeps the state in untracked "
                        "variables). Build it with stateful=False and wrap it "
                        "in keras_rnn.StatefulRNN."
                    )
        if not stateful_layers(self.model):
            warnings.warn(
                "TBPTTResetStates: the model has no stateful layer, so no "
                "state is carried from one chunk to the next. Wrap its "
                "recurrent layers in keras_rnn.StatefulRNN.",
                stacklevel=2,
            )

    def _maybe_reset(self, sequence, batch):
        if sequence is None:
            if batch == 0:
                self.reset()
        elif sequence.is_first_chunk(batch):
            self.reset()

    def on_train_begin(self, logs=None):
        self._in_fit = True
        self._check_model()

    def on_train_end(self, logs=None):
        self._in_fit = False
        self.reset()

    def on_train_batch_begin(self, batch, logs=None):
        self._maybe_reset(self.sequence, batch)

    def on_epoch_end(self, epoch, logs=None):
        self.reset()

    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self._check_model()

    def on_test_batch_begin(self, batch, logs=None):
        sequence = self.validation_sequence if self._in_fit else self.sequence
        self._maybe_reset(sequence, batch)

    def on_predict_begin(self, logs=None):
        self._check_model()

    def on_predict_batch_begin(self, batch, logs=None):
        self._maybe_reset(self.sequence, batch)
