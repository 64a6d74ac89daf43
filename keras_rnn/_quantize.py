"""int8 weight quantization of the keras_rnn cells (`cell.quantize("int8")`).

Keras's `Model.quantize("int8")` quantizes `Dense`, `EinsumDense` and
`Embedding`; this module gives the recurrent cells the same scheme, with the
same conventions as Keras's `Dense` (`keras/src/layers/core/dense.py`):

- the weights: each column `j` of `W` (the kernel) and of `U` (the recurrent
  kernel) gets its own scale, abs-max over the input axis
  (`keras.quantizers.abs_max_quantize(W, axis=0)`):

      s_W[j] = 127 / (max_i |W[i, j]| + eps)
      W_q[i, j] = clip(round(W[i, j] * s_W[j]), -127, 127)      (int8)

  stored as the int8 variable `kernel` (`recurrent_kernel`), non-trainable,
  beside the float32 `kernel_scale` (`recurrent_kernel_scale`), shape
  `(gates * units,)`;
- the inputs of each matmul (`x_t`, and `h_{t-1}` in the recurrent step),
  quantized on the fly per row, abs-max over the feature axis (Keras's
  `AbsMaxQuantizer(axis=-1)`, the `Dense` default):

      s_x[b] = 127 / (max_k |x[b, k]| + eps)
      x_q[b, k] = clip(round(x[b, k] * s_x[b]), -127, 127)       (int8)

- the product, int8 x int8 accumulated in int32, then rescaled:

      x @ W  ~=  (x_q @ W_q)[b, j] / (s_x[b] * s_W[j])

  (with a config whose activation quantizer is None, weight-only:
  `(x @ W_q) / s_W`);
- the dtype policy becomes `"int8_from_<policy>"`
  (`keras.dtype_policies.QuantizedDTypePolicy`), so `Layer.__call__` routes
  through `quantized_call` -> `_int8_call`; the config (`quantization_config`)
  is saved with the cell, and `build` on a cell whose policy is int8 creates
  the int8 variables (`quantized_build`), as `Dense` does on load.

The recurrent step itself runs the int8 matmul on every backend, inside the
fused time loop too (`tf.while_loop`, `jax.lax.scan`, the PyTorch loop):
`keras.ops.matmul` of two int8 tensors accumulates in int32 on all three
(`tf.matmul(..., output_type=int32)`, `preferred_element_type` on JAX).
Biases, peepholes and the layer norms stay float. The quantized cell is for
inference: the rounding has no gradient (Keras's `Dense` adds a straight-
through input gradient for LoRA fine-tuning, which the cells do not offer).
"""

import warnings

import keras
from keras import ops

from keras_rnn import _keras_private

_QUANTIZED = ("kernel", "recurrent_kernel")


def int8_matmul(inputs, kernel, kernel_scale, inputs_quantizer, compute_dtype):
    """`inputs @ kernel` for an int8 `kernel` with per-column `kernel_scale`.

    `Dense._int8_call`'s arithmetic (without its custom gradient):

        y[..., j] = (x_q @ W_q)[..., j] / (s_x[...] * s_W[j])

    Args:
        inputs: float tensor `(..., in)`.
        kernel: int8 `(in, out)`.
        kernel_scale: float `(out,)`.
        inputs_quantizer: a `keras.quantizers.Quantizer` applied per row
            (`axis=-1`), or None for weight-only quantization.
        compute_dtype: dtype of the result.

    Returns:
        Float tensor `(..., out)` in `compute_dtype`.
    """
    output_scale = kernel_scale
    if inputs_quantizer:
        inputs, inputs_scale = inputs_quantizer(inputs, axis=-1)
        output_scale = ops.multiply(output_scale, inputs_scale)
    outputs = ops.cast(ops.matmul(inputs, kernel), compute_dtype)
    return ops.divide(outputs, ops.cast(output_scale, compute_dtype))


class QuantizableCell:
    """Mixin of `RecurrentCell`: `quantize("int8")` and its int8 matmuls.

    Cells compute their two matmuls through `input_matmul` (`x @ W`) and
    `recurrent_matmul` (`h @ U`), which take the int8 path once the cell is
    quantized (see the module docstring for the scheme).
    """

    def _init_quantization(self, config):
        if isinstance(config, dict):
            config = keras.saving.deserialize_keras_object(config)
        self.quantization_config = config
        self.inputs_quantizer = None

    # -- the two matmuls ------------------------------------------------------

    def input_matmul(self, inputs):
        """`inputs @ kernel` (int8 path when quantized).

        Args:
            inputs: `(..., input_dim)`.

        Returns:
            `(..., gates * units)`.
        """
        if self.quantization_mode == "int8":
            return int8_matmul(
                inputs, self.kernel, self.kernel_scale, self.inputs_quantizer,
                self.compute_dtype,
            )
        return ops.matmul(inputs, self.kernel)

    def recurrent_matmul(self, state, start=None, stop=None):
        """`state @ recurrent_kernel[:, start:stop]` (int8 path when quantized).

        Args:
            state: `(batch, units)`.
            start, stop: the columns to use (all by default), e.g. the GRU's
                gate and candidate blocks.

        Returns:
            `(batch, stop - start)`.
        """
        columns = slice(start, stop)
        if self.quantization_mode == "int8":
            return int8_matmul(
                state, self.recurrent_kernel[:, columns],
                self.recurrent_kernel_scale[columns], self.inputs_quantizer,
                self.compute_dtype,
            )
        if start is None and stop is None:
            return ops.matmul(state, self.recurrent_kernel)
        return ops.matmul(state, self.recurrent_kernel[:, columns])

    # -- Keras's quantization protocol ----------------------------------------

    def quantize(self, mode=None, type_check=True, config=None):
        """Quantizes `kernel` and `recurrent_kernel` to int8 (see the module
        docstring for the equations).

        Called through Keras's wrapper (`Layer.quantize`), which resolves
        `config` and checks that the cell is built and not yet quantized.

        Args:
            mode: `"int8"`; other modes raise `NotImplementedError`, which
                `Model.quantize` turns into a warning.
            type_check: accepted for Keras's signature; every keras_rnn cell
                computes its matmuls through `input_matmul` /
                `recurrent_matmul`, so subclasses are quantizable.
            config: a `keras.quantizers.Int8QuantizationConfig` or None (the
                defaults: `AbsMaxQuantizer(axis=0)` for the weights, per-row
                abs-max for the inputs).

        Returns:
            None; the cell's variables and dtype policy are replaced.
        """
        del type_check
        if mode != "int8":
            raise self._quantization_mode_error(mode)
        self.quantization_config = config
        weight_quantizer = keras.quantizers.QuantizationConfig.weight_quantizer_or_default(
            config, keras.quantizers.AbsMaxQuantizer(axis=0)
        )
        values = {}
        for name in _QUANTIZED:
            variable = getattr(self, name)
            quantized, scale = weight_quantizer(variable, to_numpy=True)
            values[name] = (variable.shape, quantized, ops.squeeze(scale, axis=0))
            delattr(self, name)
        self.quantized_build(values["kernel"][0], mode, config)
        for name in _QUANTIZED:
            _, quantized, scale = values[name]
            getattr(self, name).assign(quantized)
            getattr(self, f"{name}_scale").assign(scale)
        if self.dtype_policy.quantization_mode is None:
            self.dtype_policy = keras.dtype_policies.get(
                f"{mode}_from_{self.dtype_policy.name}"
            )

    def quantized_build(self, kernel_shape, mode, config=None):
        """Creates the int8 variables (`build` calls it for an int8 policy).

        Args:
            kernel_shape: `(input_dim, gates * units)`.
            mode: `"int8"`.
            config: the quantization config, or None.
        """
        if mode != "int8":
            raise self._quantization_mode_error(mode)
        self.inputs_quantizer = (
            keras.quantizers.QuantizationConfig.activation_quantizer_or_default(
                config, keras.quantizers.AbsMaxQuantizer()
            )
        )
        width = kernel_shape[-1]
        shapes = {"kernel": tuple(kernel_shape), "recurrent_kernel": (self.units, width)}
        for name in _QUANTIZED:
            setattr(self, name, self.add_weight(
                name=name, shape=shapes[name], initializer="zeros",
                dtype="int8", trainable=False,
            ))
            setattr(self, f"{name}_scale", self.add_weight(
                name=f"{name}_scale", shape=(width,), initializer="ones",
                trainable=False,
            ))
        self._is_quantized = True

    def _int8_call(self, *args, **kwargs):
        # `call` runs `input_matmul` / `recurrent_matmul`, which dispatch.
        return self.call(*args, **kwargs)

    # -- saving -----------------------------------------------------------------

    def _saved_variables(self):
        """int8: `kernel`, `recurrent_kernel`, the other variables in their
        tracked order (bias, peepholes), then the two scales (as `Dense`
        stores `kernel, bias, kernel_scale`)."""
        quantized = [self.kernel, self.recurrent_kernel]
        scales = [self.kernel_scale, self.recurrent_kernel_scale]
        special = {id(v) for v in quantized + scales}
        rest = [
            v for v in self._trainable_variables + self._non_trainable_variables
            if id(v) not in special
        ]
        return quantized + rest + scales

    def save_own_variables(self, store):
        """As `Layer.save_own_variables`; int8 cells in `_saved_variables`
        order."""
        if not self.built or self.quantization_mode != "int8":
            return super().save_own_variables(store)
        for i, variable in enumerate(self._saved_variables()):
            store[str(i)] = variable

    def load_own_variables(self, store):
        """As `Layer.load_own_variables`; int8 cells in `_saved_variables`
        order."""
        if not self.built or self.quantization_mode != "int8":
            return super().load_own_variables(store)
        variables = self._saved_variables()
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"Layer '{self.name}' (int8) expects {len(variables)} "
                f"variables, but the weights file lists {len(store.keys())}."
            )
        for i, variable in enumerate(variables):
            variable.assign(store[str(i)])

    def _quantization_config_entry(self):
        if self.quantization_config is None:
            return {}
        return {
            "quantization_config": keras.saving.serialize_keras_object(
                self.quantization_config
            )
        }


def quantize_cells(model, mode=None, config=None, filters=None):
    """Quantizes the keras_rnn cells that `Model.quantize` does not reach.

    `Model.quantize` calls `quantize` only on layers without sublayers; a
    cell with `layer_norm=True` holds its layer norms as sublayers, so it is
    skipped there. This quantizes every not yet quantized `RecurrentCell`
    under `model` (matching `filters`), then resets the model's compiled
    functions as `Model.quantize` does.

    Args:
        model: a built `keras.Model`.
        mode, config, filters: as `Model.quantize`.

    Returns:
        The number of cells quantized.
    """
    from keras_rnn._cell import RecurrentCell

    count = 0
    for layer in model._flatten_layers():
        if not isinstance(layer, RecurrentCell) or getattr(layer, "_is_quantized", False):
            continue
        if not _keras_private.should_quantize_layer(layer, filters):
            continue
        try:
            layer.quantize(mode, config=config)
            count += 1
        except NotImplementedError as error:
            warnings.warn(str(error))
    if count:
        model.train_function = model.test_function = model.predict_function = None
        model._post_quantize(mode)
    return count


def quantization_entries(model):
    """The quantized layers under `model`, for a subclassed model's config.

    A model that builds its layers in `__init__` from its own arguments
    (`Seq2Seq`) recreates them float on load; these entries say which to
    make int8 again before `build` (Keras's `Dense`, `Embedding` and the
    cells all build their quantized variables from their dtype policy and
    `quantization_config`).

    Args:
        model: a `keras.Model`.

    Returns:
        Dict `"<index in model._flatten_layers()>/<name>"` ->
        `{"dtype": policy, "config": quantization config}` (serialized), empty
        for a float model.
    """
    entries = {}
    for index, layer in enumerate(model._flatten_layers(include_self=False)):
        if layer.dtype_policy.quantization_mode is None:
            continue
        entries[f"{index}/{layer.name}"] = {
            "dtype": keras.dtype_policies.serialize(layer.dtype_policy),
            "config": keras.saving.serialize_keras_object(
                getattr(layer, "quantization_config", None)
            ),
        }
    return entries


def apply_quantization_entries(model, entries):
    """Gives the unbuilt layers of `model` the policies in `entries`.

    Args:
        model: the unbuilt model `from_config` made.
        entries: `quantization_entries` of the saved model.

    Raises:
        ValueError: an entry names no layer of `model`.
    """
    if not entries:
        return
    layers = {
        f"{index}/{layer.name}": layer
        for index, layer in enumerate(model._flatten_layers(include_self=False))
    }
    for key, entry in entries.items():
        if key not in layers:
            raise ValueError(
                f"The saved quantization names layer {key!r}, which "
                f"{type(model).__name__} does not have."
            )
        layer = layers[key]
        if hasattr(layer, "_init_quantization"):  # a keras_rnn cell
            layer._init_quantization(entry["config"])
        else:
            layer.quantization_config = keras.saving.deserialize_keras_object(
                entry["config"]
            )
        layer.dtype_policy = keras.dtype_policies.deserialize(entry["dtype"])
