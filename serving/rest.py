"""TensorFlow Serving's REST API (`keras-rnn serve --rest-api-port 8501`).

    curl -d '{"instances": ["Ein Mann fährt Fahrrad."]}' \\
        http://127.0.0.1:8501/v1/models/de_en:predict
    curl http://127.0.0.1:8501/v1/models/de_en             # version status
    curl http://127.0.0.1:8501/v1/models/de_en/metadata    # SignatureDefs

The routes, bodies and errors are TensorFlow Serving's
(https://www.tensorflow.org/tfx/serving/api_rest):

- `POST /v1/models/NAME[/versions/N|/labels/LABEL]:predict` with `{"signature_name": ...,
  "instances": [...]}` (row format: each instance a sentence, or an object
  of input name -> value; inputs without a batch axis must be equal in
  every instance) or `{"inputs": ...}` (columnar: the sentences, or an
  object of input name -> value). Answers `{"predictions": [...]}` (one
  entry per instance: the value of the only output, or an object of
  outputs) or `{"outputs": ...}`. Strings are JSON strings, or
  `{"b64": "..."}` for bytes.
- `GET /v1/models/NAME[/versions/N|/labels/LABEL]`:
  `{"model_version_status": [...]}`.
- `GET /v1/models/NAME[/versions/N|/labels/LABEL]/metadata`: `{"model_spec": ...,
  "metadata": {"signature_def": ...}}`.
- Errors: `{"error": "message"}` with TensorFlow Serving's HTTP status
  for the gRPC code (INVALID_ARGUMENT 400, NOT_FOUND 404, ...) and, where
  it has one, its text: routes are matched case-insensitively on the raw
  path; anything else under /v1/ is "Malformed request: METHOD PATH"
  (400); a version over int64 is "Failed to convert version: ..." (400);
  JSON values are checked against the signature's dtypes as
  json_tensor.cc does; an unexpected error is a JSON 500 and one log line.
  Labels are `serve --version-label`'s; an unknown one answers 400 on
  `:predict` and `/metadata`; the status ignores labels, as TF Serving's.

Each call runs the gRPC servicers through the server's interceptor
(`ServingInterceptor.handle`), so batching, limits, versions, metrics and
logs are the gRPC path's; a `:predict` body is parsed first (`_PredictBody`)
and converted to tensors inside `Predict`, with the dtypes of the signature
it asks for. TLS uses the gRPC flags. HTTP is Werkzeug's
threaded WSGI server; `RestApi` is a plain WSGI application, so it can also
be mounted on any WSGI server.
"""

import base64
import json
import re
import ssl
import threading
import traceback
import urllib.parse

import grpc
import numpy as np
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from keras_rnn.serving import contract, errors, validation
from keras_rnn.serving.errors import ServingError, bounded, status_of
from keras_rnn.serving.observability import log

INVALID = grpc.StatusCode.INVALID_ARGUMENT
# TensorFlow Serving's HTTP status for each gRPC code
# (tensorflow_serving/model_servers/http_server.cc, ToHTTPStatusCode).
HTTP_STATUS = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
    "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}
# TensorFlow Serving's route patterns, matched on the raw path and query
# (http_rest_api_util.cc: kHTTPRestApiHandlerPathRegex, kPredictionApiGegex,
# kModelStatusApiRegex; RE2's `\d` is ASCII).
_API = re.compile(r"(?i)/v1/.*", re.ASCII | re.DOTALL)
_PREDICT = re.compile(r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                      r":(classify|regress|predict)", re.ASCII)
_MODEL = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|"
                    r"(?:/labels/([^/:]+)))?(?:/(metadata))?", re.ASCII)
_INT64_MAX = 2 ** 63 - 1
# Deepest JSON nesting a body may have: a translator's inputs have rank <= 1,
# so a request needs 4 levels; NumPy arrays have at most 32 (or 64) axes.
MAX_JSON_DEPTH = 32
# What is read and dropped of a chunked body past the limit before the 413
# is sent (so the client reads the answer rather than a reset).
_DRAIN_BYTES = 1 << 20
# A JSON string (possibly unterminated), skipped when counting brackets.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\[\s\S]?)*"?')
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
# TensorFlow's DataTypeString of the dtypes a JSON value can fill
# (json_tensor.cc, AddValueToTensor).
_DTYPE_NAMES = {1: "float", 2: "double", 3: "int32", 4: "uint8", 5: "int16", 6: "int8",
                7: "string", 9: "int64", 10: "bool", 22: "uint32", 23: "uint64"}
# rapidjson's IsInt / IsInt64 / IsUint / IsUint64 ranges of each integer dtype.
_INT_RANGES = {3: (-2 ** 31, 2 ** 31 - 1), 4: (-2 ** 31, 2 ** 31 - 1),
               5: (-2 ** 31, 2 ** 31 - 1), 6: (-2 ** 31, 2 ** 31 - 1),
               9: (-2 ** 63, _INT64_MAX), 22: (0, 2 ** 32 - 1), 23: (0, 2 ** 64 - 1)}
_MAX_VALUE_CHARS = 200  # of a JSON value quoted in an error


class _Aborted(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class _TooLarge(Exception):
    """The body is over `max_message_bytes`."""


class _Context:
    """The part of `grpc.ServicerContext` the servicers and the interceptor
    use, for a REST call (no client deadline: the server's limit holds)."""

    def time_remaining(self):
        return None

    def abort(self, code, message):
        raise _Aborted(code, message)


def _model_spec(spec, name, version, label):
    spec.name = name
    if version is not None:
        spec.version.value = version
    if label is not None:
        spec.version_label = label


def _request_path(environ):
    """The request's path and query as sent (not percent-decoded), which
    TensorFlow Serving matches its routes on (evhttp_request.cc,
    `path_and_query`)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw is None:
        query = environ.get("QUERY_STRING")
        return urllib.parse.quote(environ.get("PATH_INFO", "")) + (f"?{query}" if query else "")
    if not raw.startswith("/"):  # absolute form: http://host/path
        parts = urllib.parse.urlsplit(raw)
        raw = parts.path + (f"?{parts.query}" if parts.query else "")
    return raw


def _route_args(name, version, label):
    """(name, version, label) of a route, as TensorFlow Serving reads them
    (http_rest_api_util.cc, ParseModelInfo): the name and label
    percent-decoded, the version an int64.

    Raises:
        ServingError: INVALID_ARGUMENT for a version over int64.
    """
    if version is not None:
        number = int(version)
        if number > _INT64_MAX:
            raise ServingError(INVALID, errors.cut(
                f"Failed to convert version: {version} to numeric."))
        version = number
    decode = lambda text: urllib.parse.unquote(text, errors="replace")  # noqa: E731
    return (decode(name) if name else "", version,
            decode(label) if label is not None else None)


def _json_text(value):
    """A JSON value as TensorFlow Serving quotes it in errors (rapidjson's
    PrettyWriter, json_tensor.cc `JsonValueToString`), cut."""
    text = json.dumps(value, indent=4, ensure_ascii=False)
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS] + "..."


def _json_type(value):
    """rapidjson's name of a value's type (json_tensor.cc, `JsonTypeString`)."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _is_b64(value):
    """A `{"b64": "..."}` object: a bytes value, not an object of inputs
    (json_tensor.cc, `IsValBase64Object`)."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def check_json_depth(data, limit=MAX_JSON_DEPTH):
    """Checks the nesting depth of a JSON body without parsing it (no
    recursion): strings are skipped, brackets counted.

    Args:
        data: the body (bytes).
        limit: the deepest nesting allowed.

    Raises:
        ServingError: INVALID_ARGUMENT when the body nests deeper.
    """
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:
        return
    codes = np.frombuffer(brackets, dtype=np.uint8)
    depth = np.cumsum(np.where((codes == ord("[")) | (codes == ord("{")), 1, -1))
    if depth.max() > limit:
        raise ServingError(INVALID, f"JSON Parse error: the document nests deeper than "
                                    f"{limit} levels")


def _type_error(value, dtype):
    return ServingError(INVALID, (
        f"JSON Value: {_json_text(value)} Type: {_json_type(value)} is not of expected "
        f"type: {_DTYPE_NAMES.get(dtype, validation.dtype_name(dtype))}"))


def _lossless(value, dtype):
    """json_tensor.cc `IsLosslessDecimal`: a float (double) holds the number."""
    if isinstance(value, float):
        return not np.isfinite(value) or dtype == contract.DT_DOUBLE or \
            abs(value) <= float(np.finfo(np.float32).max)
    return abs(value) <= (2 ** 24 - 1 if dtype == contract.DT_FLOAT else 2 ** 53 - 1)


def _check_value(value, dtype):
    """Checks one JSON value (not a list) against a dtype, as TensorFlow
    Serving does (json_tensor.cc, `AddValueToTensor`, `FillTensorProto`).

    Raises:
        ServingError: INVALID_ARGUMENT with TensorFlow Serving's text.
    """
    if dtype == contract.DT_STRING:
        if isinstance(value, dict) and not _is_b64(value):
            raise ServingError(INVALID, f"JSON Value: {_json_text(value)} not formatted "
                                        "correctly for base64 data")
        if not isinstance(value, (str, dict)):
            raise _type_error(value, dtype)
    elif dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if type(value) is not int or not low <= value <= high:
            raise _type_error(value, dtype)
    elif dtype in (contract.DT_FLOAT, contract.DT_DOUBLE):
        if type(value) not in (int, float):
            raise _type_error(value, dtype)
        if not _lossless(value, dtype):
            raise ServingError(INVALID, f"Cannot convert JSON value: {_json_text(value)} to "
                                        f"{_DTYPE_NAMES[dtype]} without loss of precision.")
    elif dtype == contract.DT_BOOL:
        if type(value) is not bool:
            raise _type_error(value, dtype)
    else:
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, (
            f"Conversion of JSON Value: {_json_text(value)} to type: "
            f"{validation.dtype_name(dtype)}"))


def check_json_values(value, dtype):
    """Checks every value of a JSON value or (nested) list against a dtype,
    without recursion.

    Raises:
        ServingError: INVALID_ARGUMENT naming the first bad value.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            _check_value(item, dtype)


def _b64decode(text):
    """absl::Base64Unescape: standard alphabet, padding optional."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise ServingError(INVALID, "Unable to base64 decode") from None


def _strings(value):
    """JSON strings (or {"b64": ...}), nested in lists -> nested bytes."""
    if isinstance(value, list):
        return [_strings(v) for v in value]
    if isinstance(value, dict):
        return _b64decode(value["b64"])
    return value.encode("utf-8")


def _tensor(name, value, dtype):
    """A JSON value -> TensorProto of the signature's dtype.

    Raises:
        ServingError: INVALID_ARGUMENT: a value not of the dtype (TensorFlow
            Serving's text), or lists that are not rectangular.
    """
    import tensorflow as tf

    check_json_values(value, dtype)
    try:
        if dtype == contract.DT_STRING:
            array = np.array(_strings(value), dtype=object)
            if array.size and not isinstance(array.flat[0], bytes):
                raise ValueError("the lists are not rectangular")
            return tf.make_tensor_proto(array, tf.string)
        array = np.asarray(value, dtype=tf.as_dtype(dtype).as_numpy_dtype)
        return tf.make_tensor_proto(array, tf.as_dtype(dtype))
    except (TypeError, ValueError, OverflowError) as error:
        raise ServingError(INVALID, f"input {bounded(name)} is not a valid "
                                    f"{validation.dtype_name(dtype)} tensor: {error}") from None


def _json_value(array):
    if array.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(
            array).tolist() if array.size else array.tolist()
    return array.tolist()


def parse_json_body(data):
    """A request body -> its JSON object, with TensorFlow Serving's errors
    (json_tensor.cc, `ParseJson`); the nesting is checked first.

    Raises:
        ServingError: INVALID_ARGUMENT: empty, too deep, not JSON, not an object.
    """
    if not data:
        raise ServingError(INVALID, "JSON Parse error: The document is empty")
    check_json_depth(data)
    try:
        body = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ServingError(INVALID, f"JSON Parse error: Invalid encoding in string. at "
                                    f"offset: {error.start}") from None
    except json.JSONDecodeError as error:
        raise ServingError(INVALID, f"JSON Parse error: {error.msg} at offset: "
                                    f"{error.pos}") from None
    except RecursionError:
        raise ServingError(INVALID, "JSON Parse error: the document nests too deep") from None
    if not isinstance(body, dict):
        raise ServingError(INVALID, f"JSON Value: {_json_text(body)} Is not object")
    return body


class _PredictBody:
    """A `:predict` body, parsed before any model is looked at.

    Args:
        data: the request body (bytes).

    Attributes:
        signature: the signature key asked for.
        row_format: True for `instances` (answered as `predictions`),
            False for `inputs` (answered as `outputs`).

    Raises:
        ServingError: INVALID_ARGUMENT with TensorFlow Serving's text
            (json_tensor.cc, `FillPredictRequestFromJson`): not a JSON
            object, or not with exactly one of "instances" and "inputs".
    """

    def __init__(self, data):
        body = parse_json_body(data)
        self.signature = body.get("signature_name", "")
        if not isinstance(self.signature, str):
            raise ServingError(INVALID, f"JSON Value: {_json_text(body)} not formatted "
                                        "correctly. 'signature_name' key must be a string "
                                        "value.")
        self.signature = self.signature or contract.DEFAULT_SIGNATURE
        if "instances" in body and "inputs" in body:
            raise ServingError(INVALID, f"JSON Value: {_json_text(body)} Not formatted "
                                        "correctly expecting only one of 'inputs' or "
                                        "'instances' keys to exist ")
        if "instances" not in body and "inputs" not in body:
            raise ServingError(INVALID, "Missing 'inputs' or 'instances' key")
        self.row_format = "instances" in body
        self._values = body["instances"] if self.row_format else body["inputs"]
        if self.row_format and not isinstance(self._values, list):
            raise ServingError(INVALID, f"JSON Value: {_json_text(body)} Excepting "
                                        "'instances' to be an list/array")
        if self.row_format and not self._values:
            raise ServingError(INVALID, f"JSON Value: {_json_text(body)} No values in "
                                        "'instances' array")

    def tensors(self, signature_def):
        """{input name: TensorProto} of the body, with the signature's dtypes."""
        specs = signature_def.inputs
        default_input = (next(iter(specs)) if len(specs) == 1
                         else validation.batch_input(signature_def))
        if self.row_format:
            inputs = self._columns(self._values, specs, default_input)
        elif isinstance(self._values, dict) and not _is_b64(self._values):
            inputs = self._values
        else:
            inputs = {default_input: self._values}
        tensors = {}
        for key, value in inputs.items():
            if key not in specs:
                raise ServingError(INVALID, f"signature {bounded(self.signature)} has no input "
                                            f"{bounded(key)} (inputs: {', '.join(sorted(specs))})")
            tensors[key] = _tensor(key, value, specs[key].dtype)
        return tensors

    @staticmethod
    def _check_row(index, row, specs, default_input):
        """Checks the values of one instance, with TensorFlow Serving's text
        (json_tensor.cc, `FillTensorMapFromInstancesList`)."""
        items = row.items() if isinstance(row, dict) and not _is_b64(row) else None
        try:
            if items is None:
                check_json_values(row, specs[default_input].dtype)
                return
            for key, value in items:
                if key in specs:
                    check_json_values(value, specs[key].dtype)
        except ServingError as error:
            where = f" key: {key}" if items is not None else ""
            raise ServingError(error.code, errors.cut(
                f"Failed to process element: {index}{where} of 'instances' list. Error: "
                f"{error.code.name}: {error}")) from None

    @staticmethod
    def _columns(instances, specs, default_input):
        """Row format -> {input name: value}: batch inputs stacked, inputs
        without a batch axis (scalars) equal in every row. A `{"b64": ...}`
        instance is a value, not an object of inputs."""
        objects = [isinstance(row, dict) and not _is_b64(row) for row in instances]
        if not all(objects):
            if any(objects) or default_input is None:
                raise ServingError(INVALID, 'instances must all be objects (input name -> '
                                            'value), or all values of the only batched input')
            for index, row in enumerate(instances):
                _PredictBody._check_row(index, row, specs, default_input)
            return {default_input: instances}
        columns = {}
        for index, row in enumerate(instances):
            if set(row) != set(instances[0]):
                raise ServingError(INVALID, "every instance must name the same inputs")
            _PredictBody._check_row(index, row, specs, default_input)
            for key, value in row.items():
                columns.setdefault(key, []).append(value)
        inputs = {}
        for key, values in columns.items():
            info = specs.get(key)
            if info is not None and not info.tensor_shape.unknown_rank \
                    and len(info.tensor_shape.dim) == 0:
                if any(v != values[0] for v in values):
                    raise ServingError(INVALID, f"input {key!r} has no batch axis: it must be "
                                                "equal in every instance")
                inputs[key] = values[0]
            else:
                inputs[key] = values
        return inputs


class RestApi:
    """The REST API as a WSGI application over the gRPC servicers.

    Args:
        runtime: the servicers' `Runtime` (its limits: body size, requests
            in progress; each request's deadline).
        interceptor: the server's `ServingInterceptor` (status codes,
            metrics, log lines).
        prediction, model: the `PredictionServicer` and `ModelServicer`.
    """

    def __init__(self, runtime, interceptor, prediction, model):
        self.runtime = runtime
        self.interceptor = interceptor
        self.prediction = prediction
        self.model = model
        self._slots = threading.BoundedSemaphore(runtime.limits.max_concurrent_rpcs)

    def __call__(self, environ, start_response):
        request = Request(environ)
        if not self._slots.acquire(blocking=False):
            response = self._error("RESOURCE_EXHAUSTED", (
                f"more than {self.runtime.limits.max_concurrent_rpcs} requests in progress "
                "(max_concurrent_rpcs)"))
        else:
            try:
                response = self._answer(request)
            finally:
                self._slots.release()
        return response(environ, start_response)

    def _answer(self, request):
        """The response to a request: its route's, or a JSON error (never
        Werkzeug's HTML page) with one log line for an unexpected one."""
        try:
            return self._dispatch(request)
        except _Aborted as error:
            return self._error(error.code.name, str(error))
        except ServingError as error:
            return self._error(error.code.name, str(error))
        except _TooLarge:
            response = self._error_with_status(413, (
                f"the body is over {self.runtime.limits.max_message_bytes} bytes "
                "(max_message_bytes)"))
            response.headers["Connection"] = "close"  # the rest of the body is unread
            return response
        except HTTPException as error:
            return self._error_with_status(error.code, error.description)
        except Exception as error:  # noqa: BLE001 - every error answers JSON
            code, message = status_of(error)
            frames = traceback.extract_tb(error.__traceback__)[-3:]
            log.error("internal error", extra={"fields": {
                "event": "internal_error", "api": "rest", "method": request.method,
                "path": errors.cut(request.path, 200), "error": message,
                "where": " <- ".join(f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})"
                                     for f in reversed(frames))}})
            return self._error(code.name, message)

    @staticmethod
    def _error(code_name, message):
        return RestApi._error_with_status(HTTP_STATUS.get(code_name, 500), message)

    @staticmethod
    def _error_with_status(status, message):
        return Response(json.dumps({"error": errors.cut(message)}), status=status,
                        mimetype="application/json")

    def _call(self, short, behavior, request):
        """`behavior(request, context)` as one accounted call; raises `_Aborted`
        with the status of an error."""
        return self.interceptor.handle(short, behavior, request, _Context(), api="rest")

    def _refuse(self, short, request, error):
        """Answers `error` as one accounted call (counted, logged): raises `_Aborted`."""
        def refuse(request_, context):
            raise error

        return self._call(short, refuse, request)

    def _body(self, request):
        """The request body, counted while it is read (a chunked body has no
        Content-Length to check first).

        Raises:
            _TooLarge: over `max_message_bytes` (413).
        """
        limit, environ = self.runtime.limits.max_message_bytes, request.environ
        length = request.content_length
        if length is not None and length > limit:
            raise _TooLarge()
        if not environ.get("wsgi.input_terminated"):
            return request.get_data()  # Content-Length bounded (none: empty)
        stream, parts, size = environ["wsgi.input"], [], 0
        while size <= limit:
            part = stream.read(min(1 << 16, limit + 1 - size))
            if not part:
                return b"".join(parts)
            parts.append(part)
            size += len(part)
        while size < limit + _DRAIN_BYTES and stream.read(1 << 16):
            size += 1 << 16
        raise _TooLarge()

    def _dispatch(self, request):
        """TensorFlow Serving's dispatch (http_rest_api_handler.cc,
        `ProcessRequest`): routes are matched on the raw path and query,
        case-insensitively; anything else under /v1/ is a malformed request
        (400); other paths are not its API (404)."""
        method, path = request.method, _request_path(request.environ)
        if not _API.fullmatch(path):
            return self._error("NOT_FOUND", f"no route {bounded(path)} (TensorFlow Serving's "
                                            "/v1/models/NAME[...] routes)")
        match = (_PREDICT.fullmatch(path) if method == "POST"
                 else _MODEL.fullmatch(path) if method == "GET" else None)
        if match:
            name, version, label = _route_args(*match.groups()[:3])
            verb = match.group(4)
            if method == "POST" and verb == "predict":
                return self._predict(name, version, label, self._body(request))
            if method == "POST" and verb in ("classify", "regress"):
                return self._classify(verb, name, version, label, self._body(request))
            if method == "GET" and not name:
                return self._error("INVALID_ARGUMENT", "Missing model name in request.")
            if method == "GET" and verb == "metadata":
                return self._metadata(name, version, label)
            if method == "GET":
                return self._status(name, version)
        return self._error("INVALID_ARGUMENT", f"Malformed request: {method} {path}")

    # ------------------------------------------------------------ routes

    def _status(self, name, version):
        """A model's version status. A version label is not looked at: TensorFlow
        Serving's status reads only a version (get_model_status_impl.cc)."""
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        _model_spec(request.model_spec, name, version, None)
        response = self._call("GetModelStatus", self.model.GetModelStatus, request)
        body = json_format.MessageToDict(response, always_print_fields_with_no_presence=True,
                                         preserving_proto_field_name=True)
        return Response(json.dumps(body), mimetype="application/json")

    def _metadata(self, name, version, label):
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=["signature_def"])
        _model_spec(request.model_spec, name, version, label)
        response = self._call("GetModelMetadata", self.prediction.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        # TensorFlow Serving prints fields without presence too, with the proto
        # field names (http_rest_api_util.cc, ToJsonString: always_print_primitive_fields,
        # preserve_proto_field_names).
        options = {"always_print_fields_with_no_presence": True,
                   "preserving_proto_field_name": True}
        body = {
            "model_spec": json_format.MessageToDict(response.model_spec, **options),
            "metadata": {"signature_def": json_format.MessageToDict(signature_map, **options)},
        }
        return Response(json.dumps(body), mimetype="application/json")

    def _classify(self, verb, name, version, label, data):
        """`:classify` / `:regress`, refused as TensorFlow Serving refuses them
        for a model without such signatures (classifier.cc and regressor.cc,
        `GetClassificationSignature` / `GetRegressionSignature`): 400 naming
        the signature's method. Counted and logged as Classify / Regress.
        """
        from tensorflow_serving.apis import get_model_metadata_pb2

        short, kind = {"classify": ("Classify", "classification"),
                       "regress": ("Regress", "regression")}[verb]
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=["signature_def"])
        _model_spec(request.model_spec, name, version, label)
        try:
            signature = parse_json_body(data).get("signature_name") or \
                contract.DEFAULT_SIGNATURE
        except ServingError as error:
            return self._refuse(short, request, error)

        def refuse(request_, context):
            response = self.prediction.GetModelMetadata(request_, context)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signature_map)
            if not isinstance(signature, str) or signature not in signature_map.signature_def:
                raise ServingError(INVALID, errors.cut(
                    f"No signature was found with the name: {signature}"))
            raise ServingError(INVALID, (
                f"Expected {kind} signature method_name to be tensorflow/serving/{verb}. "
                f"Was: {signature_map.signature_def[signature].method_name}"))

        return self._call(short, refuse, request)

    def _predict(self, name, version, label, data):
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        _model_spec(request.model_spec, name, version, label)
        try:
            body = _PredictBody(data)
        except ServingError as error:
            return self._refuse("Predict", request, error)
        request.model_spec.signature_name = body.signature

        def predict(request_, context):
            return self.prediction.predict(request_, self.runtime.deadline(context),
                                           read_inputs=body.tensors)

        response = self._call("Predict", predict, request)
        outputs = {key: _json_value(tf.make_ndarray(proto))
                   for key, proto in sorted(response.outputs.items())}
        if body.row_format:
            rows = len(next(iter(outputs.values())))
            if len(outputs) == 1:
                answer = {"predictions": next(iter(outputs.values()))}
            else:
                answer = {"predictions": [{k: v[i] for k, v in outputs.items()}
                                          for i in range(rows)]}
        else:
            answer = {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
        return Response(json.dumps(answer, ensure_ascii=False), mimetype="application/json")


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without its per-request access log (the server
    writes one JSON line per request), and with a socket timeout so an idle
    connection does not hold its thread forever."""

    timeout = 60

    def log_request(self, code="-", size="-"):
        pass


class _LazyHandshakeContext(ssl.SSLContext):
    """Defers each connection's TLS handshake to its own thread (the first
    read): done in `accept`, one client that never sends a ClientHello
    would stall every other connection."""

    def wrap_socket(self, sock, *args, **kwargs):
        kwargs["do_handshake_on_connect"] = False
        return super().wrap_socket(sock, *args, **kwargs)


class RestServer:
    """Serves a `RestApi` on a port, on Werkzeug's threaded WSGI server.

    Args:
        app: the `RestApi`.
        host, port: where to listen (port 0: any free port).
        tls_cert, tls_key, tls_client_ca: PEM files, as for gRPC.
    """

    def __init__(self, app, host, port, tls_cert=None, tls_key=None, tls_client_ca=None):
        context = None
        if tls_cert:
            context = _LazyHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls_cert, tls_key)
            if tls_client_ca:
                context.load_verify_locations(tls_client_ca)
                context.verify_mode = ssl.CERT_REQUIRED
        self._http = make_server(host, port, app, threaded=True, ssl_context=context,
                                 request_handler=_QuietHandler)
        self._http.daemon_threads = True
        self.port = self._http.server_port
        self._thread = threading.Thread(target=self._http.serve_forever, name="rest-api",
                                        daemon=True)
        self._thread.start()

    def close(self):
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)
