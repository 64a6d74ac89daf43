"""`keras-rnn export --quantize int8`: the model is quantized after loading
and before tracing, so the SavedModel holds int8 variables and int8 matmuls
(core ops with a stock CPU kernel), keeps the serving contract, is served by
`keras-rnn serve` and translates about as the float export does.
"""

import json
import re

import numpy as np
import pytest

from tests.serving.test_export import assert_stock_ops, graph_ops, sentences
from tests.serving_support import needs_tensorflow, predict_request, start_server, stub
from tests.support import cli

tf = pytest.importorskip("tensorflow")

# The variables `Seq2Seq.quantize("int8")` makes int8: the cells' kernels and
# recurrent kernels, `Dense` kernels, embeddings (not the attention's own).
QUANTIZED = re.compile(r"/(kernel|recurrent_kernel|_kernel|_embeddings)/\.ATTRIBUTES")


@pytest.fixture(scope="module")
def quantized_base(trained_run, tmp_path_factory):
    """The model base directory of the int8 export of `trained_run` (`tiny/1/`)."""
    base = tmp_path_factory.mktemp("int8_models")
    cli("export", trained_run, base, "--max-beam-size", "3", "--quantize", "int8")
    return base


@pytest.fixture(scope="module")
def quantized_dir(quantized_base):
    return quantized_base / "tiny" / "1"


@pytest.fixture(scope="module")
def loaded_pair(exported_model, quantized_dir):
    """(float, int8) SavedModels loaded in this process."""
    from keras_rnn.training.tokenizer import register_tf_text_ops

    register_tf_text_ops()
    return (tf.saved_model.load(str(exported_model / "tiny" / "1")),
            tf.saved_model.load(str(quantized_dir)))


def variables(version_dir):
    """{checkpoint key: (dtype, shape)} of a SavedModel's variables."""
    reader = tf.train.load_checkpoint(str(version_dir / "variables" / "variables"))
    shapes = reader.get_variable_to_shape_map()
    return {key: (dtype, shapes[key])
            for key, dtype in reader.get_variable_to_dtype_map().items()
            if not key.startswith("_CHECKPOINTABLE")}


def test_the_kernels_and_embeddings_are_int8_variables(exported_model, quantized_dir):
    float_vars = variables(exported_model / "tiny" / "1")
    int8_vars = variables(quantized_dir)
    expected = {key for key in float_vars if QUANTIZED.search(key)}
    assert any("/cell" in key and "recurrent_kernel" in key for key in expected), expected
    assert {key for key, (dtype, _) in int8_vars.items() if dtype == tf.int8} == expected
    for key, (dtype, shape) in float_vars.items():
        assert int8_vars[key][1] == shape, key  # same shapes, int8 or as they were
        if key not in expected:
            assert int8_vars[key][0] == dtype, key
    # One float32 scale per output channel beside each int8 variable.
    scales = {key for key in int8_vars if "_scale/" in key}
    assert len(scales) == len(expected)
    assert all(int8_vars[key][0] == tf.float32 for key in scales)
    size = {d: (d / "variables" / "variables.data-00000-of-00001").stat().st_size
            for d in (exported_model / "tiny" / "1", quantized_dir)}
    assert size[quantized_dir] < 0.6 * size[exported_model / "tiny" / "1"], size
    metadata = json.loads((quantized_dir / "assets.extra" / "keras_rnn.json").read_text())
    assert metadata["quantization"] == "int8" and metadata["max_beam_size"] == 3


def test_the_int8_graph_has_only_stock_ops(quantized_dir):
    from tensorflow.python.framework import kernels

    used = graph_ops(quantized_dir)
    assert_stock_ops(used)
    # The int8 x int8 -> int32 matmul: a core op with a stock (Eigen) CPU kernel.
    assert "BatchMatMulV3" in used
    registered = {
        tuple(sorted((c.name, tf.as_dtype(c.allowed_values.list.type[0]).name)
                     for c in kernel.constraint))
        for kernel in kernels.get_registered_kernels_for_op("BatchMatMulV3").kernel
        if kernel.device_type == "CPU"}
    assert (("Ta", "int8"), ("Tb", "int8"), ("Tout", "int32")) in registered


def test_the_int8_export_translates_about_as_the_float_one(loaded_pair):
    texts = sentences(8) + ["Hallo"]
    outputs = []
    for model in loaded_pair:
        out = model.signatures["translate_with_options"](
            inputs=tf.constant(texts), beam_size=tf.constant(3), max_length=tf.constant(48),
            n_best=tf.constant(2))
        outputs.append({key: value.numpy() for key, value in out.items()})
    float_out, int8_out = outputs
    for key in ("translations", "scores", "lengths"):
        assert int8_out[key].shape == float_out[key].shape == (len(texts), 2), key
    for text in int8_out["translations"].ravel():
        text.decode("utf-8")  # valid UTF-8
    assert np.all(np.isfinite(int8_out["scores"])) and np.all(int8_out["scores"] <= 0)
    assert np.all((int8_out["lengths"] >= 1) & (int8_out["lengths"] <= 48))
    # Best first; near the float model's scores (a tiny model has near-ties,
    # so the words may differ).
    assert np.all(int8_out["scores"][:, 0] >= int8_out["scores"][:, 1])
    np.testing.assert_allclose(int8_out["scores"][:, 0].mean(),
                               float_out["scores"][:, 0].mean(), rtol=0.5)
    plain = loaded_pair[1].signatures["serving_default"](inputs=tf.constant(texts))
    assert plain["translations"].shape == (len(texts), 1)


@needs_tensorflow
def test_the_server_serves_the_int8_export(quantized_base, loaded_pair):
    import logging

    import grpc
    from tensorflow_serving.apis import get_model_metadata_pb2

    texts = sentences(4)
    expected = loaded_pair[1].signatures["serving_default"](inputs=tf.constant(texts))
    records, handler = [], logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("keras_rnn.serving")
    level, logger.level = logger.level, logging.INFO
    logger.addHandler(handler)
    try:
        server = start_server(quantized_base)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            response = stub(channel).Predict(predict_request(texts, model="tiny"), timeout=60)
            got = tf.make_ndarray(response.outputs["translations"])
            np.testing.assert_array_equal(got, expected["translations"].numpy())
            np.testing.assert_allclose(tf.make_ndarray(response.outputs["scores"]),
                                       expected["scores"].numpy(), atol=1e-5)
            metadata = stub(channel).GetModelMetadata(
                get_model_metadata_pb2.GetModelMetadataRequest(
                    model_spec=response.model_spec, metadata_field=["signature_def"]),
                timeout=10)
            assert metadata.model_spec.version.value == 1
    finally:
        server.stop(grace=1)
    loaded = [r for r in records if getattr(r, "fields", {}).get("event") == "version_loaded"]
    assert loaded and loaded[0].fields["quantization"] == "int8"


def test_a_bad_quantize_mode_is_a_one_line_error(trained_run, tmp_path):
    result = cli("export", trained_run, tmp_path, "--quantize", "int4", check=False)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["keras-rnn export: error: --quantize 'int4': the modes are int8 "
                     "(default: float32)."], result.stderr
    assert not (tmp_path / "tiny").exists()
