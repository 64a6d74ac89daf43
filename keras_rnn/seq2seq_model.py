"""`Seq2Seq`: an attention encoder-decoder as one Keras `Model`.

    source ids -> embedding -> stacked (bi)RNN encoder -> bridge
               -> AttentionWrapper decoder (input feeding) -> projection

Trained with teacher forcing through the ordinary `compile` / `fit` with
`SequenceLoss` (masked token-level cross-entropy, optional label
smoothing), optionally with scheduled sampling; decoded with
`greedy_decode` / `beam_search` (`keras_rnn.decoding`), which the model's
`decode` method compiles (`tf.function` / `jax.jit`).

References: Sutskever, Vinyals & Le 2014 (seq2seq); Bahdanau, Cho & Bengio
2015 and Luong, Pham & Manning 2015 (attention, input feeding); Press & Wolf
2017 (tied embeddings); Sennrich et al. 2017 (the conditional decoder);
Bengio et al. 2015 (scheduled sampling); Szegedy et al. 2016 (label
smoothing).

The decoder's training-time loop (teacher forcing, scheduled sampling) is in
`keras_rnn/teacher_forcing.py`, the input checks in
`keras_rnn/seq2seq_inputs.py`. (TF Addons' `tfa.seq2seq` API is
`keras_rnn.seq2seq`, a separate annex.) Tests: `tests/keras_rnn/test_seq2seq_model.py`.
"""

import keras
from keras import ops

from keras_rnn import decoding
from keras_rnn import seq2seq_inputs
from keras_rnn import teacher_forcing
from keras_rnn._checks import check_positive_int
from keras_rnn._checks import check_rate
from keras_rnn._checks import check_units
from keras_rnn._keras_private import autocast
from keras_rnn import _quantize
from keras_rnn.attention import BahdanauAttention
from keras_rnn.attention import LuongAttention
from keras_rnn.attention_wrapper import AttentionWrapper
from keras_rnn.attention_wrapper import state_sizes
from keras_rnn.cells import GRUCell
from keras_rnn.cells import LSTMCell
from keras_rnn.cells import SimpleRNNCell
from keras_rnn.decoding import DecodingSettings
from keras_rnn.layers import GRU
from keras_rnn.layers import LSTM
from keras_rnn.layers import SimpleRNN
from keras_rnn.schedules import ScheduledSampling

CELLS = {
    "lstm": (LSTM, LSTMCell),
    "gru": (GRU, GRUCell),
    "simple_rnn": (SimpleRNN, SimpleRNNCell),
}
ATTENTIONS = ("bahdanau", "luong")
DECODER_TYPES = ("input_feeding", "conditional")
BRIDGES = ("dense", "zeros")


@keras.saving.register_keras_serializable(package="keras_rnn")
class Seq2Seq(keras.Model):
    """Attention encoder-decoder for sequence-to-sequence tasks.

    Encoder: target-independent `Embedding` -> `encoder_layers` recurrent
    layers (`keras_rnn.LSTM` / `GRU` / `SimpleRNN`, each wrapped in
    `Bidirectional` with `bidirectional=True`, outputs concatenated),
    honouring the source padding mask. Bridge: the top encoder layer's final
    states (both directions concatenated) -> one `Dense` per decoder layer and
    state (tanh for `h`, linear for the LSTM's `c`), or zeros.
    Decoder: `AttentionWrapper` around `decoder_layers` stacked cells with
    input feeding; the attention vector `a_t = tanh(W_c [o_t; c_t])` is
    projected to the target vocabulary, by its own `Dense` or, with
    `tie_embeddings=True`, by the transposed target embedding (Press & Wolf
    2017; a linear map to `embedding_dim` is inserted when the widths differ).
    With `decoder_type="conditional"` the decoder is Nematus' conditional
    GRU instead (Sennrich et al. 2017): no input feeding; a second cell
    reads the context `c_t` and continues from the top cell's state before
    `a_t` (`AttentionWrapper`'s `conditional_cell`).

    Inputs of `call` (training with teacher forcing): a dict
    `{"source": (batch, S) ids, "target": (batch, T) ids}` (or a pair),
    `target` being the decoder input `[bos, y_1, ..., y_{T-1}]`; the output is
    `(batch, T, target_vocab_size)` logits for `[y_1, ..., y_T]`. Padding id
    `pad_id` marks the end of every sequence.

    Args:
        source_vocab_size, target_vocab_size: vocabulary sizes (ids in
            `[0, size)`).
        embedding_dim: width of both embeddings.
        units: decoder cell width (and attention layer width).
        encoder_units: encoder cell width per direction (default `units`).
        encoder_layers, decoder_layers: stack depths.
        bidirectional: bidirectional encoder layers.
        cell: "lstm", "gru" or "simple_rnn", for encoder and decoder.
        cell_options: dict of extra cell arguments for both sides
            (`layer_norm`, `dropout`, `recurrent_dropout`, `zoneout`,
            `reset_after`, ...).
        attention: "bahdanau" or "luong".
        attention_options: dict of extra mechanism arguments (`units`,
            `normalize`, `score_mode`, `scale`); Bahdanau's `units` defaults
            to `units`.
        attention_layer_size: width of `a_t`; None means `units`, 0 means
            no attention layer (`a_t` is the context vector `c_t`).
        tie_embeddings: share the target embedding with the projection.
        embedding_dropout: dropout on both embeddings' outputs.
        output_dropout: dropout on `a_t` before the projection.
        bridge: "dense" or "zeros".
        decoder_type: "input_feeding" (Luong et al. 2015) or "conditional"
            (Sennrich et al. 2017's cGRU: attention between two transitions).
        pad_id, bos_id, eos_id: special token ids (shared by both sides).
        max_source_length: longest source (in tokens) accepted, or None.
        scheduled_sampling: a `ScheduledSampling` (or its config) or None.
        decoding: dict of default decoding settings, saved with the model:
            `beam_size`, `n_best`, `max_length`, `max_length_ratio`,
            `max_length_offset`, `min_length`, `length_penalty_alpha`,
            `coverage_penalty_beta` (see `keras_rnn.beam_search`).
        seed: seed of the dropout and sampling noise.

    Example:

    >>> model = keras_rnn.Seq2Seq(100, 120, embedding_dim=32, units=64)
    >>> model({"source": np.ones((2, 7)), "target": np.ones((2, 5))}).shape
    (2, 5, 120)
    >>> model.compile("adam", keras_rnn.SequenceLoss(label_smoothing=0.1))
    >>> result = model.decode(source_ids, method="beam", beam_size=5)
    >>> result.ids.shape   # (batch, n_best, max_length)
    """

    def __init__(self, source_vocab_size, target_vocab_size, embedding_dim=256,
                 units=512, encoder_units=None, encoder_layers=1,
                 decoder_layers=1, bidirectional=True, cell="lstm",
                 cell_options=None, attention="bahdanau",
                 attention_options=None, attention_layer_size=None,
                 tie_embeddings=False, embedding_dropout=0.0,
                 output_dropout=0.0, bridge="dense",
                 decoder_type="input_feeding", pad_id=0, bos_id=1,
                 eos_id=2, max_source_length=None, scheduled_sampling=None,
                 decoding=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.source_vocab_size = check_positive_int("source_vocab_size", source_vocab_size)
        self.target_vocab_size = check_positive_int("target_vocab_size", target_vocab_size)
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        self.units = check_units(units)
        self.encoder_units = check_positive_int("encoder_units", encoder_units or units)
        self.encoder_layers = check_positive_int("encoder_layers", encoder_layers)
        self.decoder_layers = check_positive_int("decoder_layers", decoder_layers)
        self.bidirectional = bool(bidirectional)
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {tuple(CELLS)}; got {cell!r}.")
        self.cell = cell
        self.cell_options = dict(cell_options or {})
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}; got {attention!r}.")
        self.attention = attention
        self.attention_options = dict(attention_options or {})
        self.attention_layer_size = (
            self.units if attention_layer_size is None else int(attention_layer_size)
        )
        if self.attention_layer_size < 0:
            raise ValueError(
                f"attention_layer_size must be >= 0; got {attention_layer_size!r}."
            )
        self.tie_embeddings = bool(tie_embeddings)
        self.embedding_dropout = check_rate("embedding_dropout", embedding_dropout)
        self.output_dropout = check_rate("output_dropout", output_dropout)
        if bridge not in BRIDGES:
            raise ValueError(f"bridge must be one of {BRIDGES}; got {bridge!r}.")
        self.bridge = bridge
        if decoder_type not in DECODER_TYPES:
            raise ValueError(
                f"decoder_type must be one of {DECODER_TYPES}; got {decoder_type!r}."
            )
        self.decoder_type = decoder_type
        self.pad_id, self.bos_id, self.eos_id = int(pad_id), int(bos_id), int(eos_id)
        if len({self.pad_id, self.bos_id, self.eos_id}) != 3:
            raise ValueError(
                "pad_id, bos_id and eos_id must be different; got "
                f"{self.pad_id}, {self.bos_id}, {self.eos_id}."
            )
        for name in ("pad_id", "bos_id", "eos_id"):
            if not 0 <= getattr(self, name) < self.target_vocab_size:
                raise ValueError(
                    f"{name}={getattr(self, name)} is outside the target "
                    f"vocabulary [0, {self.target_vocab_size})."
                )
        if max_source_length is not None:
            max_source_length = check_positive_int("max_source_length", max_source_length)
        self.max_source_length = max_source_length
        if isinstance(scheduled_sampling, dict):
            scheduled_sampling = ScheduledSampling.from_config(scheduled_sampling)
        if scheduled_sampling is not None and not isinstance(
            scheduled_sampling, ScheduledSampling
        ):
            raise ValueError(
                "scheduled_sampling must be a ScheduledSampling, its config "
                f"dict, or None; got {scheduled_sampling!r}."
            )
        self.scheduled_sampling = scheduled_sampling
        if isinstance(decoding, DecodingSettings):
            self.decoding = decoding
        else:
            self.decoding = DecodingSettings.from_dict(decoding)
        self.seed = seed
        self._make_layers()

    # --------------------------------------------------------------- layers

    def _make_layers(self):
        layer_class, cell_class = CELLS[self.cell]
        options = dict(self.cell_options)
        seed = self.seed
        self.source_embedding = keras.layers.Embedding(
            self.source_vocab_size, self.embedding_dim, name="source_embedding"
        )
        self.target_embedding = keras.layers.Embedding(
            self.target_vocab_size, self.embedding_dim, name="target_embedding"
        )
        self.embedding_dropout_layer = keras.layers.Dropout(
            self.embedding_dropout, seed=seed, name="embedding_dropout"
        )
        self.output_dropout_layer = keras.layers.Dropout(
            self.output_dropout, seed=seed, name="output_dropout"
        )
        self.encoder_rnns = []
        for i in range(self.encoder_layers):
            rnn = layer_class(
                self.encoder_units, return_sequences=True, return_state=True,
                seed=seed, name=f"encoder_{i}", **options,
            )
            if self.bidirectional:
                rnn = keras.layers.Bidirectional(rnn, name=f"encoder_{i}_bidirectional")
            self.encoder_rnns.append(rnn)
        decoder_cells = [
            cell_class(self.units, seed=seed, name=f"decoder_cell_{i}", **options)
            for i in range(self.decoder_layers)
        ]
        attention_options = dict(self.attention_options)
        if self.attention == "bahdanau":
            attention_options.setdefault("units", self.units)
            mechanism = BahdanauAttention(name="attention", **attention_options)
        else:
            mechanism = LuongAttention(name="attention", **attention_options)
        conditional = self.decoder_type == "conditional"
        self.decoder = AttentionWrapper(
            decoder_cells, mechanism,
            attention_layer_size=self.attention_layer_size or None,
            input_feeding=not conditional,
            conditional_cell=cell_class(
                self.units, seed=seed, name="decoder_conditional_cell", **options
            ) if conditional else None,
            name="decoder",
        )
        n_states = len(state_sizes(decoder_cells[0]))
        self.bridge_layers = []
        if self.bridge == "dense":
            for layer in range(self.decoder_layers):
                for i in range(n_states):
                    # h (the first state) through tanh; an LSTM's c linear.
                    self.bridge_layers.append(keras.layers.Dense(
                        self.units, activation="tanh" if i == 0 else None,
                        name=f"bridge_{layer}_{i}",
                    ))
        self.pre_output = None
        if self.tie_embeddings and self.output_size != self.embedding_dim:
            self.pre_output = keras.layers.Dense(
                self.embedding_dim, use_bias=False, name="pre_output"
            )
        self.output_layer = None
        if not self.tie_embeddings:
            self.output_layer = keras.layers.Dense(
                self.target_vocab_size, name="output_projection"
            )
        self.sampling_seed = keras.random.SeedGenerator(seed, name="sampling_seed")

    @property
    def encoder_output_size(self):
        return self.encoder_units * (2 if self.bidirectional else 1)

    @property
    def output_size(self):
        """Width of the decoder output `a_t`."""
        return self.attention_layer_size or self.encoder_output_size

    def build(self, input_shape=None):
        emb = self.embedding_dim
        self.source_embedding.build((None, None))
        self.target_embedding.build((None, None))
        width = emb
        for rnn in self.encoder_rnns:
            rnn.build((None, None, width))
            width = self.encoder_output_size
        self.decoder.build((None, emb), self.encoder_output_size)
        state_width = self.encoder_output_size
        for dense in self.bridge_layers:
            dense.build((None, state_width))
        width = self.output_size
        if self.pre_output is not None:
            self.pre_output.build((None, width))
            width = self.embedding_dim
        if self.output_layer is not None:
            self.output_layer.build((None, width))
        else:
            self.output_bias = self.add_weight(
                name="output_bias", shape=(self.target_vocab_size,),
                initializer="zeros",
            )
        self.sampling_step = self.add_weight(
            name="sampling_step", shape=(), dtype="int32", initializer="zeros",
            trainable=False,
        )
        self.built = True

    # --------------------------------------------------------------- checks

    def check_source(self, source):
        """Raises ValueError for a source batch the model cannot decode.

        Checks the rank, an empty batch, sentences longer than
        `max_source_length` and ids outside the source vocabulary (values
        only when `source` is concrete, not inside a traced function).
        """
        seq2seq_inputs.check_source(source, self.source_vocab_size, self.pad_id,
                                    self.max_source_length)

    def decoding_settings(self, **overrides):
        """The model's `DecodingSettings` with the non-None `overrides`
        (the decoding protocol, `keras_rnn.decoding.protocol`)."""
        return self.decoding.replace(**overrides)

    # -------------------------------------------------------------- encoder

    def encode(self, source, training=False):
        """Runs the encoder and the bridge.

        Args:
            source: `(batch, S)` int ids padded with `pad_id`.
            training: Python bool.

        Returns:
            `(memory, state)`: the decoder's `AttentionMemory` and initial
            `AttentionWrapperState`.
        """
        with autocast(self):
            return self._encode(source, training)

    def _encode(self, source, training):
        source = ops.cast(source, "int32")
        mask = ops.not_equal(source, self.pad_id)  # (batch, S)
        x = self.embedding_dropout_layer(self.source_embedding(source), training=training)
        states = None
        for rnn in self.encoder_rnns:
            out = rnn(x, mask=mask, training=training)
            x, states = out[0], list(out[1:])
        memory = self.decoder.attention_mechanism.prepare(x, mask)
        cell_state = None
        if self.bridge == "dense":
            if self.bidirectional:
                half = len(states) // 2
                states = [
                    ops.concatenate([f, b], axis=-1)
                    for f, b in zip(states[:half], states[half:])
                ]
            n = len(states)
            cell_state = tuple(
                [self.bridge_layers[layer * n + i](s) for i, s in enumerate(states)]
                for layer in range(self.decoder_layers)
            )
        return memory, self.decoder.get_initial_state(memory, cell_state)

    # -------------------------------------------------------------- decoder

    def project(self, outputs, training=False):
        """Decoder outputs `(..., output_size)` -> logits `(..., vocab)`."""
        outputs = self.output_dropout_layer(outputs, training=training)
        if self.pre_output is not None:
            outputs = self.pre_output(outputs)
        return self._logits(outputs)

    def decode_step(self, tokens, state, memory):
        """One inference step of the decoder (the decoding protocol).

        Args:
            tokens: `(batch,)` int previous tokens.
            state: `AttentionWrapperState`.
            memory: `AttentionMemory`.

        Returns:
            `(logits, new_state)`, logits `(batch, target_vocab_size)`.
        """
        with autocast(self):
            x = self.target_embedding(tokens)  # (batch, emb)
            output, state = self.decoder.call(x, state, memory)
            return self.project(output), state

    def teacher_forced(self, source, target, training=False):
        """Runs encoder and decoder over a gold target prefix.

        Args:
            source: `(batch, S)` ids.
            target: `(batch, T)` decoder inputs `[bos, y_1, ..., y_{T-1}]`.
            training: Python bool (dropout, zoneout, scheduled sampling).

        Returns:
            `(logits, alignments)`: `(batch, T, vocab)` and the float32
            `(batch, T, S)` attention weights of each target step.
        """
        return self._teacher_forced(source, target, training, alignments=True)

    def _teacher_forced(self, source, target, training, alignments):
        # The JAX trainer's `stateless_call` opens no autocast scope.
        with autocast(self):
            return self._teacher_forced_loop(source, target, training, alignments)

    def _teacher_forced_loop(self, source, target, training, alignments):
        target = ops.cast(target, "int32")
        memory, state = self._encode(source, training)
        return teacher_forcing.decoder_loop(
            self, target, memory, state, training, alignments)

    def _logits(self, outputs):
        """Projected outputs -> logits, by the output layer or the tied
        embedding (no dropout: `teacher_forcing` masks it itself)."""
        if self.output_layer is not None:
            return self.output_layer(outputs)
        embeddings = ops.cast(self.target_embedding.embeddings, outputs.dtype)
        return ops.matmul(outputs, ops.transpose(embeddings)) + ops.cast(
            self.output_bias, outputs.dtype
        )

    def call(self, inputs, training=False):
        source, target = seq2seq_inputs.split_inputs(inputs)
        target_values = seq2seq_inputs.concrete(target)
        if target_values is not None:  # eager call: check the values
            seq2seq_inputs.check_ids("target", target_values, self.target_vocab_size)
            self.check_source(source)
        logits, _ = self._teacher_forced(source, target, bool(training), alignments=False)
        return logits

    # ------------------------------------------------------------- decoding

    def greedy_decode(self, source, **settings):
        """`keras_rnn.greedy_decode(self, source, **settings)`, eagerly."""
        return decoding.greedy_decode(self, source, **settings)

    def beam_search(self, source, **settings):
        """`keras_rnn.beam_search(self, source, **settings)`, eagerly."""
        return decoding.beam_search(self, source, **settings)

    def decode(self, source, method="beam", batch_size=None, **settings):
        """Decodes sentences with a compiled, cached decoder.

        `keras_rnn.decoding.decode(self, ...)`: the first call for a given
        method, settings and input shape compiles the whole search
        (`tf.function` on TensorFlow, `jax.jit` on JAX); later calls reuse
        it with the current weights. With `batch_size`, sentences are
        decoded in length-sorted chunks and returned in the input order.

        Args:
            source: `(batch, S)` int ids (NumPy or tensor), padded at the end.
            method: "beam" or "greedy".
            batch_size: sentences per compiled call, or None for all at once.
            **settings: overrides of the model's decoding settings.

        Returns:
            `DecodeResult` of NumPy arrays (with `batch_size`, `ids` and
            `alignments` padded to the longest chunk).
        """
        return decoding.decode(self, source, method, batch_size, **settings)

    def quantize(self, mode=None, config=None, filters=None, **kwargs):
        """`Model.quantize`, plus the recurrent cells (`"int8"`).

        Keras quantizes the embeddings and the `Dense` layers (bridge,
        attention layer, output projection) and the cells without sublayers;
        `keras_rnn._quantize.quantize_cells` then quantizes the cells it
        skips (those with `layer_norm=True`): kernels and recurrent kernels
        int8 with per-output-channel scales, inputs quantized per row,

            x @ W ~= (x_q @ W_q) / (s_x * s_W)

        The attention mechanism's own kernels (`query_kernel`,
        `memory_kernel`, `attention_v`) stay float. Compiled decoders are
        dropped, so the next `decode` traces the quantized model.

        Args:
            mode, config, filters, **kwargs: as `keras.Model.quantize`.
        """
        super().quantize(mode, config=config, filters=filters, **kwargs)
        _quantize.quantize_cells(self, mode, config=config, filters=filters)
        self.__dict__.pop("_decoder_cache", None)

    # --------------------------------------------------------------- config

    def get_config(self):
        return {
            **super().get_config(),
            "source_vocab_size": self.source_vocab_size,
            "target_vocab_size": self.target_vocab_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "encoder_units": self.encoder_units,
            "encoder_layers": self.encoder_layers,
            "decoder_layers": self.decoder_layers,
            "bidirectional": self.bidirectional,
            "cell": self.cell,
            "cell_options": dict(self.cell_options),
            "attention": self.attention,
            "attention_options": dict(self.attention_options),
            "attention_layer_size": self.attention_layer_size,
            "tie_embeddings": self.tie_embeddings,
            "embedding_dropout": self.embedding_dropout,
            "output_dropout": self.output_dropout,
            "bridge": self.bridge,
            **({"decoder_type": self.decoder_type}
               if self.decoder_type != "input_feeding" else {}),
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
            "max_source_length": self.max_source_length,
            "scheduled_sampling": (
                self.scheduled_sampling.get_config()
                if self.scheduled_sampling is not None else None
            ),
            "decoding": self.decoding.to_dict(),
            "seed": self.seed,
            # After `quantize`: which layers are int8 (`keras_rnn._quantize`).
            **({"quantization": entries} if (
                entries := _quantize.quantization_entries(self)) else {}),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        quantization = config.pop("quantization", None)
        model = cls(**config)
        _quantize.apply_quantization_entries(model, quantization)
        return model
