"""TensorFlow Addons names, for users moving off `tfa.rnn`.

`LayerNormLSTMCell`, `LayerNormSimpleRNNCell` and `PeepholeLSTMCell` accept
the argument names of their `tfa.rnn` namesakes and build the equivalent
`keras_rnn` cell; `LayerNormGRUCell` completes the set. Each is a subclass of
the general cell, so it works everywhere that one does, and its config is
the general cell's (a saved model reloads as the same class).

Differences from TF Addons, on purpose:
- `LayerNormLSTMCell` keeps `c_t` unnormalized in the state and normalizes it
  only on the way to `h_t`, as Ba et al. 2016 (eq. 22) do; TF Addons carried
  the normalized `c_t`.
- `LayerNormSimpleRNNCell` normalizes `W x` and `U h` separately, like the
  other layer-norm cells; TF Addons normalized their sum.
"""

import keras

from keras_rnn import cells

register = keras.saving.register_keras_serializable(package="keras_rnn")

_TFA_NORM_NAMES = {
    # tfa.rnn name -> keras_rnn name
    "norm_gamma_initializer": "norm_gamma_initializer",
    "norm_beta_initializer": "norm_beta_initializer",
    "gamma_initializer": "norm_gamma_initializer",
    "beta_initializer": "norm_beta_initializer",
    "layernorm_epsilon": "norm_epsilon",
}


def _rename(kwargs, cell_name):
    renamed = {}
    for key, value in kwargs.items():
        new_key = _TFA_NORM_NAMES.get(key, key)
        if new_key in renamed:
            raise ValueError(
                f"{cell_name} got both `{key}` and its keras_rnn name "
                f"`{new_key}`; pass one."
            )
        renamed[new_key] = value
    for key in ("gamma_regularizer", "beta_regularizer",
                "gamma_constraint", "beta_constraint"):
        if renamed.pop(key, None) is not None:
            raise ValueError(
                f"{cell_name}: argument `{key}` of tfa.rnn is not supported; "
                "regularize the layer-norm weights with a model-level loss."
            )
    return renamed


@register
class LayerNormLSTMCell(cells.LSTMCell):
    """`tfa.rnn.LayerNormLSTMCell`: an `LSTMCell` with `layer_norm=True`.

    Args:
        units: positive int.
        norm_gamma_initializer, norm_beta_initializer, norm_epsilon: the
            TF Addons names (same in keras_rnn).
        **kwargs: any other `keras_rnn.LSTMCell` argument.

    Example:

    >>> cell = LayerNormLSTMCell(8, norm_epsilon=1e-3)
    >>> cell.layer_norm
    True
    """

    def __init__(self, units, **kwargs):
        kwargs = _rename(kwargs, "LayerNormLSTMCell")
        kwargs["layer_norm"] = True
        super().__init__(units, **kwargs)


@register
class LayerNormSimpleRNNCell(cells.SimpleRNNCell):
    """`tfa.rnn.LayerNormSimpleRNNCell`: a `SimpleRNNCell` with
    `layer_norm=True`.

    Args:
        units: positive int.
        layernorm_epsilon: TF Addons' name of `norm_epsilon` (default 1e-5,
            TF Addons' default).
        gamma_initializer, beta_initializer: TF Addons' names of
            `norm_gamma_initializer`, `norm_beta_initializer`.
        **kwargs: any other `keras_rnn.SimpleRNNCell` argument.

    Example:

    >>> LayerNormSimpleRNNCell(8, layernorm_epsilon=1e-5).norm_epsilon
    1e-05
    """

    def __init__(self, units, **kwargs):
        if "norm_epsilon" not in kwargs and "layernorm_epsilon" not in kwargs:
            kwargs["norm_epsilon"] = 1e-5  # TF Addons' default
        kwargs = _rename(kwargs, "LayerNormSimpleRNNCell")
        kwargs["layer_norm"] = True
        super().__init__(units, **kwargs)


@register
class PeepholeLSTMCell(cells.LSTMCell):
    """`tfa.rnn.PeepholeLSTMCell`: an `LSTMCell` with `peephole=True`.

    As in TF Addons, the peephole weights are initialized with
    `kernel_initializer` unless `peephole_initializer` is given.

    Args:
        units: positive int.
        **kwargs: any `keras.layers.LSTMCell` / `keras_rnn.LSTMCell`
            argument.

    Example:

    >>> PeepholeLSTMCell(8).peephole
    True
    """

    def __init__(self, units, **kwargs):
        kwargs.setdefault(
            "peephole_initializer",
            kwargs.get("kernel_initializer", "glorot_uniform"),
        )
        kwargs["peephole"] = True
        super().__init__(units, **kwargs)


@register
class LayerNormGRUCell(cells.GRUCell):
    """A `GRUCell` with `layer_norm=True` (no TF Addons counterpart).

    Args:
        units: positive int.
        **kwargs: any other `keras_rnn.GRUCell` argument; TF Addons'
            layer-norm argument names are accepted too.

    Example:

    >>> LayerNormGRUCell(8).layer_norm
    True
    """

    def __init__(self, units, **kwargs):
        kwargs = _rename(kwargs, "LayerNormGRUCell")
        kwargs["layer_norm"] = True
        super().__init__(units, **kwargs)
