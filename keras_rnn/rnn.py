"""TF Addons' `tfa.rnn` names, so `import keras_rnn as tfa` keeps
`tfa.rnn.LayerNormLSTMCell(...)` working.

The TF Addons cells are the annex's (`keras_rnn/tfa/rnn.py`);
`LayerNormGRUCell`, which TF Addons never had, is the core's
(`keras_rnn.cells`), here too as before. `docs/MIGRATION.md` lists what is
not carried over: `NASCell`, `ESNCell`.
"""

from keras_rnn.cells import LayerNormGRUCell
from keras_rnn.tfa.rnn import LayerNormLSTMCell
from keras_rnn.tfa.rnn import LayerNormSimpleRNNCell
from keras_rnn.tfa.rnn import PeepholeLSTMCell

__all__ = ["LayerNormGRUCell", "LayerNormLSTMCell", "LayerNormSimpleRNNCell",
           "PeepholeLSTMCell"]
