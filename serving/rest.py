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
  for the gRPC code (INVALID_ARGUMENT 400, NOT_FOUND 404, ...).
  Labels are `serve --version-label`'s; an unknown one answers 400.

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

import grpc
import numpy as np
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from keras_rnn.serving import contract, validation
from keras_rnn.serving.errors import ServingError, bounded

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
# TensorFlow Serving's route patterns.
_PREDICT = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(\w+)")
_MODEL = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata)?/?")


class _Aborted(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


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
        spec.version.value = int(version)
    if label is not None:
        spec.version_label = label


def _strings(name, value):
    """JSON strings (or {"b64": ...}), nested in lists -> nested bytes."""
    if isinstance(value, list):
        return [_strings(name, v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError as error:
            raise ServingError(INVALID, f"input {name!r}: bad base64: {error}") from None
    raise ServingError(INVALID, f"input {name!r} must hold strings (or {{\"b64\": ...}}); "
                                f"got {type(value).__name__}")


def _tensor(name, value, dtype):
    """A JSON value -> TensorProto of the signature's dtype."""
    import tensorflow as tf

    try:
        if dtype == contract.DT_STRING:
            array = np.array(_strings(name, value), dtype=object)
            if array.size and not isinstance(array.flat[0], bytes):
                raise ValueError("the lists are not rectangular")
            return tf.make_tensor_proto(array, tf.string)
        array = np.asarray(value, dtype=tf.as_dtype(dtype).as_numpy_dtype)
        return tf.make_tensor_proto(array, tf.as_dtype(dtype))
    except ServingError:
        raise
    except (TypeError, ValueError, OverflowError) as error:
        raise ServingError(INVALID, f"input {name!r} is not a valid "
                                    f"{validation.dtype_name(dtype)} tensor: {error}") from None


def _json_value(array):
    if array.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(
            array).tolist() if array.size else array.tolist()
    return array.tolist()


class _PredictBody:
    """A `:predict` body, parsed before any model is looked at.

    Args:
        data: the request body (bytes).

    Attributes:
        signature: the signature key asked for.
        row_format: True for `instances` (answered as `predictions`),
            False for `inputs` (answered as `outputs`).

    Raises:
        ServingError: INVALID_ARGUMENT: not JSON, or not an object with
            exactly one of "instances" and "inputs".
    """

    def __init__(self, data):
        try:
            body = json.loads(data)
        except ValueError as error:
            raise ServingError(INVALID, f"the body is not JSON: {error}") from None
        if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
            raise ServingError(INVALID, 'the body must be a JSON object with one of "instances" '
                                        '(row format) or "inputs" (columnar format)')
        self.signature = body.get("signature_name") or contract.DEFAULT_SIGNATURE
        if not isinstance(self.signature, str):
            raise ServingError(INVALID, "signature_name must be a string")
        self.row_format = "instances" in body
        self._values = body["instances"] if self.row_format else body["inputs"]

    def tensors(self, signature_def):
        """{input name: TensorProto} of the body, with the signature's dtypes."""
        specs = signature_def.inputs
        default_input = (next(iter(specs)) if len(specs) == 1
                         else validation.batch_input(signature_def))
        if self.row_format:
            inputs = self._columns(self._values, specs, default_input)
        elif isinstance(self._values, dict):
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
    def _columns(instances, specs, default_input):
        """Row format -> {input name: value}: batch inputs stacked, inputs
        without a batch axis (scalars) equal in every row."""
        if not isinstance(instances, list) or not instances:
            raise ServingError(INVALID, '"instances" must be a non-empty list')
        if not all(isinstance(row, dict) for row in instances):
            if any(isinstance(row, dict) for row in instances) or default_input is None:
                raise ServingError(INVALID, 'instances must all be objects (input name -> '
                                            'value), or all values of the only batched input')
            return {default_input: instances}
        columns = {}
        for row in instances:
            if set(row) != set(instances[0]):
                raise ServingError(INVALID, "every instance must name the same inputs")
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
        limits = self.runtime.limits
        request = Request(environ)
        request.max_content_length = limits.max_message_bytes
        if not self._slots.acquire(blocking=False):
            response = self._error("RESOURCE_EXHAUSTED", (
                f"more than {limits.max_concurrent_rpcs} requests in progress "
                "(max_concurrent_rpcs)"))
        else:
            try:
                response = self._dispatch(request)
            except _Aborted as error:
                response = self._error(error.code.name, str(error))
            except HTTPException as error:
                response = Response(json.dumps({"error": error.description}),
                                    status=error.code, mimetype="application/json")
            finally:
                self._slots.release()
        return response(environ, start_response)

    @staticmethod
    def _error(code_name, message):
        return Response(json.dumps({"error": message}), status=HTTP_STATUS.get(code_name, 500),
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

    def _dispatch(self, request):
        path = request.path
        match = _PREDICT.fullmatch(path)
        if match:
            if request.method != "POST":
                return self._error("INVALID_ARGUMENT", f"{path} takes POST")
            name, version, label, verb = match.groups()
            if verb != "predict":
                return self._error("UNIMPLEMENTED", (
                    f"{bounded(verb)} is not supported: translators have Predict signatures"))
            return self._predict(name, version, label, request.get_data())
        match = _MODEL.fullmatch(path)
        if match:
            if request.method != "GET":
                return self._error("INVALID_ARGUMENT", f"{path} takes GET")
            name, version, label, metadata = match.groups()
            if metadata:
                return self._metadata(name, version, label)
            return self._status(name, version, label)
        return self._error("NOT_FOUND", f"no route {bounded(path)} (TensorFlow Serving's "
                                        "/v1/models/NAME[...] routes)")

    # ------------------------------------------------------------ routes

    def _status(self, name, version, label):
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        _model_spec(request.model_spec, name, version, label)
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
        body = {
            "model_spec": json_format.MessageToDict(response.model_spec,
                                                    preserving_proto_field_name=True),
            "metadata": {"signature_def": json_format.MessageToDict(
                signature_map, preserving_proto_field_name=True)},
        }
        return Response(json.dumps(body), mimetype="application/json")

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
