"""TF Addons' `tfa.rnn` names, so `import keras_rnn as tfa` keeps
`tfa.rnn.LayerNormLSTMCell(...)` working (the classes are
`keras_rnn.migration`'s; `docs/MIGRATION.md` lists what is not carried over:
`NASCell`, `ESNCell`)."""

from keras_rnn.migration import LayerNormGRUCell
from keras_rnn.migration import LayerNormLSTMCell
from keras_rnn.migration import LayerNormSimpleRNNCell
from keras_rnn.migration import PeepholeLSTMCell

__all__ = ["LayerNormGRUCell", "LayerNormLSTMCell", "LayerNormSimpleRNNCell",
           "PeepholeLSTMCell"]
