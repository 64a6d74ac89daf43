"""A fake exported translator with the SavedModel contract of `keras-rnn export`.

The fake "translates" by reversing each sentence (by Unicode characters), so
the server tests need no trained model and build in a second. It has the
same signatures, inputs, defaults, outputs, dtypes, in-graph validation and
`assets.extra/` files as `serving/export.py` writes:

    build_fake_model(base_dir / "fake" / "1")

- `serving_default`: `inputs` string `(batch,)` only (beam 2, max_length 20,
  n_best 1 baked in) -> `translations` `(batch, 1)`, `scores`, `lengths`.
- `translate_with_options`: `inputs`; int32 scalars `beam_size` (default
  2), `max_length` (default 20), `n_best` (default 1) -> `translations`
  `(batch, n_best)`, `scores`, `lengths`.
- `translate_with_alignments`: the inputs of `translate_with_options`, its
  outputs plus `alignments`
  `(batch, n_best, T, S)`, `source_pieces` `(batch, S)`, `target_pieces`
  `(batch, n_best, T)`, padded with "" / 0 to the batch's longest.

Hypothesis k of a sentence is `tag + reversed(sentence)[:max_length - 1]`
followed by `" #k"` for k > 0; its score is `-(k + 1) / beam_size`; its
pieces are its characters plus "</s>". Source pieces are the source
characters plus "</s>". Alignment row t is uniform over the source pieces.

`build_fake_model(..., legacy=True)` writes an export from before
`translate_with_options`: `serving_default` has the four inputs of
`translate_with_options` (with defaults), and there is no
`translate_with_options`.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np

from keras_rnn.serving.export import input_checks

FAKE_METADATA = {
    "beam_size": 2,
    "max_beam_size": 4,
    "max_length": 20,
    "max_length_limit": 50,
    "max_source_tokens": 40,
}
WARMUP_SENTENCES = ("Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.")


def _module(tag, settings, legacy=False):
    import tensorflow as tf

    module = tf.Module()
    defaults = (tf.constant(settings["beam_size"]), tf.constant(settings["max_length"]),
                tf.constant(1))
    specs = [tf.TensorSpec([None], tf.string, name="inputs"),
             tf.TensorSpec([], tf.int32, name="beam_size"),
             tf.TensorSpec([], tf.int32, name="max_length"),
             tf.TensorSpec([], tf.int32, name="n_best")]

    def translate(inputs, beam_size, max_length, n_best, alignments):
        checks = input_checks(inputs, beam_size, max_length, n_best,
                              settings["max_beam_size"], settings["max_length_limit"])
        with tf.control_dependencies(checks):
            chars = tf.strings.unicode_split(inputs, "UTF-8")  # ragged (batch, S)
            too_long = tf.debugging.assert_less_equal(
                tf.reduce_max(tf.concat([chars.row_lengths(), [0]], 0)),
                tf.cast(settings["max_source_tokens"], tf.int64),
                message=f"a sentence is longer than max_source_tokens="
                        f"{settings['max_source_tokens']} subword tokens")
        with tf.control_dependencies([too_long]):
            batch = tf.size(inputs)
            reversed_chars = tf.reverse(chars.to_tensor(""), axis=[1])
            # Keep the characters (reversing moved the padding to the front).
            body = tf.strings.reduce_join(reversed_chars, axis=1)
            body = tf.strings.unicode_split(body, "UTF-8")[:, :max_length - 1]
            k = tf.range(n_best)  # (n_best,)
            suffix = tf.where(k > 0, tf.strings.join([" #", tf.strings.as_string(k)]), "")
            text = tf.strings.reduce_join(body, axis=1)  # (batch,)
            shape = [batch, n_best]
            translations = tf.strings.join(
                [tf.fill(shape, tag), tf.broadcast_to(text[:, None], shape),
                 tf.broadcast_to(suffix[None, :], shape)])  # (batch, n_best)
            scores = tf.tile(
                -tf.cast(k + 1, tf.float32)[None, :] / tf.cast(beam_size, tf.float32),
                [batch, 1])  # (batch, n_best)
            pieces = tf.strings.unicode_split(tf.reshape(translations, [-1]), "UTF-8")
            pieces = tf.concat(
                [pieces, tf.RaggedTensor.from_tensor(tf.fill([batch * n_best, 1], "</s>"))],
                axis=1)  # ragged (batch * n_best, T)
            lengths = tf.reshape(tf.cast(pieces.row_lengths(), tf.int32), [batch, n_best])
            outputs = {"translations": translations, "scores": scores, "lengths": lengths}
            if alignments:
                source = tf.concat(
                    [chars, tf.RaggedTensor.from_tensor(tf.fill([batch, 1], "</s>"))], axis=1)
                source_pieces = source.to_tensor("")  # (batch, S)
                target_pieces = pieces.to_tensor("")  # (batch * n_best, T)
                time = tf.shape(target_pieces)[1]
                target_pieces = tf.reshape(target_pieces, [batch, n_best, time])
                source_mask = tf.cast(source_pieces != "", tf.float32)  # (batch, S)
                target_mask = tf.cast(target_pieces != "", tf.float32)  # (batch, n_best, T)
                rows = source_mask / tf.reduce_sum(source_mask, axis=1, keepdims=True)
                outputs["alignments"] = (target_mask[:, :, :, None]
                                         * rows[:, None, None, :])  # (batch, n_best, T, S)
                outputs["source_pieces"] = source_pieces
                outputs["target_pieces"] = target_pieces
            return outputs

    def serve(inputs):
        return translate(inputs, defaults[0], defaults[1], defaults[2], alignments=False)

    def serve_with_options(inputs, beam_size=defaults[0], max_length=defaults[1],
                           n_best=defaults[2]):
        return translate(inputs, beam_size, max_length, n_best, alignments=False)

    def serve_with_alignments(inputs, beam_size=defaults[0], max_length=defaults[1],
                              n_best=defaults[2]):
        return translate(inputs, beam_size, max_length, n_best, alignments=True)

    if legacy:
        module.serve = tf.function(serve_with_options, input_signature=specs)
    else:
        module.serve = tf.function(serve, input_signature=specs[:1])
        module.serve_with_options = tf.function(serve_with_options, input_signature=specs)
    module.serve_with_alignments = tf.function(serve_with_alignments, input_signature=specs)
    return module


def build_fake_model(version_dir, model_name="fake", tag="", legacy=False, **settings):
    """Writes a fake translator SavedModel to `version_dir` (atomically).

    Args:
        version_dir: the version directory to create, `BASE/NAME/VERSION`.
        model_name: the name written into the warm-up requests and metadata.
        tag: a prefix of every translation (tells versions apart).
        legacy: write an export from before `translate_with_options`
            (four inputs on `serving_default`).
        **settings: overrides of `FAKE_METADATA`.

    Returns:
        The `Path` of the version directory.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    settings = {**FAKE_METADATA, **settings}
    version_dir = Path(version_dir)
    temporary = version_dir.parent / f".{version_dir.name}.tmp-fake"
    shutil.rmtree(temporary, ignore_errors=True)
    module = _module(tag, settings, legacy)
    # The tf.functions themselves, not concrete functions: only then does
    # TensorFlow write the SignatureDefs' `defaults` map.
    signatures = {"serving_default": module.serve,
                  "translate_with_alignments": module.serve_with_alignments}
    if not legacy:
        signatures["translate_with_options"] = module.serve_with_options
    tf.saved_model.save(module, str(temporary), signatures=signatures)
    extra = temporary / "assets.extra"
    extra.mkdir()
    options = {"beam_size": settings["beam_size"], "max_length": settings["max_length"],
               "n_best": 1}
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        for signature in signatures:  # every input named, as TensorFlow Serving wants
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            request.inputs["inputs"].CopyFrom(
                tf.make_tensor_proto(list(WARMUP_SENTENCES), tf.string))
            if signature != "serving_default" or legacy:
                for name, value in options.items():
                    request.inputs[name].CopyFrom(tf.make_tensor_proto(value, tf.int32))
            writer.write(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())
    metadata = {"model_name": model_name, "source_lang": "de", "target_lang": "en",
                "parameters": 0, "fake": True, "tag": tag, **settings}
    (extra / "keras_rnn.json").write_text(json.dumps(metadata, indent=1) + "\n")
    os.rename(temporary, version_dir)
    return version_dir


def copy_version(source_dir, version_dir):
    """Copies a version directory into place the way an exporter does:
    into a hidden temporary name beside it, then one atomic rename."""
    version_dir = Path(version_dir)
    temporary = version_dir.parent / f".{version_dir.name}.tmp-copy"
    shutil.copytree(source_dir, temporary)
    os.rename(temporary, version_dir)
    return version_dir


def reversing_model(sentences):
    """A NumPy 'model' for the batcher's unit tests: each sentence (bytes)
    reversed, and its source pieces (one a byte, then `</s>`) padded to the
    batch's longest."""
    width = max(len(s) for s in sentences) + 1
    pieces = np.full((len(sentences), width), b"", dtype=object)
    for i, s in enumerate(sentences):
        pieces[i, :len(s)] = [bytes([c]) for c in s]
        pieces[i, len(s)] = b"</s>"
    return {"translations": np.array([s[::-1] for s in sentences], dtype=object),
            "source_pieces": pieces}
