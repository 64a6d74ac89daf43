"""TF Addons' `tfa.seq2seq` names, so `import keras_rnn as tfa` keeps
`tfa.seq2seq.BeamSearchDecoder(...)`, `tfa.seq2seq.sampler.TrainingSampler`,
... working.

The classes are the annex's (`keras_rnn/tfa/seq2seq/`): thin adapters over
the core. Their `BahdanauAttention`, `LuongAttention`, `AttentionWrapper`,
`SequenceLoss` and `gather_tree` are TF Addons' (memory set on the
mechanism, the wrapper an RNN cell, a weights-based loss, time-major
back-tracking) and differ from the core's top-level `keras_rnn.X` of the
same names. The core `Seq2Seq` model is `keras_rnn.Seq2Seq`
(`keras_rnn/seq2seq_model.py`). `docs/MIGRATION.md` lists every name.
"""

from keras_rnn.tfa.seq2seq import sampler
from keras_rnn.tfa.seq2seq.attention_mechanism import BahdanauAttention
from keras_rnn.tfa.seq2seq.attention_mechanism import LuongAttention
from keras_rnn.tfa.seq2seq.attention_mechanism import sequence_mask
from keras_rnn.tfa.seq2seq.attention_wrapper import AttentionWrapper
from keras_rnn.tfa.seq2seq.attention_wrapper import AttentionWrapperState
from keras_rnn.tfa.seq2seq.beam_search_decoder import BeamSearchDecoder
from keras_rnn.tfa.seq2seq.beam_search_decoder import BeamSearchDecoderOutput
from keras_rnn.tfa.seq2seq.beam_search_decoder import BeamSearchDecoderState
from keras_rnn.tfa.seq2seq.beam_search_decoder import FinalBeamSearchDecoderOutput
from keras_rnn.tfa.seq2seq.beam_search_decoder import gather_tree
from keras_rnn.tfa.seq2seq.beam_search_decoder import tile_batch
from keras_rnn.tfa.seq2seq.decoder import BasicDecoder
from keras_rnn.tfa.seq2seq.decoder import BasicDecoderOutput
from keras_rnn.tfa.seq2seq.decoder import dynamic_decode
from keras_rnn.tfa.seq2seq.loss import SequenceLoss
from keras_rnn.tfa.seq2seq.loss import sequence_loss
from keras_rnn.tfa.seq2seq.sampler import GreedyEmbeddingSampler
from keras_rnn.tfa.seq2seq.sampler import SampleEmbeddingSampler
from keras_rnn.tfa.seq2seq.sampler import Sampler
from keras_rnn.tfa.seq2seq.sampler import ScheduledEmbeddingTrainingSampler
from keras_rnn.tfa.seq2seq.sampler import TrainingSampler

__all__ = [
    "AttentionWrapper", "AttentionWrapperState", "BahdanauAttention",
    "BasicDecoder", "BasicDecoderOutput", "BeamSearchDecoder",
    "BeamSearchDecoderOutput", "BeamSearchDecoderState",
    "FinalBeamSearchDecoderOutput", "GreedyEmbeddingSampler",
    "LuongAttention", "SampleEmbeddingSampler", "Sampler",
    "ScheduledEmbeddingTrainingSampler", "SequenceLoss", "TrainingSampler",
    "dynamic_decode", "gather_tree", "sampler", "sequence_loss",
    "sequence_mask", "tile_batch",
]
