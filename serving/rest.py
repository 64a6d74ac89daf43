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
logs are the gRPC path's; a `:predict` body is parsed first (`PredictBody`)
and converted to tensors inside `Predict`, with the dtypes of the signature
it asks for. This module holds the routing and the WSGI application
(`RestApi`); the request bodies and the answers' JSON are `rest_json.py`'s;
the HTTP server (`RestServer`: Cheroot, keep-alive, a bounded pool of
workers, read deadlines, TLS with the gRPC flags, graceful stop) is
`rest_server.py`'s. `RestApi` is a plain WSGI application, so it can also
be mounted on any WSGI server.
"""

import json
import re
import threading
import traceback
import urllib.parse

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from keras_rnn.serving import contract, errors
from keras_rnn.serving.errors import ServingError, bounded, status_of
from keras_rnn.serving.observability import log
from keras_rnn.serving.rest_json import INT64_MAX, INVALID, PredictBody, parse_json_body

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
# What is read and dropped of a chunked body past the limit before the 413
# is sent (so the client reads the answer rather than a reset).
_DRAIN_BYTES = 1 << 20


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
        if number > INT64_MAX:
            raise ServingError(INVALID, errors.cut(
                f"Failed to convert version: {version} to numeric."))
        version = number
    decode = lambda text: urllib.parse.unquote(text, errors="replace")  # noqa: E731
    return (decode(name) if name else "", version,
            decode(label) if label is not None else None)


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
        if path == "/v2" or path.startswith(("/v2/", "/v2?")):  # KServe's v2 protocol
            from keras_rnn.serving.kserve_rest import answer_rest
            return answer_rest(self, request, path)
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
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        _model_spec(request.model_spec, name, version, label)
        try:
            body = PredictBody(data)
        except ServingError as error:
            return self._refuse("Predict", request, error)
        request.model_spec.signature_name = body.signature

        def predict(request_, context):
            return self.prediction.predict(request_, self.runtime.deadline(context),
                                           read_inputs=body.tensors)

        response = self._call("Predict", predict, request)
        return Response(body.response_json(response), mimetype="application/json")
