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

Each cell lives with its sequence layer, as in Keras: `SimpleRNNCell` in
`keras_rnn/simple_rnn.py`, `LSTMCell` in `keras_rnn/lstm.py`, `GRUCell` in
`keras_rnn/gru.py`; their base and noise protocol in `keras_rnn/_cell.py`.
"""

import keras

from keras_rnn.gru import GRUCell
from keras_rnn.lstm import LSTMCell
from keras_rnn.simple_rnn import SimpleRNNCell

__all__ = ["GRUCell", "LSTMCell", "LayerNormGRUCell", "SimpleRNNCell"]

register = keras.saving.register_keras_serializable(package="keras_rnn")


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
