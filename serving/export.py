"""`keras-rnn export RUN BASE_DIR`: a trained translator as a SavedModel.

The SavedModel maps raw text to raw text: SentencePiece tokenization (TF
Text's `SentencepieceOp`/`SentencepieceTokenizeOp`), the encoder, beam
search as one `while` loop (`keras_rnn.beam_search`), `gather_tree` in core
ops and detokenization (`SentencepieceDetokenizeOp`) all run inside the
graph, so stock TensorFlow Serving serves it with no client-side
tokenization and no custom or Python ops (`tests/serving/test_export.py`
lists every op of the graph).

Layout, as TensorFlow Serving expects it:

    BASE_DIR/MODEL_NAME/VERSION/saved_model.pb
                               variables/
                               assets.extra/tf_serving_warmup_requests
                               assets.extra/keras_rnn.json

A version is written to a hidden temporary directory beside it and renamed
into place, so a server polling `BASE_DIR/MODEL_NAME` never sees half of one.

Signatures (method `tensorflow/serving/predict`):

- `serving_default`: `inputs` (string `(batch,)`) only, so that stock
  TensorFlow Serving, which wants every input of a signature in a request,
  answers `{"instances": ["Hallo"]}`; decodes with the export's settings
  (`beam_size`, `max_length`, `n_best` 1) and returns `translations`
  (string `(batch, 1)`), `scores` (float32, GNMT-normalised
  log-probabilities) and `lengths` (int32 target tokens including EOS).
- `translate_with_options`: `inputs` and the scalar int32 `beam_size`,
  `max_length` and `n_best` (the export's settings are the SignatureDef's
  `defaults`; TensorFlow Serving wants all four); returns the same
  outputs, `(batch, n_best)`, best first.
- `translate_with_alignments`: the inputs of `translate_with_options`; its
  outputs plus `alignments` (`(batch, n_best, T, S)` attention weights),
  `source_pieces` (`(batch, S)`, the subwords and `</s>` the weights refer
  to) and `target_pieces` (`(batch, n_best, T)`), padded with "".

The warm-up requests name every input of their signature, as TensorFlow
Serving replays them.

The graph rejects bad input with `InvalidArgumentError` (TensorFlow Serving
answers INVALID_ARGUMENT): an empty batch, invalid UTF-8, a sentence longer
than `max_source_tokens` subwords, `beam_size` outside
`[1, max_beam_size]`, `n_best` outside `[1, beam_size]`, `max_length`
outside `[1, max_length_limit]`.

`--quantize int8` (`ExportConfig.quantize`) quantizes the loaded model with
`Seq2Seq.quantize("int8")` before the graph is traced: the kernels and
recurrent kernels of the cells, the `Dense` kernels and the embeddings are
int8 variables of the SavedModel (per-output-channel float32 scales beside
them), the matmuls int8 x int8 -> int32 (`MatMul` with an int32 output, a
core op), and `keras_rnn.json` says `"quantization": "int8"` ("float32"
otherwise).

The export runs on the TensorFlow backend (it loads the weights of a model
trained on either backend, on any device; the Keras file is
backend-neutral) and on the CPU: the model's own recurrent loops use no
cuDNN kernels, so the graph has none.
"""

import json
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from keras_rnn._backend import require_tensorflow
from keras_rnn.serving import contract
from keras_rnn.serving.config import DEFAULT_MAX_BEAM_SIZE, QUANTIZE_MODES, ExportConfig
from keras_rnn.serving.contract import (ALIGNMENTS, LENGTHS, SCORES, SOURCE_PIECES,
                                        TARGET_PIECES, TRANSLATIONS)

SIGNATURE_KEY = contract.DEFAULT_SIGNATURE
OPTIONS_SIGNATURE_KEY = contract.OPTIONS_SIGNATURE
ALIGNMENTS_SIGNATURE_KEY = contract.ALIGNMENTS_SIGNATURE
WARMUP_SENTENCES = ("Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.")


def next_version(model_dir):
    """1 + the highest integer version directory in `model_dir` (1 if none)."""
    model_dir = Path(model_dir)
    versions = [int(p.name) for p in model_dir.iterdir()
                if p.is_dir() and re.fullmatch(r"\d+", p.name)] if model_dir.exists() else []
    return max(versions, default=0) + 1


def input_checks(inputs, beam_size, max_length, n_best, max_beam_size, max_length_limit):
    """The signatures' input checks, as assertion ops.

    Each fails with an `InvalidArgumentError` (gRPC INVALID_ARGUMENT) whose
    message names the input: an empty batch, invalid UTF-8, `beam_size`
    outside `[1, max_beam_size]`, `n_best` outside `[1, beam_size]`,
    `max_length` outside `[1, max_length_limit]`.

    Args:
        inputs: string `(batch,)` sentences.
        beam_size, max_length, n_best: int32 scalar tensors.
        max_beam_size, max_length_limit: the export's Python int bounds.

    Returns:
        The list of assertion ops (for `tf.control_dependencies`).
    """
    import tensorflow as tf

    return [
        tf.debugging.assert_positive(tf.size(inputs),
                                     message="the batch of sentences is empty"),
        tf.debugging.assert_equal(
            tf.strings.unicode_transcode(inputs, "UTF-8", "UTF-8", errors="strict"),
            inputs, message="a sentence is not valid UTF-8"),
        tf.debugging.assert_greater_equal(beam_size, 1, message="beam_size must be >= 1"),
        tf.debugging.assert_less_equal(
            beam_size, max_beam_size,
            message=f"beam_size must be <= max_beam_size={max_beam_size}"),
        tf.debugging.assert_greater_equal(n_best, 1, message="n_best must be >= 1"),
        tf.debugging.assert_less_equal(n_best, beam_size,
                                       message="n_best must be <= beam_size"),
        tf.debugging.assert_greater_equal(max_length, 1, message="max_length must be >= 1"),
        tf.debugging.assert_less_equal(
            max_length, max_length_limit,
            message=f"max_length must be <= max_length_limit={max_length_limit}"),
    ]


class TranslatorModule:
    """Builds the `tf.Module` whose signatures translate text.

    Args:
        model: a built `keras_rnn.Seq2Seq` (TensorFlow backend).
        source_tokenizer, target_tokenizer: `keras_rnn.training.tokenizer.Tokenizer`.
        beam_size: the beam size of `serving_default`, the default
            `beam_size` input of the other signatures.
        max_beam_size: the largest `beam_size` the graph accepts; the
            signatures with options hold one beam search per size
            (`tf.switch_case`).
        max_length: the `max_length` (target tokens) of `serving_default`,
            the default `max_length` input of the other signatures.
        max_length_limit: the largest `max_length` the graph accepts.
        max_source_tokens: the longest source sentence accepted, in
            subwords (EOS excluded).

    Attributes:
        module: the `tf.Module` to save; `module.signatures()` returns the
            signature dict for `tf.saved_model.save`.
    """

    def __init__(self, model, source_tokenizer, target_tokenizer, beam_size,
                 max_beam_size, max_length, max_length_limit, max_source_tokens):
        import tensorflow as tf

        from keras_rnn._checks import check_positive_int

        for name, value in [("beam_size", beam_size), ("max_beam_size", max_beam_size),
                            ("max_length", max_length),
                            ("max_length_limit", max_length_limit),
                            ("max_source_tokens", max_source_tokens)]:
            check_positive_int(name, value)
        if beam_size > max_beam_size:
            raise ValueError(f"beam_size={beam_size} is larger than max_beam_size={max_beam_size}.")
        if max_length > max_length_limit:
            raise ValueError(
                f"max_length={max_length} is larger than max_length_limit={max_length_limit}.")
        self.model = model
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.max_beam_size = max_beam_size
        self.max_length_limit = max_length_limit
        self.max_source_tokens = max_source_tokens

        module = tf.Module()
        module.model = model
        # The TF Text tokenizers hold the SentencePiece resources: tracked so
        # that the SavedModel re-creates them when it is loaded.
        module.source_tokenizer = source_tokenizer._tf_tokenizer()
        module.target_tokenizer = target_tokenizer._tf_tokenizer()
        specs = dict(
            inputs=tf.TensorSpec([None], tf.string, name=contract.SENTENCES_INPUT),
            beam_size=tf.TensorSpec([], tf.int32, name=contract.BEAM_SIZE),
            max_length=tf.TensorSpec([], tf.int32, name=contract.MAX_LENGTH),
            n_best=tf.TensorSpec([], tf.int32, name=contract.N_BEST),
        )
        defaults = (tf.constant(beam_size), tf.constant(max_length), tf.constant(1))

        def serve(inputs):
            return self.translate(inputs, beam_size, tf.constant(max_length), 1,
                                  alignments=False)

        def serve_with_options(inputs, beam_size=defaults[0], max_length=defaults[1],
                               n_best=defaults[2]):
            return self.translate(inputs, beam_size, max_length, n_best, alignments=False)

        def serve_with_alignments(inputs, beam_size=defaults[0], max_length=defaults[1],
                                  n_best=defaults[2]):
            return self.translate(inputs, beam_size, max_length, n_best, alignments=True)

        signature = list(specs.values())
        module.serve = tf.function(serve, input_signature=signature[:1])
        module.serve_with_options = tf.function(serve_with_options, input_signature=signature)
        module.serve_with_alignments = tf.function(serve_with_alignments,
                                                   input_signature=signature)
        self.module = module

    def signatures(self):
        """The `signatures` argument of `tf.saved_model.save`.

        The `tf.function`s themselves, not their concrete functions: only
        then does TensorFlow write the Python defaults of `beam_size`,
        `max_length` and `n_best` into the SignatureDefs' `defaults`.

        Returns:
            dict of signature key -> `tf.function`.
        """
        return {
            SIGNATURE_KEY: self.module.serve,
            OPTIONS_SIGNATURE_KEY: self.module.serve_with_options,
            ALIGNMENTS_SIGNATURE_KEY: self.module.serve_with_alignments,
        }

    # ------------------------------------------------------------ the graph

    def _source_ids(self, inputs):
        """Sentences -> `(batch, S)` int32 ids with EOS, padded."""
        import tensorflow as tf

        from keras_rnn.training.tokenizer import PAD_ID, add_eos

        ragged = self.source_tokenizer.tf_encode(inputs)
        lengths = ragged.row_lengths()
        too_long = tf.debugging.assert_less_equal(
            tf.reduce_max(tf.concat([lengths, [0]], 0)),
            tf.cast(self.max_source_tokens, lengths.dtype),
            message=f"a sentence is longer than max_source_tokens={self.max_source_tokens} "
                    "subword tokens")
        with tf.control_dependencies([too_long]):
            return add_eos(ragged).to_tensor(default_value=PAD_ID)

    def _beam(self, source, beam_size, max_length, alignments):
        """One beam search of fixed `beam_size`, padded to `max_beam_size`;
        its attention weights are zeros unless `alignments`."""
        import tensorflow as tf

        from keras_rnn import decoding
        from keras_rnn.training.tokenizer import PAD_ID

        result = decoding.beam_search(self.model, source, beam_size=beam_size,
                                      n_best=beam_size, max_length=max_length,
                                      alignments=alignments)
        missing = self.max_beam_size - beam_size

        def pad(x, value):
            paddings = [[0, 0], [0, missing]] + [[0, 0]] * (len(x.shape) - 2)
            return tf.pad(x, paddings, constant_values=value)

        return (pad(result.ids, PAD_ID), pad(result.scores, float("-inf")),
                pad(result.lengths, 0), pad(result.alignments, 0.0))

    def translate(self, inputs, beam_size, max_length, n_best, alignments):
        """The body of the signatures (traced by `tf.function`).

        Args:
            inputs: string `(batch,)` sentences.
            beam_size: an int32 scalar tensor (one beam search per size
                under `tf.switch_case`), or a Python int (that one search).
            max_length, n_best: int32 scalar tensors (or Python ints).
            alignments: also return the alignment outputs.

        Returns:
            dict of output name -> tensor.
        """
        import tensorflow as tf

        checks = input_checks(inputs, beam_size, max_length, n_best,
                              self.max_beam_size, self.max_length_limit)
        with tf.control_dependencies(checks):
            source = self._source_ids(inputs)
            if isinstance(beam_size, int):  # serving_default: the export's beam only
                ids, scores, lengths, weights = self._beam(source, beam_size, max_length,
                                                           alignments)
            else:
                branches = [
                    (lambda k=k: self._beam(source, k, max_length, alignments))
                    for k in range(1, self.max_beam_size + 1)
                ]
                ids, scores, lengths, weights = tf.switch_case(beam_size - 1, branches)
        ids, scores, lengths = ids[:, :n_best], scores[:, :n_best], lengths[:, :n_best]
        batch, time = tf.shape(ids)[0], tf.shape(ids)[2]
        flat_ids = tf.reshape(ids, [-1, time])
        texts = self.target_tokenizer.tf_decode(flat_ids)
        outputs = {
            TRANSLATIONS: tf.reshape(texts, [batch, n_best]),
            SCORES: scores,
            LENGTHS: lengths,
        }
        if alignments:
            outputs[ALIGNMENTS] = weights[:, :n_best]
            outputs[SOURCE_PIECES] = self._pieces(
                self.source_tokenizer, source, tf.not_equal(source, 0))
            steps = tf.range(time)[None, None, :]
            outputs[TARGET_PIECES] = self._pieces(
                self.target_tokenizer, ids, steps < lengths[:, :, None])
        return outputs

    @staticmethod
    def _pieces(tokenizer, ids, keep):
        """Ids -> subword strings ("" where `keep` is False)."""
        import tensorflow as tf

        pieces = tokenizer._tf_tokenizer().id_to_string(ids)
        return tf.where(keep, pieces, tf.zeros_like(pieces))


def warmup_requests(model_name, options, sentences=WARMUP_SENTENCES):
    """TensorFlow Serving warm-up records (`PredictionLog`s), serialized.

    One request per signature, naming every input of it: TensorFlow Serving
    replays them as they are, and fails to load a version whose warm-up
    request lacks an input.

    Args:
        model_name: the model name of the requests.
        options: {"beam_size": int, "max_length": int, "n_best": int}, the
            scalar inputs of the signatures that have them (the export's
            defaults).
        sentences: the source sentences of each request.

    Returns:
        A list of serialized `PredictionLog`s.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    records = []
    for signature in (SIGNATURE_KEY, OPTIONS_SIGNATURE_KEY, ALIGNMENTS_SIGNATURE_KEY):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = signature
        request.inputs[contract.SENTENCES_INPUT].CopyFrom(
            tf.make_tensor_proto(list(sentences), tf.string))
        if signature != SIGNATURE_KEY:
            for name in contract.SCALAR_INPUTS:
                request.inputs[name].CopyFrom(tf.make_tensor_proto(options[name], tf.int32))
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request))
        records.append(log.SerializeToString())
    return records


def export(run_dir, base_dir, config=None, warmup_sentences=WARMUP_SENTENCES):
    """Exports a trained run as `base_dir/model_name/version/`.

    Args:
        run_dir: a training run directory (its `model/` is exported), or
            a model directory such as `keras-rnn average`'s.
        base_dir: the model base directory a server watches.
        config: an `ExportConfig` (name, version, beam and length limits;
            default: `ExportConfig()`).
        warmup_sentences: source sentences of the warm-up requests.

    Returns:
        The `Path` of the new version directory.

    Raises:
        FileExistsError: the version exists (versions are immutable).
        FileNotFoundError: the run has no trained model.
        RuntimeError: Keras runs on another backend than TensorFlow.
        ValueError: a setting is invalid (`quantize` not in
            `QUANTIZE_MODES`, a bad name, version or beam).
    """
    config = config or ExportConfig()
    if config.quantize is not None and config.quantize not in QUANTIZE_MODES:
        raise ValueError(f"--quantize {config.quantize!r}: the modes are "
                         f"{', '.join(QUANTIZE_MODES)} (default: float32).")
    require_tensorflow("keras-rnn export")
    import tensorflow as tf

    from keras_rnn.training.evaluate import Translator

    translator = Translator(run_dir)
    model, run_config = translator.model, translator.config
    model_name = config.model_name or run_config.name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", model_name):
        raise ValueError(f"model_name {model_name!r}: use letters, digits, '_', '.', '-'.")
    model_dir = Path(base_dir) / model_name
    version = next_version(model_dir) if config.version is None else config.version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer; got {version!r}.")
    final = model_dir / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists; versions are immutable (pick another).")
    if config.quantize:  # before tracing: the graph holds the int8 variables
        with warnings.catch_warnings():  # "Layer Dropout does not have a `quantize` method"
            warnings.filterwarnings("ignore", message=".*does not have a `quantize` method")
            model.quantize(config.quantize)
    settings = model.decoding_settings()
    beam_size = config.beam_size or settings.beam_size
    max_beam_size = config.max_beam_size or max(DEFAULT_MAX_BEAM_SIZE, beam_size)
    max_length = config.max_length or settings.max_length
    max_length_limit = config.max_length_limit or max_length
    max_source_tokens = (config.max_source_tokens or model.max_source_length
                         or 4 * run_config.data.max_length)
    exporter = TranslatorModule(
        model, translator.source_tokenizer, translator.target_tokenizer,
        beam_size=beam_size, max_beam_size=max_beam_size, max_length=max_length,
        max_length_limit=max_length_limit, max_source_tokens=max_source_tokens)

    model_dir.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=model_dir))
    os.chmod(temporary, 0o755)  # mkdtemp makes it 0700; servers may run as another user
    try:
        start = time.perf_counter()
        tf.saved_model.save(exporter.module, str(temporary),
                            signatures=exporter.signatures())
        (temporary / contract.ASSETS_EXTRA).mkdir()
        with tf.io.TFRecordWriter(str(temporary / contract.WARMUP_FILE)) as writer:
            options = {contract.BEAM_SIZE: beam_size, contract.MAX_LENGTH: max_length,
                       contract.N_BEST: 1}
            for record in warmup_requests(model_name, options, warmup_sentences):
                writer.write(record)
        metadata = {
            "model_name": model_name, "version": version,
            "source_lang": run_config.data.source_lang,
            "target_lang": run_config.data.target_lang,
            "beam_size": beam_size, "max_beam_size": max_beam_size,
            "max_length": max_length, "max_length_limit": max_length_limit,
            "max_source_tokens": max_source_tokens,
            "length_penalty_alpha": settings.length_penalty_alpha,
            "quantization": config.quantize or "float32",
            "parameters": model.count_params(), "run": str(Path(run_dir).resolve()),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "export_seconds": round(time.perf_counter() - start, 1),
        }
        (temporary / contract.METADATA_FILE).write_text(json.dumps(metadata, indent=1) + "\n")
        os.rename(temporary, final)  # atomic: the version appears whole
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final
