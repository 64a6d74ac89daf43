"""keras-rnn: recurrent layers, attention and seq2seq for Keras 3.

The maintained Keras 3 successor to TensorFlow Addons' `tfa.rnn`: simple
RNN, LSTM (optionally with peepholes) and GRU cells, each optionally
layer-normalized, with variational dropout and zoneout, written in
`keras.ops` for the TensorFlow and JAX backends.
"""

from keras_rnn.cells import GRUCell
from keras_rnn.cells import LSTMCell
from keras_rnn.cells import SimpleRNNCell
from keras_rnn.layers import GRU
from keras_rnn.layers import LSTM
from keras_rnn.layers import SimpleRNN
from keras_rnn.migration import LayerNormGRUCell
from keras_rnn.migration import LayerNormLSTMCell
from keras_rnn.migration import LayerNormSimpleRNNCell
from keras_rnn.migration import PeepholeLSTMCell

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "LayerNormGRUCell",
    "LayerNormLSTMCell",
    "LayerNormSimpleRNNCell",
    "PeepholeLSTMCell",
    "SimpleRNN",
    "SimpleRNNCell",
]
