"""The three services (`serving/servicers.py`) over a real localhost port:
stock TensorFlow Serving stubs and the typed Translator against the
model run in process.
"""

import numpy as np
import pytest

from tests.serving_fakes import FAKE_METADATA
from tests.serving_support import (  # noqa: F401 - fixtures
    ALIGNMENTS,
    assert_outputs_equal,
    channel,
    expected,
    fake_versions,
    in_process,
    needs_tensorflow,
    OPTIONS,
    outputs_of,
    predict_request,
    SENTENCES,
    server,
    SIGNATURE,
    stub)


@needs_tensorflow
@pytest.mark.parametrize("signature", [SIGNATURE, OPTIONS, ALIGNMENTS])
def test_stock_predict_equals_in_process(server, in_process, channel, signature):
    sentences = SENTENCES[:4]
    # Defaults omitted: the server fills them from the SignatureDef.
    response = stub(channel).Predict(predict_request(sentences, signature=signature),
                                     timeout=10)
    assert response.model_spec.name == "fake"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == signature
    assert_outputs_equal(outputs_of(response), expected(in_process, sentences, signature))
    # Explicit scalars (serving_default has none).
    scalars = {} if signature == SIGNATURE else dict(beam_size=3, n_best=3, max_length=5)
    response = stub(channel).Predict(
        predict_request(sentences, signature=signature, **scalars), timeout=10)
    assert_outputs_equal(outputs_of(response), expected(
        in_process, sentences, signature, **{k: np.int32(v) for k, v in scalars.items()}))
    # output_filter and an explicit version.
    request = predict_request(sentences, signature=signature, version=1)
    request.output_filter.append("translations")
    response = stub(channel).Predict(request, timeout=10)
    assert list(response.outputs) == ["translations"]


@needs_tensorflow
def test_metadata_and_status(server, channel):
    import tensorflow as tf
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                         model_service_pb2_grpc)

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "fake"
    response = stub(channel).GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == {SIGNATURE, OPTIONS, ALIGNMENTS}
    assert {k: v.dtype for k, v in signatures.signature_def[SIGNATURE].inputs.items()} == {
        "inputs": tf.string.as_datatype_enum}
    assert not signatures.signature_def[SIGNATURE].defaults
    for key in (OPTIONS, ALIGNMENTS):
        signature = signatures.signature_def[key]
        assert signature.method_name == "tensorflow/serving/predict"
        assert {k: v.dtype for k, v in signature.inputs.items()} == {
            "inputs": tf.string.as_datatype_enum, "beam_size": tf.int32.as_datatype_enum,
            "max_length": tf.int32.as_datatype_enum, "n_best": tf.int32.as_datatype_enum}
        defaults = {k: int(tf.make_ndarray(v)) for k, v in signature.defaults.items()}
        assert defaults == {"beam_size": FAKE_METADATA["beam_size"],
                            "max_length": FAKE_METADATA["max_length"], "n_best": 1}
    assert set(signatures.signature_def[SIGNATURE].outputs) == {
        "translations", "scores", "lengths"}
    assert signatures.signature_def[SIGNATURE].outputs["scores"].dtype == \
        tf.float32.as_datatype_enum
    assert set(signatures.signature_def[ALIGNMENTS].outputs) == {
        "translations", "scores", "lengths", "alignments", "source_pieces", "target_pieces"}

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "fake"
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        status_request, timeout=10)
    [version] = status.model_version_status
    assert version.version == 1
    assert version.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert version.status.error_code == 0


@needs_tensorflow
def test_translate_service(server, in_process):
    from keras_rnn.serving.client import TranslatorClient

    with TranslatorClient(f"127.0.0.1:{server.port}", timeout=10) as client:
        response = client.translate(SENTENCES[:3], n_best=2, beam_size=3, alignments=True)
        assert (response.model_name, response.version) == ("fake", 1)
        wanted = expected(in_process, SENTENCES[:3], ALIGNMENTS, beam_size=np.int32(3),
                          n_best=np.int32(2))
        for i, translation in enumerate(response.translations):
            assert translation.source == SENTENCES[i]
            assert [h.text.encode() for h in translation.hypotheses] == \
                list(wanted["translations"][i])
            np.testing.assert_allclose([h.score for h in translation.hypotheses],
                                       wanted["scores"][i])
            source = [p for p in wanted["source_pieces"][i] if p]
            assert [t.encode() for t in translation.source_tokens] == source
            for k, hypothesis in enumerate(translation.hypotheses):
                target = [p for p in wanted["target_pieces"][i, k] if p]
                assert [t.encode() for t in hypothesis.target_tokens] == target
                assert hypothesis.length == wanted["lengths"][i, k] == len(target)
                weights = np.reshape(hypothesis.alignment.weights,
                                     (hypothesis.alignment.target_length,
                                      hypothesis.alignment.source_length))
                np.testing.assert_allclose(
                    weights, wanted["alignments"][i, k, :len(target), :len(source)])
        plain = client.translate(["Hallo"])
        assert [h.text for h in plain.translations[0].hypotheses] == ["v1:ollaH"]
        assert not plain.translations[0].source_tokens
        # Options other than the export's go to translate_with_options.
        options = client.translate(["Hallo"], n_best=2, max_length=3)
        assert [h.text for h in options.translations[0].hypotheses] == ["v1:ol", "v1:ol #1"]
