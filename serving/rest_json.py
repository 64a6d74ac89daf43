"""The JSON side of TensorFlow Serving's REST API (`rest.py` routes and serves it).

What a request body is and what a `:predict` answer looks like, with
TensorFlow Serving's texts (tensorflow_serving/util/json_tensor.cc):

- `parse_json_body`: a body -> its JSON object; its nesting depth is checked
  first, without parsing or recursion (`check_json_depth`, `MAX_JSON_DEPTH`).
- `PredictBody`: a `:predict` body, `{"instances": [...]}` (row format: each
  instance a sentence, or an object of input name -> value; inputs without
  a batch axis equal in every instance) or `{"inputs": ...}` (columnar),
  converted to TensorProtos with the dtypes of the signature it asks for;
  `{"b64": "..."}` values are bytes.
- `check_json_values`: every JSON value checked against a dtype as
  json_tensor.cc's `AddValueToTensor` does (JSON type, integer range,
  float precision).
- `PredictBody.response_json`: a `PredictResponse` -> `{"predictions": ...}`
  or `{"outputs": ...}`.
"""

import base64
import json
import re

import grpc
import numpy as np

from keras_rnn.serving import contract, errors, validation
from keras_rnn.serving.errors import ServingError, bounded

INVALID = grpc.StatusCode.INVALID_ARGUMENT
INT64_MAX = 2 ** 63 - 1
# Deepest JSON nesting a body may have: a translator's inputs have rank <= 1,
# so a request needs 4 levels; NumPy arrays have at most 32 (or 64) axes.
MAX_JSON_DEPTH = 32
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
               9: (-2 ** 63, INT64_MAX), 22: (0, 2 ** 32 - 1), 23: (0, 2 ** 64 - 1)}
_MAX_VALUE_CHARS = 200  # of a JSON value quoted in an error


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


class PredictBody:
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

    def response_json(self, response):
        """A `PredictResponse` -> the JSON text of the answer: `{"predictions":
        [...]}` (one entry per instance: the value of the only output, or an
        object of outputs) for the row format, `{"outputs": ...}` for the
        columnar one."""
        import tensorflow as tf

        outputs = {key: _json_value(tf.make_ndarray(proto))
                   for key, proto in sorted(response.outputs.items())}
        if self.row_format:
            rows = len(next(iter(outputs.values())))
            if len(outputs) == 1:
                answer = {"predictions": next(iter(outputs.values()))}
            else:
                answer = {"predictions": [{k: v[i] for k, v in outputs.items()}
                                          for i in range(rows)]}
        else:
            answer = {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
        return json.dumps(answer, ensure_ascii=False)

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
                PredictBody._check_row(index, row, specs, default_input)
            return {default_input: instances}
        columns = {}
        for index, row in enumerate(instances):
            if set(row) != set(instances[0]):
                raise ServingError(INVALID, "every instance must name the same inputs")
            PredictBody._check_row(index, row, specs, default_input)
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
