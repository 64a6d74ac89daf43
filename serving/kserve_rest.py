"""The REST side of KServe's Open Inference Protocol (v2): its JSON over the
gRPC servicer of `kserve.py`, dispatched by `rest.RestApi` for paths under /v2.

Routes, bodies and errors are the protocol's (https://github.com/kserve/kserve,
docs/predict-api/v2/required_api.md, "HTTP/REST"):

- `GET /v2/health/live`, `GET /v2/health/ready`,
  `GET /v2/models/NAME[/versions/V]/ready`: 200 (true) or 400 (false), no body.
- `GET /v2`: `{"name", "version", "extensions"}`.
- `GET /v2/models/NAME[/versions/V]`: `{"name", "versions", "platform",
  "inputs", "outputs"}`, each tensor `{"name", "datatype", "shape"}`.
- `POST /v2/models/NAME[/versions/V]/infer` with `{"id", "parameters",
  "inputs": [{"name", "shape", "datatype", "data"}], "outputs": [{"name"}]}`:
  `{"model_name", "model_version", "id", "outputs": [...]}`; `data` nested
  or flat (answers are flat), BYTES as strings. The binary tensor data
  extension is refused (400).
- Errors: `{"error": "..."}` with the HTTP status of the gRPC code
  (INVALID_ARGUMENT 400, NOT_FOUND 404, UNAVAILABLE 503, ...); wrong method 405.
"""

import json
import re
import urllib.parse

from keras_rnn.serving import errors
from keras_rnn.serving.errors import ServingError, bounded
from keras_rnn.serving.kserve import (CONTENTS, INVALID, MAX_INT64, InferenceServicer,
                                      messages)

_MODEL_ROUTE = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?")


def _json_infer_request(body, name, version):
    """An inference request's JSON object -> a `ModelInferRequest`
    (required_api.md, "Inference Request JSON Object"): nested or flat
    `data`; BYTES values are strings (UTF-8).

    Args:
        body: the parsed JSON object.
        name, version: the route's model name and version ("" for none).

    Returns:
        The `ModelInferRequest`.

    Raises:
        ServingError: INVALID_ARGUMENT naming what is wrong.
    """
    pb2 = messages()
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
                type(d) is int and 0 <= d <= MAX_INT64 for d in shape):
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
    """JSON `$parameters` (name -> string, number or boolean) -> InferParameters.

    Args:
        parameters: the JSON value.
        into: the proto map to fill.
        where: what they belong to, for errors.

    Raises:
        ServingError: INVALID_ARGUMENT: not an object, or a value of another type.
    """
    if not isinstance(parameters, dict):
        raise ServingError(INVALID, f"the parameters of {where} must be an object")
    for key, value in parameters.items():
        if isinstance(value, bool):
            into[key].bool_param = value
        elif type(value) is int and abs(value) <= MAX_INT64:
            into[key].int64_param = value
        elif isinstance(value, str):
            into[key].string_param = value
        elif not isinstance(value, float):  # numbers the proto has no field for are dropped
            raise ServingError(INVALID, f"parameter {bounded(key)} of {where} must be a "
                                        "string, number or boolean")


def _flatten(data, name):
    """`data` (nested arrays, row-major) -> a flat list, without recursion.

    Args:
        data: the input's JSON `data`.
        name: the input's name, for errors.

    Returns:
        The values, flat.

    Raises:
        ServingError: INVALID_ARGUMENT when `data` is not an array.
    """
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
    """Checks the JSON type of each value: strings for BYTES, booleans for
    BOOL, integers for INT/UINT, numbers for FP.

    Raises:
        ServingError: INVALID_ARGUMENT quoting the first wrong value.
    """
    kinds = {"BYTES": (str,), "BOOL": (bool,)}
    ok = kinds.get(datatype) or ((int, float) if datatype.startswith("FP") else (int,))
    for value in values:
        if not isinstance(value, ok) or (isinstance(value, bool) and bool not in ok):
            raise ServingError(INVALID, (
                f"input {bounded(name)} has datatype {datatype}; a value is "
                f"{errors.cut(json.dumps(value), 100)}"))


def _json_infer_response(response):
    """A `ModelInferResponse` -> its JSON object ("Inference Response JSON
    Object"): flat `data`; BYTES values as strings.

    Args:
        response: the `ModelInferResponse` (its outputs in `contents`).

    Returns:
        The JSON object (a dict).
    """
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

    pb2, servicer = messages(), InferenceServicer(api.runtime, api.prediction)
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
