"""`keras-rnn export`: the SavedModel translates like the trained model, with
core TensorFlow and TF Text ops only, and versions appear atomically.

The model is trained on this run's backend (`trained_run`) and exported on
TensorFlow (`exported_model`): under `KERAS_BACKEND=jax` these tests check
that a JAX-trained model exports and translates the same.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.support import BACKEND, MULTI30K, ROOT, cli

tf = pytest.importorskip("tensorflow")

FORBIDDEN = {"PyFunc", "PyFuncStateless", "EagerPyFunc", "CudnnRNN", "CudnnRNNV2",
             "CudnnRNNV3", "CudnnRNNBackprop", "CudnnRNNBackpropV2", "CudnnRNNBackpropV3",
             "CudnnRNNParamsSize", "CudnnRNNParamsToCanonical", "CudnnRNNCanonicalToParams"}


def sentences(n=8):
    lines = (MULTI30K / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    return lines[:n]


@pytest.fixture(scope="module")
def version_dir(exported_model):
    return exported_model / "tiny" / "1"


@pytest.fixture(scope="module")
def loaded(version_dir):
    from keras_rnn.training.tokenizer import register_tf_text_ops

    register_tf_text_ops()
    return tf.saved_model.load(str(version_dir))


def signature_defs(version_dir):
    from tensorflow.python.saved_model import loader_impl

    return loader_impl.parse_saved_model(str(version_dir)).meta_graphs[0].signature_def


def call(loaded, texts, signature="translate_with_options", beam_size=3, max_length=48,
         n_best=1):
    outputs = loaded.signatures[signature](
        inputs=tf.constant(texts), beam_size=tf.constant(beam_size),
        max_length=tf.constant(max_length), n_best=tf.constant(n_best))
    return {key: value.numpy() for key, value in outputs.items()}


def test_the_export_translates_like_the_trained_model(trained_run, loaded):
    from keras_rnn.training.evaluate import Translator

    texts = sentences() + [""]
    translator = Translator(trained_run)
    expected, result = translator.translate(texts, beam_size=3, n_best=2, max_length=48)
    got = call(loaded, texts, n_best=2)
    assert got["translations"].shape == (len(texts), 2)
    assert [t.decode() for t in got["translations"][:, 0]] == expected
    second = translator.target_tokenizer.decode(np.asarray(result.ids)[:, 1])
    assert [t.decode() for t in got["translations"][:, 1]] == second
    np.testing.assert_allclose(got["scores"], np.asarray(result.scores), atol=1e-4)
    np.testing.assert_array_equal(got["lengths"], np.asarray(result.lengths))
    # The signatures without alignments leave them out of the search, and
    # find the same hypotheses as the one that returns them.
    full = call(loaded, texts, signature="translate_with_alignments", n_best=2)
    for name in ("translations", "scores", "lengths"):
        np.testing.assert_array_equal(got[name], full[name])
    # Beam 1 is greedy decoding.
    greedy, _ = translator.translate(texts, method="greedy", max_length=48)
    assert [t.decode() for t in call(loaded, texts, beam_size=1)["translations"][:, 0]] == greedy


def test_alignments_signature_returns_weights_and_pieces(trained_run, loaded):
    from keras_rnn.training.evaluate import Translator

    texts = sentences(3)
    got = call(loaded, texts, signature="translate_with_alignments", n_best=1)
    translator = Translator(trained_run)
    _, result = translator.translate(texts, beam_size=3, n_best=1, max_length=48)
    weights = got["alignments"]
    steps = weights.shape[2]
    np.testing.assert_allclose(weights, np.asarray(result.alignments)[:, :, :steps], atol=1e-5)
    for i, text in enumerate(texts):
        pieces = translator.source_tokenizer.pieces([text])[0] + ["</s>"]
        row = [p.decode() for p in got["source_pieces"][i]]
        assert row[:len(pieces)] == pieces and not any(row[len(pieces):])
        length = int(got["lengths"][i, 0])
        # Each real target step attends with weights summing to 1 over the real source.
        np.testing.assert_allclose(weights[i, 0, :length].sum(-1), 1.0, atol=1e-5)
        assert not np.any(weights[i, 0, :, len(pieces):])
        target = [p.decode() for p in got["target_pieces"][i, 0]]
        assert target[length - 1] == "</s>" and not any(target[length:])


def test_signature_defaults_and_warmup_requests(version_dir, loaded):
    from tensorflow_serving.apis import prediction_log_pb2

    from keras_rnn.serving.export import WARMUP_SENTENCES

    signatures = signature_defs(version_dir)
    # serving_default: the sentences only, as stock TensorFlow Serving calls it.
    assert list(signatures["serving_default"].inputs) == ["inputs"]
    texts = sentences(3)
    plain = loaded.signatures["serving_default"](inputs=tf.constant(texts))
    for key, value in call(loaded, texts).items():  # the export's defaults
        np.testing.assert_array_equal(plain[key].numpy(), value, err_msg=key)
    for key in ("translate_with_options", "translate_with_alignments"):
        signature = signatures[key]
        assert set(signature.inputs) == {"inputs", "beam_size", "max_length", "n_best"}
        defaults = {k: tf.make_ndarray(v).item() for k, v in signature.defaults.items()}
        assert defaults == {"beam_size": 3, "max_length": 48, "n_best": 1}
    for key in ("serving_default", "translate_with_options", "translate_with_alignments"):
        assert signatures[key].method_name == "tensorflow/serving/predict"
    metadata = json.loads((version_dir / "assets.extra" / "keras_rnn.json").read_text())
    assert metadata["max_beam_size"] == 3 and metadata["source_lang"] == "de"
    assert metadata["quantization"] == "float32"
    records = list(tf.data.TFRecordDataset(
        str(version_dir / "assets.extra" / "tf_serving_warmup_requests")).as_numpy_iterator())
    assert len(records) == 3
    for record in records:
        # Every input of the signature named: TensorFlow Serving replays them as they are.
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        function = loaded.signatures[request.model_spec.signature_name]
        assert set(request.inputs) == set(signatures[request.model_spec.signature_name].inputs)
        out = function(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
        assert out["translations"].shape == (len(WARMUP_SENTENCES), 1)


@pytest.mark.parametrize("inputs,options,message", [
    ([], {}, "the batch of sentences is empty"),
    ([b"Ein Hund \xff\xfe"], {}, "Invalid"),
    (["Ein Hund."], {"beam_size": 0}, "beam_size must be >= 1"),
    (["Ein Hund."], {"beam_size": 4}, "beam_size must be <= max_beam_size=3"),
    (["Ein Hund."], {"n_best": 3, "beam_size": 2}, "n_best must be <= beam_size"),
    (["Ein Hund."], {"max_length": 49}, "max_length must be <= max_length_limit=48"),
    (["Hund " * 200], {}, "longer than max_source_tokens=96"),
])
def test_bad_inputs_are_invalid_arguments(loaded, inputs, options, message):
    settings = dict(beam_size=3, max_length=48, n_best=1)
    settings.update(options)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        call(loaded, tf.constant(inputs, tf.string), **settings)
    # The model still translates afterwards.
    assert call(loaded, ["Ein Hund."])["translations"].shape == (1, 1)


def graph_ops(version_dir):
    """The op types of a SavedModel's graph and its functions."""
    from tensorflow.python.saved_model import loader_impl

    graph = loader_impl.parse_saved_model(str(version_dir)).meta_graphs[0].graph_def
    used = {node.op for node in graph.node}
    for function in graph.library.function:
        used |= {node.op for node in function.node_def}
    return used


def assert_stock_ops(used):
    """`used` are core TensorFlow ops and TF Text's SentencePiece ops only."""
    from tensorflow.python.framework import op_def_registry

    from keras_rnn.training.tokenizer import register_tf_text_ops

    assert {"While", "SentencepieceTokenizeOp", "SentencepieceDetokenizeOp"} <= used
    assert not used & FORBIDDEN, used & FORBIDDEN
    # Ops a fresh TensorFlow (no TF Text imported) does not know:
    probe = ("import json, sys, tensorflow\n"
             "from tensorflow.python.framework import op_def_registry as r\n"
             "print(json.dumps([n for n in json.load(sys.stdin) if r.get(n) is None]))")
    result = subprocess.run([sys.executable, "-c", probe], input=json.dumps(sorted(used)),
                            capture_output=True, text=True, check=True, cwd=ROOT)
    not_core = set(json.loads(result.stdout.strip().splitlines()[-1]))
    # ... are all TF Text SentencePiece ops.
    register_tf_text_ops()
    assert not_core and all(op.startswith("Sentencepiece") for op in not_core), not_core
    assert all(op_def_registry.get(op) is not None for op in not_core)


def test_the_graph_has_only_core_tensorflow_and_tf_text_ops(version_dir):
    assert_stock_ops(graph_ops(version_dir))


def test_versions_are_new_directories_renamed_into_place(trained_run, exported_model):
    result = cli("export", trained_run, exported_model, "--version", "1", check=False)
    assert result.returncode == 2 and "versions are immutable" in result.stderr
    result = cli("export", trained_run, exported_model, "--max-beam-size", "2",
                 "--beam-size", "3", check=False)
    assert result.returncode == 2 and "larger than max_beam_size=2" in result.stderr
    # Neither failure left a directory behind.
    assert sorted(p.name for p in (exported_model / "tiny").iterdir()) == ["1"]


@pytest.mark.skipif(BACKEND != "tensorflow", reason="one export with a large beam is enough")
def test_a_default_beam_above_8_raises_the_default_limit_with_it(trained_run, tmp_path):
    # The shipped Multi30k configs decode with beam 10: `keras-rnn export RUN
    # BASE` with no flags must accept the beam the run was tuned with.
    cli("export", trained_run, tmp_path, "--beam-size", "9")
    version = tmp_path / "tiny" / "1"
    metadata = json.loads((version / "assets.extra" / "keras_rnn.json").read_text())
    assert (metadata["beam_size"], metadata["max_beam_size"]) == (9, 9)
    from keras_rnn.training.tokenizer import register_tf_text_ops

    register_tf_text_ops()
    signature = tf.saved_model.load(str(version)).signatures["translate_with_options"]
    texts, length = tf.constant(sentences(2)), tf.constant(metadata["max_length"])
    best = signature(inputs=texts, beam_size=tf.constant(9), n_best=tf.constant(9),
                     max_length=length)
    assert best["translations"].shape == (2, 9)
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_beam_size=9"):
        signature(inputs=texts, beam_size=tf.constant(10), n_best=tf.constant(1),
                  max_length=length)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="in-process export needs TensorFlow")
def test_a_failed_export_leaves_no_version(trained_run, tmp_path, monkeypatch):
    from keras_rnn.serving import export as export_lib
    from keras_rnn.serving.config import ExportConfig

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export_lib.export(trained_run, tmp_path, ExportConfig(model_name="tiny"))
    assert list((tmp_path / "tiny").iterdir()) == []


def test_tf_text_ops_register_from_many_threads_at_once():
    # Servers load versions on worker threads; two at once once raced on the
    # stand-in `tensorflow_text` package (CI: "tensorflow_text.__spec__ is None").
    script = """
import importlib.util, sys, threading
from keras_rnn.training.tokenizer import register_tf_text_ops
barrier, errors = threading.Barrier(8), []
def load():
    barrier.wait()
    try:
        register_tf_text_ops()
    except Exception as error:
        errors.append(repr(error))
threads = [threading.Thread(target=load) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
print(errors, importlib.util.find_spec("tensorflow_text") is not None,
      "tensorflow_text.python.ops.sentencepiece_tokenizer" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "[] True True", done.stdout
