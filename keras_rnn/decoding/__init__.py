"""Greedy and beam-search decoding as one compiled loop, and its pieces.

- `protocol`: what a model must provide to be decoded (`DecodingModel`)
  and the settings (`DecodingSettings`), in one place;
- `ops`: the pure pieces (scores, penalties, EOS rules, `tile_batch`,
  `gather_tree`, `top_k` with ties to the lower index), each unit-tested on
  hand-built values;
- `search`: `greedy_decode` and `beam_search`, each one `while_loop` over
  all sentences and beams of a batch;
- `batched`: the compiled (`tf.function` / `jax.jit`; eager on PyTorch),
  cached, length-sorted batched `decode` that `Seq2Seq.decode` runs.

Tests: `tests/keras_rnn/test_decoding.py`.
"""

from keras_rnn.decoding.batched import compile_decoder
from keras_rnn.decoding.batched import decode
from keras_rnn.decoding.ops import NEG_INF
from keras_rnn.decoding.ops import coverage_penalty
from keras_rnn.decoding.ops import gather_tree
from keras_rnn.decoding.ops import hypothesis_scores
from keras_rnn.decoding.ops import length_limits
from keras_rnn.decoding.ops import length_penalty
from keras_rnn.decoding.ops import restrict_log_probs
from keras_rnn.decoding.ops import tile_batch
from keras_rnn.decoding.ops import top_candidates
from keras_rnn.decoding.ops import top_k
from keras_rnn.decoding.protocol import DecodingModel
from keras_rnn.decoding.protocol import DecodingSettings
from keras_rnn.decoding.search import BeamState
from keras_rnn.decoding.search import DecodeResult
from keras_rnn.decoding.search import beam_search
from keras_rnn.decoding.search import greedy_decode
