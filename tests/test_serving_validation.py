"""Request checks (`serving/validation.py`): bad and fuzzed requests get
the right status and the server keeps serving.
"""

import random

from tests.serving_support import (  # noqa: F401 - fixtures
    channel,
    fake_versions,
    needs_tensorflow,
    outputs_of,
    predict_request,
    rpc_code,
    server,
    stub)


@needs_tensorflow
def test_bad_requests_get_the_right_status_and_the_server_keeps_serving(server, channel):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (classification_pb2, get_model_status_pb2,
                                         model_service_pb2_grpc)

    codes = grpc.StatusCode
    service = stub(channel)

    def with_input(request, proto):
        request.inputs["inputs"].CopyFrom(proto)
        return request

    unknown_model = predict_request(["Hallo"], model="nope")
    unknown_version = predict_request(["Hallo"], version=7)
    label = predict_request(["Hallo"])
    label.model_spec.version_label = "stable"
    unknown_signature = predict_request(["Hallo"], signature="nope")
    unknown_input = predict_request(["Hallo"])
    unknown_input.inputs["bogus"].CopyFrom(tf.make_tensor_proto(1))
    unknown_output = predict_request(["Hallo"])
    unknown_output.output_filter.append("bogus")
    matrix = with_input(predict_request([]), tf.make_tensor_proto([[b"a", b"b"]], tf.string))
    floats = with_input(predict_request([]), tf.make_tensor_proto([1.0, 2.0], tf.float32))
    scalar_string = with_input(predict_request([]), tf.make_tensor_proto(b"a", tf.string))
    float_beam = predict_request(["Hallo"])
    float_beam.inputs["beam_size"].CopyFrom(tf.make_tensor_proto(2.0, tf.float32))
    vector_beam = predict_request(["Hallo"])
    vector_beam.inputs["beam_size"].CopyFrom(tf.make_tensor_proto([2, 2], tf.int32))
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "nope"
    cases = [
        ("unknown model", service.Predict, unknown_model, codes.NOT_FOUND),
        ("unknown version", service.Predict, unknown_version, codes.NOT_FOUND),
        ("version label", service.Predict, label, codes.UNIMPLEMENTED),
        ("unknown signature", service.Predict, unknown_signature, codes.FAILED_PRECONDITION),
        ("unknown input", service.Predict, unknown_input, codes.INVALID_ARGUMENT),
        ("unknown output", service.Predict, unknown_output, codes.INVALID_ARGUMENT),
        ("2-D strings", service.Predict, matrix, codes.INVALID_ARGUMENT),
        ("float sentences", service.Predict, floats, codes.INVALID_ARGUMENT),
        ("scalar sentence", service.Predict, scalar_string, codes.INVALID_ARGUMENT),
        ("float beam_size", service.Predict, float_beam, codes.INVALID_ARGUMENT),
        ("vector beam_size", service.Predict, vector_beam, codes.INVALID_ARGUMENT),
        ("empty batch", service.Predict, predict_request([]), codes.INVALID_ARGUMENT),
        ("invalid UTF-8", service.Predict, predict_request([b"ok", b"\xff\xfe"]),
         codes.INVALID_ARGUMENT),
        ("too many characters", service.Predict, predict_request(["x" * 201]),
         codes.INVALID_ARGUMENT),
        # 41 characters pass the server's check (200) but not the graph's
        # max_source_tokens=40: the graph's InvalidArgumentError.
        ("too many tokens", service.Predict, predict_request(["y" * 41]),
         codes.INVALID_ARGUMENT),
        ("batch too large", service.Predict, predict_request(["a"] * 9),
         codes.INVALID_ARGUMENT),
        ("beam_size 0", service.Predict, predict_request(["a"], beam_size=0),
         codes.INVALID_ARGUMENT),
        ("beam_size > max", service.Predict, predict_request(["a"], beam_size=5),
         codes.INVALID_ARGUMENT),
        ("n_best > beam_size", service.Predict, predict_request(["a"], beam_size=2, n_best=3),
         codes.INVALID_ARGUMENT),
        ("max_length > limit", service.Predict, predict_request(["a"], max_length=51),
         codes.INVALID_ARGUMENT),
        ("classify", service.Classify, classification_pb2.ClassificationRequest(),
         codes.UNIMPLEMENTED),
        ("status of unknown model",
         model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus, status_request,
         codes.NOT_FOUND),
    ]
    good = predict_request(["Hallo"])
    for name, method, request, code in cases:
        assert rpc_code(method, request, timeout=10) == code, name
        assert outputs_of(service.Predict(good, timeout=10))["translations"][0, 0] == \
            b"v1:ollaH", f"after {name}"


@needs_tensorflow
def test_fuzzed_request_bytes_never_crash_the_server(server, channel):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    methods = ["/tensorflow.serving.PredictionService/Predict",
               "/tensorflow.serving.PredictionService/GetModelMetadata",
               "/tensorflow.serving.ModelService/GetModelStatus",
               "/keras_rnn.serving.Translator/Translate"]
    good = predict_request(["Hallo"]).SerializeToString()
    rng = random.Random(1)
    seen = {}
    for i in range(300):
        if i % 3 == 0:  # mutate a valid request: reaches the tensor parsing
            data = bytearray(good)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        else:
            data = rng.randbytes(rng.randint(0, 200))
        method = methods[i % len(methods)] if i % 3 else methods[0]
        call = channel.unary_unary(method, request_serializer=None,
                                   response_deserializer=None)
        code = rpc_code(call, data, timeout=10)
        seen[code] = seen.get(code, 0) + 1
        assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                            grpc.StatusCode.UNAVAILABLE), (method, data, code)
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                       timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert stub(channel).Predict(predict_request(["Hallo"]), timeout=10).outputs
    assert grpc.StatusCode.INVALID_ARGUMENT in seen
