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
- REST (`answer_rest`, dispatched by `rest.RestApi` for paths under /v2):
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

import json
import re
import struct
import urllib.parse

import grpc
import numpy as np

from keras_rnn.serving import contract, errors, grpc_predict_v2_pb2_grpc
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
_MAX_INT64 = 2 ** 63 - 1
# The signature with the decoding options as inputs, where an export has it
# (serving_default then has the sentences only).
OPTIONS_SIGNATURE = "translate_with_options"


def _pb2():
    from keras_rnn.serving import grpc_predict_v2_pb2

    return grpc_predict_v2_pb2


def model_signature(servable):
    """The signature a v2 model is: `translate_with_options` where the
    version has it (the sentences and the optional decoding settings), else
    `serving_default`."""
    return (OPTIONS_SIGNATURE if OPTIONS_SIGNATURE in servable.signature_defs
            else contract.DEFAULT_SIGNATURE)


def parse_version(text):
    """A protocol version string -> an int, or None for "" (the newest served).

    Raises:
        ServingError: INVALID_ARGUMENT when it is not a non-negative int64.
    """
    if not text:
        return None
    if not re.fullmatch(r"[0-9]{1,19}", text, re.ASCII) or int(text) > _MAX_INT64:
        raise ServingError(INVALID, f"model version must be an integer; got {bounded(text)}")
    return int(text)


def decode_bytes_raw(data, name):
    """Raw BYTES contents (each element a 4-byte little-endian length and
    its bytes) -> list of bytes.

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
    """list of bytes -> raw BYTES contents (`decode_bytes_raw`'s inverse)."""
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
    """Adds one output to a `ModelInferResponse` (raw or in contents)."""
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
        return _pb2().ServerLiveResponse(live=True)

    def ServerReady(self, request, context):  # noqa: N802
        return _pb2().ServerReadyResponse(ready=self.runtime.models.ready())

    def ModelReady(self, request, context):  # noqa: N802
        """Ready when the model serves the version (the newest if none given).

        Raises:
            ModelNotFoundError: an unknown model (NOT_FOUND).
        """
        from keras_rnn.serving.observability import call_fields

        name = self.runtime.models.resolve_name(request.name)
        call_fields()["model"] = name
        version, served = parse_version(request.version), \
            self.runtime.models.served_versions(name)
        ready = bool(served) if version is None else version in served
        return _pb2().ModelReadyResponse(ready=ready)

    def ServerMetadata(self, request, context):  # noqa: N802
        import keras_rnn

        return _pb2().ServerMetadataResponse(name=SERVER_NAME, version=keras_rnn.__version__)

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
        response = _pb2().ModelMetadataResponse(name=name, platform=PLATFORM)
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
        response = _pb2().ModelInferResponse(
            model_name=result.model_spec.name, id=request.id,
            model_version=str(result.model_spec.version.value))
        for name in wanted or sorted(result.outputs):
            _output_tensor(response, name, tf.make_ndarray(result.outputs[name]),
                           raw=bool(request.raw_input_contents))
        return response


# ---------------------------------------------------------------- REST

_MODEL_ROUTE = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?")


def _json_infer_request(body, name, version):
    """An inference request's JSON object -> a `ModelInferRequest`
    (required_api.md, "Inference Request JSON Object"): nested or flat
    `data`; BYTES values are strings (UTF-8).

    Raises:
        ServingError: INVALID_ARGUMENT naming what is wrong.
    """
    pb2 = _pb2()
    request = pb2.ModelInferRequest(model_name=name, model_version=version or "")

    def fail(message):
        raise ServingError(INVALID, message)

    if not isinstance(body.get("id", ""), str):
        fail("'id' must be a string")
    request.id = body.get("id", "")
    _json_parameters(body.get("parameters", {}), request.parameters, "the request")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        fail("'inputs' must be a non-empty array of input tensors")
    for item in inputs:
        if not isinstance(item, dict):
            fail("each input must be an object with name, shape, datatype and data")
        name_, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name_, str) or not isinstance(datatype, str):
            fail("each input needs a string 'name' and 'datatype'")
        if datatype not in CONTENTS or CONTENTS[datatype][0] is None:
            fail(f"input {bounded(name_)}: unknown datatype {bounded(datatype)} (JSON "
                 f"datatypes: {', '.join(k for k, v in CONTENTS.items() if v[0])})")
        if not isinstance(shape, list) or not all(
                type(d) is int and 0 <= d <= _MAX_INT64 for d in shape):
            fail(f"input {bounded(name_)}: 'shape' must be an array of non-negative integers")
        parameters = item.get("parameters", {})
        if isinstance(parameters, dict) and "binary_data_size" in parameters:
            fail(f"input {bounded(name_)}: binary tensor data is not supported; send "
                 "'data' in JSON")
        tensor = request.inputs.add(name=name_, datatype=datatype, shape=shape)
        _json_parameters(parameters, tensor.parameters, f"input {bounded(name_)}")
        values = _flatten(item.get("data"), name_)
        _check_json_values(values, datatype, name_)
        if datatype == "BYTES":
            values = [v.encode("utf-8", "surrogatepass") for v in values]
        try:
            getattr(tensor.contents, CONTENTS[datatype][0]).extend(values)
        except (ValueError, TypeError) as error:
            fail(f"input {bounded(name_)}: a value is out of {datatype}'s range ({error})")
    outputs = body.get("outputs", [])
    if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        fail("'outputs' must be an array of objects with a string 'name'")
    for output in outputs:
        if output.get("parameters", {}).get("binary_data"):
            fail(f"output {bounded(output['name'])}: binary tensor data is not supported")
        request.outputs.add(name=output["name"])
    return request


def _json_parameters(parameters, into, where):
    """JSON `$parameters` (name -> string, number or boolean) -> InferParameters."""
    if not isinstance(parameters, dict):
        raise ServingError(INVALID, f"the parameters of {where} must be an object")
    for key, value in parameters.items():
        if isinstance(value, bool):
            into[key].bool_param = value
        elif type(value) is int and abs(value) <= _MAX_INT64:
            into[key].int64_param = value
        elif isinstance(value, str):
            into[key].string_param = value
        elif not isinstance(value, float):  # numbers the proto has no field for are dropped
            raise ServingError(INVALID, f"parameter {bounded(key)} of {where} must be a "
                                        "string, number or boolean")


def _flatten(data, name):
    """`data` (nested arrays, row-major) -> a flat list, without recursion."""
    if not isinstance(data, list):
        raise ServingError(INVALID, f"input {bounded(name)}: 'data' must be an array")
    flat, stack = [], [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _check_json_values(values, datatype, name):
    kinds = {"BYTES": (str,), "BOOL": (bool,)}
    ok = kinds.get(datatype) or ((int, float) if datatype.startswith("FP") else (int,))
    for value in values:
        if not isinstance(value, ok) or (isinstance(value, bool) and bool not in ok):
            raise ServingError(INVALID, (
                f"input {bounded(name)} has datatype {datatype}; a value is "
                f"{errors.cut(json.dumps(value), 100)}"))


def _json_infer_response(response):
    """A `ModelInferResponse` -> its JSON object ("Inference Response JSON
    Object"): flat `data`; BYTES values as strings."""
    body = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id:
        body["id"] = response.id
    body["outputs"] = []
    for output in response.outputs:
        values = list(getattr(output.contents, CONTENTS[output.datatype][0]))
        if output.datatype == "BYTES":
            values = [v.decode("utf-8", "replace") for v in values]
        body["outputs"].append({"name": output.name, "datatype": output.datatype,
                                "shape": list(output.shape), "data": values})
    return body


def answer_rest(api, request, path):
    """Answers one REST request under /v2 (required_api.md, "HTTP/REST").

    Args:
        api: the `rest.RestApi` (its interceptor calls, body reading, errors).
        request: the Werkzeug `Request`.
        path: the raw path (not percent-decoded), with any query.

    Returns:
        The Werkzeug `Response`.

    Raises:
        ServingError (and the `RestApi` errors of a failed call), which
        `RestApi` answers as `{"error": ...}` with the code's HTTP status.
    """
    from werkzeug.wrappers import Response

    pb2, servicer = _pb2(), InferenceServicer(api.runtime, api.prediction)
    method, path = request.method, path.split("?", 1)[0]

    def reply(body, status=200):
        return Response(json.dumps(body) if body is not None else b"", status=status,
                        mimetype="application/json" if body is not None else None)

    def health(short, call, message, field):
        answer = api._call(short, call, message)
        return reply(None, 200 if getattr(answer, field) else 400)

    routes = {"/v2/health/live": ("ServerLive", servicer.ServerLive, pb2.ServerLiveRequest()),
              "/v2/health/ready": ("ServerReady", servicer.ServerReady,
                                   pb2.ServerReadyRequest())}
    match = _MODEL_ROUTE.fullmatch(path)
    if path in routes or path in ("/v2", "/v2/") or (match and match.group(3) != "/infer"):
        if method != "GET":
            return api._error_with_status(405, f"{method} is not allowed on {bounded(path)}")
    elif match and method != "POST":
        return api._error_with_status(405, f"{method} is not allowed on {bounded(path)}")
    if path in routes:
        short, call, message = routes[path]
        return health(short, call, message, "live" if short == "ServerLive" else "ready")
    if path in ("/v2", "/v2/"):
        answer = api._call("ServerMetadata", servicer.ServerMetadata,
                           pb2.ServerMetadataRequest())
        return reply({"name": answer.name, "version": answer.version,
                      "extensions": list(answer.extensions)})
    if not match:
        return api._error("NOT_FOUND", f"no route {bounded(path)} (the Open Inference "
                                       "Protocol's /v2/... routes)")
    name, version, verb = match.groups()
    name = urllib.parse.unquote(name, errors="replace")
    version = urllib.parse.unquote(version, errors="replace") if version else ""
    if verb == "/ready":
        return health("ModelReady", servicer.ModelReady,
                      pb2.ModelReadyRequest(name=name, version=version), "ready")
    if verb is None:
        answer = api._call("ModelMetadata", servicer.ModelMetadata,
                           pb2.ModelMetadataRequest(name=name, version=version))
        tensors = lambda items: [{"name": t.name, "datatype": t.datatype,  # noqa: E731
                                  "shape": list(t.shape)} for t in items]
        return reply({"name": answer.name, "versions": list(answer.versions),
                      "platform": answer.platform, "inputs": tensors(answer.inputs),
                      "outputs": tensors(answer.outputs)})
    if request.headers.get("Inference-Header-Content-Length") is not None:
        return api._error("INVALID_ARGUMENT", "binary tensor data (Inference-Header-"
                                              "Content-Length) is not supported; send JSON")
    from keras_rnn.serving.rest_json import parse_json_body

    data = api._body(request)
    try:
        message = _json_infer_request(parse_json_body(data), name, version)
    except ServingError as error:
        return api._refuse("ModelInfer", pb2.ModelInferRequest(model_name=name), error)
    answer = api._call("ModelInfer", lambda request_, context: servicer.infer(
        request_, api.runtime.deadline(context)), message)
    return reply(_json_infer_response(answer))


def add_to_server(runtime, prediction, server):
    """Registers `InferenceServicer(runtime, prediction)` on a `grpc.Server`."""
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(runtime, prediction), server)
