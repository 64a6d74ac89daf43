"""The signatures as stock TensorFlow Serving runs them (issue 23): it wants
every input of a signature in each request and fills no defaults, so
`serving_default` takes only `inputs`. Stock TensorFlow Serving is not
installable here: the SavedModel's signatures are called as it calls them
(only the signature's inputs, every one present) and compared with what our
server answers over real ports for the same request.
"""

import json
import urllib.request

import numpy as np
import pytest

from tests.serving_support import (  # noqa: F401 - fixtures
    ALIGNMENTS,
    assert_outputs_equal,
    build_fake_model,
    free_port,
    fake_versions,
    make_base,
    needs_tensorflow,
    OPTIONS,
    outputs_of,
    predict_request,
    SIGNATURE,
    start_server,
    stub)

SENTENCES = ["Hallo", "Ein Mann fährt Fahrrad."]
# A request of each signature, every input named: (scalars, REST body).
REQUESTS = {
    SIGNATURE: ({}, {"instances": SENTENCES}),
    OPTIONS: ({"beam_size": 3, "max_length": 6, "n_best": 2},
              {"signature_name": OPTIONS, "inputs": {
                  "inputs": SENTENCES, "beam_size": 3, "max_length": 6, "n_best": 2}}),
    ALIGNMENTS: ({"beam_size": 2, "max_length": 9, "n_best": 1},
                 {"signature_name": ALIGNMENTS, "inputs": {
                     "inputs": SENTENCES, "beam_size": 2, "max_length": 9, "n_best": 1}}),
}


@pytest.fixture(scope="module")
def rest_server(tmp_path_factory, fake_versions):
    server = start_server(make_base(tmp_path_factory.mktemp("stock"), fake_versions),
                          rest_api_port=free_port())
    yield server
    server.stop(grace=1)


def stock_call(version_dir, signature, scalars):
    """What stock TensorFlow Serving computes: the signature called with its
    inputs only, every input present."""
    import tensorflow as tf
    from tensorflow.python.saved_model import loader_impl

    signature_def = loader_impl.parse_saved_model(str(version_dir)).meta_graphs[0] \
        .signature_def[signature]
    inputs = {"inputs": tf.constant(SENTENCES),
              **{k: tf.constant(v, tf.int32) for k, v in scalars.items()}}
    assert set(inputs) == set(signature_def.inputs)
    function = tf.saved_model.load(str(version_dir)).signatures[signature]
    return {k: v.numpy() for k, v in function(**inputs).items()}


def rest_predict(server, body):
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.rest_api_port}/v1/models/fake:predict",
        data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@needs_tensorflow
@pytest.mark.parametrize("signature", list(REQUESTS))
def test_our_server_answers_as_the_signature_called_as_tf_serving_does(
        rest_server, fake_versions, signature):
    import grpc

    scalars, body = REQUESTS[signature]
    wanted = stock_call(fake_versions[1], signature, scalars)
    with grpc.insecure_channel(f"127.0.0.1:{rest_server.port}") as channel:
        response = stub(channel).Predict(
            predict_request(SENTENCES, signature=signature, **scalars), timeout=30)
    assert_outputs_equal(outputs_of(response), wanted)
    answer = rest_predict(rest_server, body)
    rows = (answer["predictions"] if "predictions" in answer else
            [{k: v[i] for k, v in answer["outputs"].items()} for i in range(len(SENTENCES))])
    for i, row in enumerate(rows):
        assert sorted(row) == sorted(wanted)
        for name, value in row.items():
            if wanted[name].dtype == object:
                np.testing.assert_array_equal(
                    np.asarray(value, dtype=object),
                    np.vectorize(bytes.decode, otypes=[object])(wanted[name][i]))
            else:
                np.testing.assert_allclose(value, wanted[name][i], err_msg=name)


@needs_tensorflow
def test_serving_default_takes_one_input_and_warmups_name_every_input(fake_versions):
    import tensorflow as tf
    from tensorflow.python.saved_model import loader_impl
    from tensorflow_serving.apis import prediction_log_pb2

    from keras_rnn.serving import contract

    version_dir = fake_versions[1]
    signature_defs = loader_impl.parse_saved_model(str(version_dir)).meta_graphs[0] \
        .signature_def
    assert list(signature_defs[SIGNATURE].inputs) == ["inputs"]
    assert set(signature_defs[OPTIONS].inputs) == set(contract.INPUTS)
    assert contract.check_signature_defs(dict(signature_defs)) == []
    records = tf.data.TFRecordDataset(str(version_dir / contract.WARMUP_FILE))
    seen = set()
    for record in records.as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        key = request.model_spec.signature_name
        assert set(request.inputs) == set(signature_defs[key].inputs), key
        seen.add(key)
    assert seen == {SIGNATURE, OPTIONS, ALIGNMENTS}


@needs_tensorflow
def test_options_go_to_translate_with_options(rest_server):
    from keras_rnn.serving.client import TranslatorClient

    with TranslatorClient(f"127.0.0.1:{rest_server.port}", timeout=30) as client:
        response = client.translate(["ab"], beam_size=3, n_best=3)
        assert [h.text for h in response.translations[0].hypotheses] == [
            "v1:ba", "v1:ba #1", "v1:ba #2"]
        assert client.predict(["ab"], n_best=2)["translations"].shape == (1, 2)


@needs_tensorflow
def test_scalars_on_serving_default_are_refused_as_tf_serving_does(rest_server):
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{rest_server.port}") as channel:
        with pytest.raises(grpc.RpcError) as error:
            stub(channel).Predict(predict_request(["ab"], n_best=2), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no input 'n_best'" in error.value.details()


@needs_tensorflow
def test_an_export_from_before_translate_with_options_still_serves(tmp_path):
    from keras_rnn.serving.client import TranslatorClient

    model_dir = tmp_path / "models" / "fake"
    model_dir.mkdir(parents=True)
    build_fake_model(model_dir / "1", tag="old:", legacy=True)
    server = start_server(tmp_path / "models", rest_api_port=free_port())
    try:
        assert rest_predict(server, {"instances": ["ab"]})["predictions"][0][
            "translations"] == ["old:ba"]
        assert rest_predict(server, {"inputs": {"inputs": ["ab"], "n_best": 2}})["outputs"][
            "translations"] == [["old:ba", "old:ba #1"]]
        with TranslatorClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            response = client.translate(["ab"], beam_size=3, n_best=2)
            assert [h.text for h in response.translations[0].hypotheses] == [
                "old:ba", "old:ba #1"]
            assert client.predict(["ab"], n_best=2)["translations"].shape == (1, 2)
    finally:
        server.stop(grace=1)
