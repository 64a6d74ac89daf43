"""Request checks (`serving/validation.py`): bad and fuzzed requests get
the right status and the server keeps serving.
"""

import random

from tests.serving_support import (  # noqa: F401 - fixtures
    channel,
    fake_versions,
    needs_tensorflow,
    OPTIONS,
    outputs_of,
    PeakRss,
    predict_request,
    rpc_code,
    rpc_details,
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
    float_beam = predict_request(["Hallo"], signature=OPTIONS)
    float_beam.inputs["beam_size"].CopyFrom(tf.make_tensor_proto(2.0, tf.float32))
    vector_beam = predict_request(["Hallo"], signature=OPTIONS)
    vector_beam.inputs["beam_size"].CopyFrom(tf.make_tensor_proto([2, 2], tf.int32))
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "nope"
    cases = [
        ("unknown model", service.Predict, unknown_model, codes.NOT_FOUND),
        ("unknown version", service.Predict, unknown_version, codes.NOT_FOUND),
        ("unknown version label", service.Predict, label, codes.INVALID_ARGUMENT),
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
        ("beam_size 0", service.Predict, predict_request(["a"], beam_size=0, signature=OPTIONS),
         codes.INVALID_ARGUMENT),
        ("beam_size > max", service.Predict, predict_request(["a"], beam_size=5, signature=OPTIONS),
         codes.INVALID_ARGUMENT),
        ("n_best > beam_size", service.Predict,
         predict_request(["a"], beam_size=2, n_best=3, signature=OPTIONS),
         codes.INVALID_ARGUMENT),
        # As TensorFlow Serving: serving_default takes no decoding options.
        ("beam_size on serving_default", service.Predict, predict_request(["a"], beam_size=2),
         codes.INVALID_ARGUMENT),
        ("max_length > limit", service.Predict,
         predict_request(["a"], max_length=51, signature=OPTIONS),
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


@needs_tensorflow
def test_a_request_declaring_a_huge_shape_is_rejected_before_it_is_materialized(
        server, channel):
    """35 bytes declaring 100,000,000 strings: `tf.make_ndarray` would repeat
    the one value to fill the shape (gigabytes); the proto check refuses it."""
    import grpc
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fake"
    tensor = request.inputs["inputs"]
    tensor.dtype = 7
    tensor.tensor_shape.dim.add().size = 100_000_000
    tensor.string_val.append(b"x")
    assert request.ByteSize() < 40
    with PeakRss() as peak:
        code, details = rpc_details(stub(channel).Predict, request, timeout=60)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "'inputs'" in details and "100000000" in details and "max_request_sentences" \
        in details, details
    assert peak.growth < 50 * 2**20, f"RSS grew {peak.growth / 2**20:.0f} MiB"
    assert outputs_of(stub(channel).Predict(predict_request(["Hallo"]), timeout=10))[
        "translations"][0, 0] == b"v1:ollaH"


@needs_tensorflow
def test_declared_shapes_must_match_the_values(server, channel):
    import grpc
    import tensorflow as tf

    def request_with(name, build):
        request = predict_request(["Hallo"], signature=OPTIONS)
        proto = request.inputs[name]
        build(proto)
        return request

    def more_values_declared(proto):  # 1 string, shape [3]
        proto.tensor_shape.dim[0].size = 3

    def no_values(proto):  # shape [2], nothing in string_val
        del proto.string_val[:]
        proto.tensor_shape.dim[0].size = 2

    def negative(proto):
        proto.tensor_shape.dim[0].size = -1

    def unknown_rank(proto):
        proto.tensor_shape.unknown_rank = True

    def string_content(proto):
        proto.tensor_content = b"abcd"

    def odd_content(proto):  # beam_size as 3 bytes of int32 content
        proto.CopyFrom(tf.make_tensor_proto(2, tf.int32))
        proto.ClearField("int_val")
        proto.tensor_content = b"\x02\x00\x00"

    def long_string(proto):  # over 4 x max_sentence_chars bytes
        proto.string_val[0] = b"x" * 801

    cases = [("inputs", more_values_declared, "holds 1 value"),
             ("inputs", no_values, "holds 0 value"),
             ("inputs", negative, "negative dimension"),
             ("inputs", unknown_rank, "unknown rank"),
             ("inputs", string_content, "string_val"),
             ("beam_size", odd_content, "multiple of 4"),
             ("inputs", long_string, "max_sentence_chars")]
    for name, build, words in cases:
        code, details = rpc_details(stub(channel).Predict, request_with(name, build), timeout=10)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (build.__name__, code, details)
        assert f"'{name}'" in details and words in details, (build.__name__, details)
    assert stub(channel).Predict(predict_request(["Hallo"]), timeout=10).outputs


@needs_tensorflow
def test_fuzzed_requests_never_crash_the_server_and_memory_stays_bounded(server, channel):
    """Mutates valid Predict requests field by field (shapes, dtypes, values,
    scalars, names) and sends them; CI-sized: 300 requests."""
    import grpc
    import tensorflow as tf

    rng = random.Random(7)
    sizes = [0, 1, 2, 3, 8, 9, 100, 2**20, 100_000_000, 2**31, 2**62, -1, -2**40]

    def mutate(request):
        name = rng.choice(["inputs", "beam_size", "max_length", "n_best"])
        if name != "inputs" and name not in request.inputs:
            request.inputs[name].CopyFrom(tf.make_tensor_proto(rng.randint(-3, 9), tf.int32))
        proto = request.inputs[name]
        choice = rng.randrange(9)
        if choice == 0:
            dims = proto.tensor_shape.dim
            if dims and rng.random() < 0.7:
                dims[rng.randrange(len(dims))].size = rng.choice(sizes)
            else:
                dims.add().size = rng.choice(sizes)
        elif choice == 1:
            del proto.tensor_shape.dim[:]
        elif choice == 2:
            proto.dtype = rng.choice([0, 1, 2, 3, 7, 9, 10, 19, 21, 99, 2**20])
        elif choice == 3:
            proto.string_val.extend([rng.randbytes(rng.randint(0, 30))
                                     for _ in range(rng.randint(1, 12))])
        elif choice == 4:
            proto.tensor_content = rng.randbytes(rng.randint(0, 64))
        elif choice == 5:
            proto.int_val.extend([rng.randint(-2**31, 2**31 - 1)
                                  for _ in range(rng.randint(1, 5))])
        elif choice == 6:
            proto.tensor_shape.unknown_rank = True
        elif choice == 7:
            request.model_spec.signature_name = rng.choice(
                ["", "translate_with_alignments", "x" * rng.randint(1, 5000)])
        else:
            request.output_filter.append(rng.choice(["scores", "bogus", "y" * 3000]))

    with PeakRss() as peak:
        seen = {}
        for i in range(300):
            request = predict_request(rng.sample(["Hallo", "ab", "Straße", "x y"],
                                                 rng.randint(1, 4)),
                                      signature=rng.choice(["serving_default", OPTIONS]))
            for _ in range(rng.randint(1, 3)):
                mutate(request)
            code = rpc_code(stub(channel).Predict, request, timeout=30)
            seen[code] = seen.get(code, 0) + 1
            assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                                grpc.StatusCode.UNAVAILABLE,
                                grpc.StatusCode.RESOURCE_EXHAUSTED), (i, request, code)
    assert grpc.StatusCode.INVALID_ARGUMENT in seen and grpc.StatusCode.OK in seen, seen
    assert peak.growth < 150 * 2**20, f"RSS grew {peak.growth / 2**20:.0f} MiB"
    assert outputs_of(stub(channel).Predict(predict_request(["Hallo"]), timeout=10))[
        "translations"][0, 0] == b"v1:ollaH"
