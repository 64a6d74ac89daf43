"""keras-rnn: recurrent layers, attention and seq2seq for Keras 3.

The maintained Keras 3 successor to TensorFlow Addons' `tfa.rnn`: simple
RNN, LSTM (optionally with peepholes) and GRU cells, each optionally
layer-normalized, with variational dropout and zoneout; and of
`tfa.seq2seq`: Bahdanau and Luong attention, an attention-wrapping decoder
cell, a `Seq2Seq` model, and greedy and beam-search decoding that compile to
one loop. Written in `keras.ops` for the TensorFlow, JAX and PyTorch backends.
"""

from keras_rnn._quiet import quiet_native_logs
from keras_rnn._backend import missing_backend, select_backend

quiet_native_logs()  # in `keras-rnn ...` only: TensorFlow's C++ log lines off stderr
select_backend()  # JAX or torch where TensorFlow is not installed and no backend was chosen

if missing_backend():
    # Installed without a backend: the command line still starts (its help,
    # and the line that says what to install); each public name says it too.
    def __getattr__(name):
        if name in __all__ or name in ("rnn", "seq2seq"):
            raise ImportError(f"keras_rnn.{name}: {missing_backend()}")
        raise AttributeError(f"module 'keras_rnn' has no attribute {name!r}")
else:
    from keras_rnn.attention import AttentionMemory
    from keras_rnn.attention import BahdanauAttention
    from keras_rnn.attention import LuongAttention
    from keras_rnn.attention_wrapper import AttentionWrapper
    from keras_rnn.attention_wrapper import AttentionWrapperState
    from keras_rnn.cells import GRUCell
    from keras_rnn.cells import LayerNormGRUCell
    from keras_rnn.cells import LSTMCell
    from keras_rnn.cells import SimpleRNNCell
    from keras_rnn.layers import GRU
    from keras_rnn.layers import LSTM
    from keras_rnn.layers import SimpleRNN
    from keras_rnn.decoding import BeamState
    from keras_rnn.decoding import DecodeResult
    from keras_rnn.decoding import DecodingSettings
    from keras_rnn.decoding import beam_search
    from keras_rnn.decoding import gather_tree
    from keras_rnn.decoding import greedy_decode
    from keras_rnn.losses import SequenceLoss
    from keras_rnn.schedules import ScheduledSampling
    from keras_rnn.seq2seq_model import Seq2Seq
    from keras_rnn.tbptt import StatefulRNN
    from keras_rnn.tbptt import TBPTTResetStates
    from keras_rnn.tbptt import TBPTTSequence
    from keras_rnn.tbptt import chunked_forward
    from keras_rnn.tbptt import reset_rnn_states

    # The TF Addons annex (`keras_rnn/tfa/`): its cells at the top level too, and
    # the `tfa.rnn` / `tfa.seq2seq` namespaces, so `import keras_rnn as tfa` works.
    from keras_rnn.tfa.rnn import LayerNormLSTMCell
    from keras_rnn.tfa.rnn import LayerNormSimpleRNNCell
    from keras_rnn.tfa.rnn import PeepholeLSTMCell
    from keras_rnn import rnn
    from keras_rnn import seq2seq

__version__ = "0.1.0"

__all__ = [
    "AttentionMemory",
    "AttentionWrapper",
    "AttentionWrapperState",
    "BahdanauAttention",
    "BeamState",
    "DecodeResult",
    "DecodingSettings",
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "LayerNormGRUCell",
    "LayerNormLSTMCell",
    "LayerNormSimpleRNNCell",
    "LuongAttention",
    "PeepholeLSTMCell",
    "ScheduledSampling",
    "Seq2Seq",
    "SequenceLoss",
    "SimpleRNN",
    "SimpleRNNCell",
    "StatefulRNN",
    "TBPTTResetStates",
    "TBPTTSequence",
    "beam_search",
    "chunked_forward",
    "gather_tree",
    "greedy_decode",
    "reset_rnn_states",
]
