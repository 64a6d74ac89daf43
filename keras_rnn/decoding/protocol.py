"""What a model must provide to be decoded, and the decoding settings.

The decoding protocol, in one place. `greedy_decode`, `beam_search` and the
compiled, batched `decode` (`keras_rnn.decoding`) work on any model with
these members; `keras_rnn.Seq2Seq` implements them, and the tests' scripted
model shows the minimum:

    memory, state = model.encode(source, training=False)      # once per batch
    logits, state = model.decode_step(tokens, state, memory)  # once per step
    model.check_source(source)                     # raises for a bad batch
    settings = model.decoding_settings(**overrides)  # a `DecodingSettings`
    model.pad_id, model.bos_id, model.eos_id, model.target_vocab_size

See `DecodingModel` for the shapes. `decode` also reads `model.built`,
`model.build()` and `model.variables` (a Keras model has them).

Attention is optional: a decoder state without an `alignments` field (a
plain LSTM's `[h, c]`, a GRU's `h`, any nest of tensors) decodes with zero
alignments (the coverage penalty is then 0). `keras_rnn.seq2seq.BeamSearchDecoder`
(TF Addons' API) is itself a client of this protocol, so every `keras.layers`
RNN cell decodes through the one beam search.

A minimal attention-free model (`tests/keras_rnn/test_decoding.py` runs it):

    class LSTMDecoder:
        pad_id, bos_id, eos_id, target_vocab_size = 0, 1, 2, 10

        def encode(self, source, training=False):
            mask = ops.not_equal(source, self.pad_id)
            values = self.encoder(self.embed(source), mask=mask)  # (B, S, d)
            h, c = final states of the encoder
            return AttentionMemory(values, None, mask), [h, c]

        def decode_step(self, tokens, state, memory):
            h, [h, c] = self.cell(self.embed_target(tokens), state)
            return self.project(h), [h, c]

        def check_source(self, source):
            pass

        def decoding_settings(self, **overrides):
            return DecodingSettings(beam_size=4).replace(**overrides)
"""

import dataclasses
from typing import Optional
from typing import Protocol

import numpy as np

from keras import ops

from keras_rnn._checks import check_positive_int


class DecodingModel(Protocol):
    """The decoding protocol (a `typing.Protocol`: documentation and type
    hints; nothing checks it at run time).

    Attributes:
        pad_id: target id that is padding; never generated.
        bos_id: target id fed at the first step; never generated.
        eos_id: target id that ends a hypothesis.
        target_vocab_size: number of target ids (the width of the logits).
    """

    pad_id: int
    bos_id: int
    eos_id: int
    target_vocab_size: int

    def encode(self, source, training=False):
        """Runs the encoder once per batch.

        Args:
            source: `(batch, source_time)` int32 ids padded with `pad_id`.
            training: False when decoding.

        Returns:
            `(memory, state)`: `memory` is an `AttentionMemory` (its `values`
            `(batch, source_time, dim)` and `mask` `(batch, source_time)` set
            the source lengths; `keys` may be None, and beam search tiles
            every tensor of it along the batch axis); `state` is any
            structure of tensors with leading dimension `batch` (beam search
            tiles and gathers every tensor of it along the batch axis). When
            it has an `alignments` field, `(batch, source_time)` float32,
            those are the step's attention weights (returned, and used by
            the coverage penalty); without one they are zeros.
        """

    def decode_step(self, tokens, state, memory):
        """One inference step of the decoder.

        Args:
            tokens: `(batch,)` int32 previous tokens (`bos_id` at first).
            state: the decoder state from `encode` or the previous step.
            memory: the `AttentionMemory` from `encode`.

        Returns:
            `(logits, new_state)`, logits `(batch, target_vocab_size)`.
        """

    def check_source(self, source):
        """Raises `ValueError` for a source batch the model cannot decode."""

    def decoding_settings(self, **overrides):
        """The model's `DecodingSettings` with the non-None `overrides`."""


@dataclasses.dataclass(frozen=True)
class DecodingSettings:
    """The settings of greedy and beam-search decoding, checked on creation.

    A `Seq2Seq` saves its defaults with the model (`Seq2Seq(decoding={...})`)
    and every decoding call may override them (`beam_search(model, source,
    beam_size=3)`).

    Attributes:
        beam_size: hypotheses kept per sentence (>= 1; 1 is greedy).
        n_best: hypotheses returned per sentence, in `[1, beam_size]`.
        max_length: most tokens generated, including EOS (an int >= 1, or a
            scalar int32 tensor: an exported graph's input).
        max_length_ratio: `a` of the per-sentence limit
            `min(max_length, ceil(a * |x|) + b)`, or None for `max_length`
            only.
        max_length_offset: `b` of that limit.
        min_length: fewest tokens generated, including EOS.
        length_penalty_alpha: GNMT length-penalty alpha (0 = none).
        coverage_penalty_beta: GNMT coverage-penalty beta (0 = none).

    Example:

    >>> settings = DecodingSettings(beam_size=4)
    >>> settings.replace(n_best=2, max_length=None).n_best  # None keeps
    2
    """

    beam_size: int = 5
    n_best: int = 1
    max_length: object = 100
    max_length_ratio: Optional[float] = None
    max_length_offset: int = 0
    min_length: int = 0
    length_penalty_alpha: float = 0.0
    coverage_penalty_beta: float = 0.0

    def __post_init__(self):
        check_positive_int("beam_size", self.beam_size)
        # A scalar int tensor `max_length` (an exported graph's input) is
        # checked by the graph that feeds it.
        static_max_length = not ops.is_tensor(self.max_length)
        if static_max_length:
            check_positive_int("max_length", self.max_length)
        if check_positive_int("n_best", self.n_best) > self.beam_size:
            raise ValueError(
                f"n_best must be an integer in [1, beam_size={self.beam_size}]; "
                f"got {self.n_best!r}."
            )
        min_length = self.min_length
        if not isinstance(min_length, (int, np.integer)) or min_length < 0:
            raise ValueError(
                f"min_length must be an integer >= 0; got {min_length!r}."
            )
        if static_max_length and min_length > self.max_length:
            raise ValueError(
                f"min_length={min_length} is larger than "
                f"max_length={self.max_length}."
            )
        ratio = self.max_length_ratio
        if ratio is not None and not ratio > 0:
            raise ValueError(
                f"max_length_ratio must be > 0 or None; got {ratio!r}."
            )

    @classmethod
    def names(cls):
        """The names of the settings, in declaration order."""
        return [field.name for field in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, settings):
        """Builds settings from a dict (a saved config), naming unknown keys."""
        unknown = set(settings or {}) - set(cls.names())
        if unknown:
            raise ValueError(
                f"Unknown decoding settings {sorted(unknown)}; known: "
                f"{sorted(cls.names())}."
            )
        return cls(**(settings or {}))

    def replace(self, **overrides):
        """These settings with the non-None `overrides` (checked)."""
        for key in overrides:
            if key not in self.names():
                raise ValueError(f"Unknown decoding setting {key!r}.")
        changes = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **changes) if changes else self

    def to_dict(self):
        """The settings as a plain dict (for configs and JSON)."""
        return dataclasses.asdict(self)
