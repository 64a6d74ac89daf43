"""TF Addons' `tfa.seq2seq` API over the keras_rnn core, re-exported by
`keras_rnn.seq2seq` (where a TF Addons user looks: `tfa.seq2seq.X` becomes
`keras_rnn.seq2seq.X`).

Thin adapters: the attention scores, the attention-wrapper step, the beam
search and the loss are the core's (`keras_rnn.attention`,
`keras_rnn.attention_wrapper`, `keras_rnn.decoding`, `keras_rnn.losses`);
these modules add TF Addons' names, argument orders and calling conventions.
`docs/MIGRATION.md` lists every name and each remaining difference.
"""

from keras_rnn.tfa_seq2seq import sampler
from keras_rnn.tfa_seq2seq.attention_wrapper import AttentionWrapper
from keras_rnn.tfa_seq2seq.attention_wrapper import AttentionWrapperState
from keras_rnn.tfa_seq2seq.attention_wrapper import BahdanauAttention
from keras_rnn.tfa_seq2seq.attention_wrapper import LuongAttention
from keras_rnn.tfa_seq2seq.attention_wrapper import sequence_mask
from keras_rnn.tfa_seq2seq.beam_search_decoder import BeamSearchDecoder
from keras_rnn.tfa_seq2seq.beam_search_decoder import BeamSearchDecoderOutput
from keras_rnn.tfa_seq2seq.beam_search_decoder import BeamSearchDecoderState
from keras_rnn.tfa_seq2seq.beam_search_decoder import FinalBeamSearchDecoderOutput
from keras_rnn.tfa_seq2seq.beam_search_decoder import gather_tree
from keras_rnn.tfa_seq2seq.beam_search_decoder import tile_batch
from keras_rnn.tfa_seq2seq.decoder import BasicDecoder
from keras_rnn.tfa_seq2seq.decoder import BasicDecoderOutput
from keras_rnn.tfa_seq2seq.decoder import dynamic_decode
from keras_rnn.tfa_seq2seq.loss import SequenceLoss
from keras_rnn.tfa_seq2seq.loss import sequence_loss
from keras_rnn.tfa_seq2seq.sampler import GreedyEmbeddingSampler
from keras_rnn.tfa_seq2seq.sampler import SampleEmbeddingSampler
from keras_rnn.tfa_seq2seq.sampler import Sampler
from keras_rnn.tfa_seq2seq.sampler import ScheduledEmbeddingTrainingSampler
from keras_rnn.tfa_seq2seq.sampler import TrainingSampler

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
