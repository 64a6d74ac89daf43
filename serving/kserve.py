"""KServe's Open Inference Protocol (predict protocol v2), REST and gRPC.

    curl http://127.0.0.1:8501/v2/health/ready
    curl http://127.0.0.1:8501/v2/models/de_en
    curl -d '{"inputs": [{"name": "inputs", "shape": [1], "datatype": "BYTES",
              "data": ["Ein Mann fährt Fahrrad."]}]}' \\
        http://127.0.0.1:8501/v2/models/de_en/infer

The protocol (https://github.com/kserve/kserve, docs/predict-api/v2/
required_api.md and grpc_predict_v2.proto; Triton's and Seldon's servers
speak it too) is served beside TensorFlow Serving's API, on the same ports:

- gRPC: `inference.GRPCInferenceService` (`InferenceServicer`: ServerLive,
  ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer),
  compiled from `serving/protos/keras_rnn/serving/grpc_predict_v2.proto`.
- REST (`kserve_rest.answer_rest`, dispatched by `rest.RestApi` for paths
  under /v2):
  `GET /v2/health/live`, `GET /v2/health/ready` (200 true, 400 false, empty
  body), `GET /v2` (server metadata), `GET /v2/models/NAME[/versions/V]`
  (model metadata), `GET .../ready`, `POST .../infer`. Errors are
  `{"error": "..."}` with the HTTP status of the gRPC code (INVALID_ARGUMENT
  400, NOT_FOUND 404, UNAVAILABLE 503, ...).

A model is its `translate_with_options` signature, or `serving_default` in
exports without it (`model_signature`; the request parameter
`signature_name` picks another, e.g. `translate_with_alignments`): the
input `inputs` (BYTES, shape [-1]: the sentences) and the optional scalars
`beam_size`, `max_length`, `n_best` (INT32, shape [] or [1]); the outputs
`translations` (BYTES), `scores` (FP32), `lengths` (INT32), each [-1, -1].
BYTES values come in `contents.bytes_contents` or in `raw_input_contents`
(each element a 4-byte little-endian length and its bytes; the answer is
then raw too, as Triton's clients read it); in JSON they are strings. The
binary tensor data extension of the REST API is not supported.

An inference request becomes a TensorFlow Serving `PredictRequest` run by
`PredictionServicer.predict` (so batching, limits, versions and errors are
the TensorFlow Serving API's), and every call, REST or gRPC, goes through
the server's interceptor (status codes, metrics, one log line).
"""

import re
import struct

import grpc
import numpy as np

from keras_rnn.serving import contract, grpc_predict_v2_pb2_grpc
from keras_rnn.serving.errors import ServingError, bounded

INFERENCE_SERVICE = "inference.GRPCInferenceService"
SERVER_NAME = "keras-rnn"
PLATFORM = "tensorflow_savedmodel"  # the protocol's platform name of a SavedModel
SIGNATURE_PARAMETER = "signature_name"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
# The protocol's datatype of each TensorFlow DataType enum (types.proto).
DATATYPES = {1: "FP32", 2: "FP64", 3: "INT32", 4: "UINT8", 5: "INT16", 6: "INT8",
             7: "BYTES", 9: "INT64", 10: "BOOL", 17: "UINT16", 19: "FP16",
             22: "UINT32", 23: "UINT64"}
# Datatype -> (InferTensorContents field, NumPy dtype of its raw bytes).
CONTENTS = {"BOOL": ("bool_contents", "<?"), "UINT8": ("uint_contents", "<u1"),
            "UINT16": ("uint_contents", "<u2"), "UINT32": ("uint_contents", "<u4"),
            "UINT64": ("uint64_contents", "<u8"), "INT8": ("int_contents", "<i1"),
            "INT16": ("int_contents", "<i2"), "INT32": ("int_contents", "<i4"),
            "INT64": ("int64_contents", "<i8"), "FP16": (None, "<f2"),
            "FP32": ("fp32_contents", "<f4"), "FP64": ("fp64_contents", "<f8"),
            "BYTES": ("bytes_contents", None)}
MAX_INT64 = 2 ** 63 - 1
# The signature with the decoding options as inputs, where an export has it
# (serving_default then has the sentences only).
OPTIONS_SIGNATURE = "translate_with_options"


def messages():
    """The protocol's generated messages (the `grpc_predict_v2_pb2` module).

    Returns:
        The module.
    """
    from keras_rnn.serving import grpc_predict_v2_pb2

    return grpc_predict_v2_pb2


def model_signature(servable):
    """The signature a v2 model is: `translate_with_options` where the
    version has it (the sentences and the optional decoding settings), else
    `serving_default`.

    Args:
        servable: the `Servable` of the version.

    Returns:
        The signature key.
    """
    return (OPTIONS_SIGNATURE if OPTIONS_SIGNATURE in servable.signature_defs
            else contract.DEFAULT_SIGNATURE)


def parse_version(text):
    """A protocol version string -> an int.

    Args:
        text: the version of a request or route ("": the newest served).

    Returns:
        The version, or None for "".

    Raises:
        ServingError: INVALID_ARGUMENT when it is not a non-negative int64.
    """
    if not text:
        return None
    if not re.fullmatch(r"[0-9]{1,19}", text, re.ASCII) or int(text) > MAX_INT64:
        raise ServingError(INVALID, f"model version must be an integer; got {bounded(text)}")
    return int(text)


def decode_bytes_raw(data, name):
    """Raw BYTES contents (each element a 4-byte little-endian length and
    its bytes) -> list of bytes.

    Args:
        data: the raw contents.
        name: the tensor's name, for errors.

    Returns:
        The elements.

    Raises:
        ServingError: INVALID_ARGUMENT when a length runs past the end.
    """
    values, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise ServingError(INVALID, f"input {bounded(name)}: raw BYTES contents end "
                                        "inside an element's 4-byte length")
        (size,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if offset + size > len(data):
            raise ServingError(INVALID, f"input {bounded(name)}: a raw BYTES element of "
                                        f"{size} bytes runs past the contents' end")
        values.append(bytes(data[offset:offset + size]))
        offset += size
    return values


def encode_bytes_raw(values):
    """Raw BYTES contents (`decode_bytes_raw`'s inverse).

    Args:
        values: the elements (bytes).

    Returns:
        Each element's 4-byte little-endian length and bytes, joined.
    """
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def _input_array(tensor, raw, expected):
    """One `InferInputTensor` -> a NumPy array of the signature's dtype.

    Args:
        tensor: the `ModelInferRequest.InferInputTensor`.
        raw: its `raw_input_contents` entry, or None.
        expected: the signature's `TensorInfo` of the input.

    Returns:
        The array, shaped as the request says (a shape [1] scalar input of
        the signature as a scalar).

    Raises:
        ServingError: INVALID_ARGUMENT: wrong datatype, bad shape, values
            not matching the shape.
    """
    import tensorflow as tf

    name, want = tensor.name, DATATYPES.get(expected.dtype, f"enum {expected.dtype}")
    if tensor.datatype != want:
        raise ServingError(INVALID, f"input {bounded(name)} has datatype "
                                    f"{bounded(tensor.datatype)}; the model expects {want}")
    shape = list(tensor.shape)
    if any(d < 0 for d in shape):
        raise ServingError(INVALID, f"input {bounded(name)} has a negative dimension: {shape}")
    field, raw_dtype = CONTENTS[want]
    if raw is not None:
        values = (decode_bytes_raw(raw, name) if want == "BYTES"
                  else np.frombuffer(raw, dtype=raw_dtype)
                  if len(raw) % np.dtype(raw_dtype).itemsize == 0 else None)
        if values is None:
            raise ServingError(INVALID, f"input {bounded(name)}: {len(raw)} raw bytes are not "
                                        f"a whole number of {want} values")
    else:
        values = getattr(tensor.contents, field)
    size = int(np.prod(shape, dtype=object)) if shape else 1
    if len(values) != size:
        raise ServingError(INVALID, f"input {bounded(name)} has shape {shape} ({size} values) "
                                    f"but holds {len(values)} value(s)")
    dtype = object if want == "BYTES" else tf.as_dtype(expected.dtype).as_numpy_dtype
    array = np.array(list(values) if want == "BYTES" else values, dtype=dtype).reshape(shape)
    if not expected.tensor_shape.unknown_rank and not expected.tensor_shape.dim \
            and shape == [1]:
        array = array.reshape(())  # a scalar sent as shape [1], as most clients must
    return array


def infer_inputs(request, signature_def):
    """The TensorProtos of a `ModelInferRequest`'s inputs, for a signature.

    Args:
        request: the `ModelInferRequest`.
        signature_def: the signature's `SignatureDef` (the limits are
            checked on the protos afterwards, `validation.check_inputs`).

    Returns:
        dict of input name -> `TensorProto`.

    Raises:
        ServingError: INVALID_ARGUMENT: unknown or repeated input, wrong
            datatype, values not matching the shape, contents given both ways.
    """
    import tensorflow as tf

    raws = list(request.raw_input_contents)
    if raws and len(raws) != len(request.inputs):
        raise ServingError(INVALID, f"{len(raws)} raw_input_contents for "
                                    f"{len(request.inputs)} inputs; give one per input")
    spec, protos = signature_def.inputs, {}
    for index, tensor in enumerate(request.inputs):
        if tensor.name not in spec:
            raise ServingError(INVALID, f"the model has no input {bounded(tensor.name)} "
                                        f"(inputs: {', '.join(sorted(spec))})")
        if tensor.name in protos:
            raise ServingError(INVALID, f"input {bounded(tensor.name)} is given twice")
        if raws and tensor.HasField("contents"):
            raise ServingError(INVALID, f"input {bounded(tensor.name)} has contents and "
                                        "raw_input_contents; give one")
        array = _input_array(tensor, raws[index] if raws else None, spec[tensor.name])
        protos[tensor.name] = tf.make_tensor_proto(array, dtype=spec[tensor.name].dtype)
    return protos


def _output_tensor(response, name, array, raw):
    """Adds one output to a `ModelInferResponse`.

    Args:
        response: the `ModelInferResponse`.
        name: the output's name.
        array: its NumPy value.
        raw: append its bytes to `raw_output_contents` (else fill `contents`).
    """
    datatype = "BYTES" if array.dtype == object else DATATYPES[
        {np.dtype(np.float32): 1, np.dtype(np.int32): 3, np.dtype(np.float64): 2,
         np.dtype(np.int64): 9, np.dtype(np.bool_): 10}[array.dtype]]
    output = response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
    values = array.ravel().tolist()
    field, raw_dtype = CONTENTS[datatype]
    if raw:
        response.raw_output_contents.append(
            encode_bytes_raw(values) if datatype == "BYTES"
            else np.ascontiguousarray(array, dtype=raw_dtype).tobytes())
    else:
        getattr(output.contents, field).extend(values)


class InferenceServicer(grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer):
    """inference.GRPCInferenceService (the Open Inference Protocol's gRPC API).

    Args:
        runtime: the servers' `Runtime`.
        prediction: the `PredictionServicer` that runs inference requests.
    """

    def __init__(self, runtime, prediction):
        self.runtime = runtime
        self.prediction = prediction

    def ServerLive(self, request, context):  # noqa: N802 - gRPC method name
        """Returns: `ServerLiveResponse(live=True)` (it answers)."""
        return messages().ServerLiveResponse(live=True)

    def ServerReady(self, request, context):  # noqa: N802
        """Returns: a `ServerReadyResponse`, ready when every model serves a version."""
        return messages().ServerReadyResponse(ready=self.runtime.models.ready())

    def ModelReady(self, request, context):  # noqa: N802
        """Whether a model serves a version.

        Args:
            request: a `ModelReadyRequest` (no version: any version).
            context: the call's context.

        Returns:
            A `ModelReadyResponse`.

        Raises:
            ModelNotFoundError: an unknown model (NOT_FOUND).
        """
        from keras_rnn.serving.observability import call_fields

        name = self.runtime.models.resolve_name(request.name)
        call_fields()["model"] = name
        version, served = parse_version(request.version), \
            self.runtime.models.served_versions(name)
        ready = bool(served) if version is None else version in served
        return messages().ModelReadyResponse(ready=ready)

    def ServerMetadata(self, request, context):  # noqa: N802
        """Returns: a `ServerMetadataResponse`: "keras-rnn", its version, no extensions."""
        import keras_rnn

        return messages().ServerMetadataResponse(name=SERVER_NAME,
                                                 version=keras_rnn.__version__)

    def ModelMetadata(self, request, context):  # noqa: N802
        """The model's served versions and its signature's (`model_signature`)
        inputs and outputs (the batch input first).

        Returns:
            A `ModelMetadataResponse`.
        """
        from keras_rnn.serving.observability import call_fields

        models, info = self.runtime.models, call_fields()
        name = models.resolve_name(request.name)
        info["model"] = name
        response = messages().ModelMetadataResponse(name=name, platform=PLATFORM)
        with models.acquire(name, parse_version(request.version)) as servable:
            info["version"] = servable.version
            response.versions.extend(str(v) for v in models.served_versions(name))
            key = model_signature(servable)
            signature, first = servable.signature_defs[key], servable.batch_inputs.get(key)
            for tensors, into in ((signature.inputs, response.inputs),
                                  (signature.outputs, response.outputs)):
                for key in sorted(tensors, key=lambda k: (k != first, k)):
                    info_ = tensors[key]
                    into.add(name=key, datatype=DATATYPES.get(info_.dtype, str(info_.dtype)),
                             shape=[] if info_.tensor_shape.unknown_rank
                             else [d.size for d in info_.tensor_shape.dim])
        return response

    def ModelInfer(self, request, context):  # noqa: N802
        """Returns: the `ModelInferResponse` of `infer`, with the call's deadline."""
        return self.infer(request, self.runtime.deadline(context))

    def infer(self, request, deadline):
        """`ModelInfer` with its deadline given: the request runs as a
        TensorFlow Serving `Predict` (`PredictionServicer.predict`).

        Args:
            request: the `ModelInferRequest`.
            deadline: `time.monotonic()` time to answer by.

        Returns:
            The `ModelInferResponse`: the outputs asked for (all, in name
            order, when none are), raw when the inputs were raw.
        """
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        predict = predict_pb2.PredictRequest()
        predict.model_spec.name = request.model_name
        version = parse_version(request.model_version)
        if version is not None:
            predict.model_spec.version.value = version
        parameter = request.parameters.get(SIGNATURE_PARAMETER)
        if parameter is not None:
            if parameter.WhichOneof("parameter_choice") != "string_param":
                raise ServingError(INVALID, f"parameter {SIGNATURE_PARAMETER!r} must be a "
                                            "string")
            predict.model_spec.signature_name = parameter.string_param
        else:
            with self.runtime.models.acquire(request.model_name, version) as servable:
                predict.model_spec.signature_name = model_signature(servable)
        wanted = [o.name for o in request.outputs]
        if len(set(wanted)) != len(wanted):
            raise ServingError(INVALID, "an output is requested twice")
        predict.output_filter.extend(wanted)
        result = self.prediction.predict(
            predict, deadline, read_inputs=lambda sig: infer_inputs(request, sig))
        response = messages().ModelInferResponse(
            model_name=result.model_spec.name, id=request.id,
            model_version=str(result.model_spec.version.value))
        for name in wanted or sorted(result.outputs):
            _output_tensor(response, name, tf.make_ndarray(result.outputs[name]),
                           raw=bool(request.raw_input_contents))
        return response


def add_to_server(runtime, prediction, server):
    """Registers the protocol's gRPC service on a server.

    Args:
        runtime: the servicers' `Runtime`.
        prediction: the `PredictionServicer` inference requests run on.
        server: the `grpc.Server`.
    """
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(runtime, prediction), server)
