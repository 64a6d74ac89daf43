"""Request checks: every input named, typed, shaped and within the limits
before a request is queued; errors are INVALID_ARGUMENT naming the input.

    inputs = check_inputs(servable, signature, request.inputs, limits)

Each `TensorProto` is checked as it came over the wire before anything is
materialized (`check_tensor_proto`): its dtype, its declared shape against
the signature's, its declared size against the limits, and its number of
values against its declared size. (`tf.make_ndarray` repeats the last value
to fill a larger declared shape: a 35-byte request declaring 100,000,000
strings would otherwise allocate gigabytes.)

`limits` are the server's `runtime.Limits` (`max_request_sentences`,
`max_sentence_chars`, `max_message_bytes`, `max_request_cost`); scalar
ranges come from the export's keras_rnn.json (`contract.SCALAR_RANGES`).
What a request will cost is known from its shapes before it runs
(`check_cost`): its decoder steps, and the size its response can reach.
Each check is made once per request: the number of sentences on the proto
for `Predict` (`check_tensor_proto`), on the request for `Translate`
(`check_sentence_count`).
"""

import grpc
import numpy as np

from keras_rnn.serving import contract
from keras_rnn.serving.errors import ServingError, bounded

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def version_of(model_spec, labels=None):
    """The requested version, or None (the newest served).

    Args:
        model_spec: a `tensorflow.serving.ModelSpec`.
        labels: {label: version} of the model (`Runtime.version_of`).

    Raises:
        ServingError: INVALID_ARGUMENT for a label that is not set, with
            TensorFlow Serving's message.
    """
    if model_spec.HasField("version_label"):
        label, labels = model_spec.version_label, labels or {}
        if label not in labels:
            known = (f"labels: {', '.join(sorted(labels))}" if labels
                     else "none set: serve --version-label LABEL=VERSION")
            raise ServingError(INVALID, (
                f"Unrecognized servable version label: {bounded(label)} ({known})"))
        return labels[label]
    return model_spec.version.value if model_spec.HasField("version") else None


def batch_input(signature_def):
    """The input a signature can be batched on: the only input of shape
    `[-1]` when every other input is a scalar; None otherwise."""
    vectors, scalars = [], []
    for name, info in signature_def.inputs.items():
        dims = [d.size for d in info.tensor_shape.dim]
        if info.tensor_shape.unknown_rank:
            return None
        if dims == [-1]:
            vectors.append(name)
        elif dims == []:
            scalars.append(name)
        else:
            return None
    return vectors[0] if len(vectors) == 1 else None


def typed(servable, signature, inputs):
    """`inputs` as NumPy arrays of the signature's dtypes (strings as they are)."""
    import tensorflow as tf

    spec = servable.signature_defs[signature].inputs
    return {k: np.asarray(v, dtype=tf.as_dtype(spec[k].dtype).as_numpy_dtype)
            if spec[k].dtype != tf.string.as_datatype_enum else v
            for k, v in inputs.items()}


def dtype_name(enum):
    import tensorflow as tf

    try:
        return tf.as_dtype(enum).name
    except TypeError:
        return f"dtype enum {enum}"


def check_shape(name, shape, expected):
    if expected.unknown_rank:
        return
    dims = [d.size for d in expected.dim]
    if len(shape) != len(dims) or any(d not in (-1, n) for d, n in zip(dims, shape)):
        want = "[" + ", ".join("?" if d == -1 else str(d) for d in dims) + "]"
        raise ServingError(INVALID, f"input {bounded(name)} must have shape {want}; "
                                    f"got {list(shape)}")


# DataType enum -> (TensorProto field holding its values, values per element).
_VALUE_FIELDS = {1: ("float_val", 1), 2: ("double_val", 1), 3: ("int_val", 1),
                 4: ("int_val", 1), 5: ("int_val", 1), 6: ("int_val", 1),
                 7: ("string_val", 1), 8: ("scomplex_val", 2), 9: ("int64_val", 1),
                 10: ("bool_val", 1), 14: ("half_val", 1), 17: ("int_val", 1),
                 18: ("dcomplex_val", 2), 19: ("half_val", 1), 22: ("uint32_val", 1),
                 23: ("uint64_val", 1)}


def check_tensor_proto(name, proto, expected, limits, batched=False):
    """Checks a request tensor on the proto, before it is converted.

    Args:
        name: the input name.
        proto: the request's `TensorProto`.
        expected: the signature's `TensorInfo` of the input.
        limits: the `Limits` (`max_request_sentences`,
            `max_sentence_chars`, `max_message_bytes`).
        batched: the input is the signature's batch (sentences) input.

    Raises:
        ServingError: INVALID_ARGUMENT naming the input and the limit.
    """
    import tensorflow as tf

    if proto.dtype != expected.dtype:
        raise ServingError(INVALID, (
            f"input {name!r} must be {tf.as_dtype(expected.dtype).name}; got "
            f"{dtype_name(proto.dtype)}"))
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise ServingError(INVALID, f"input {name!r} declares an unknown rank")
    dims = [d.size for d in shape.dim]
    if any(d < 0 for d in dims):
        raise ServingError(INVALID, f"input {name!r} declares a negative dimension: {dims}")
    check_shape(name, dims, expected.tensor_shape)
    size = 1
    for d in dims:
        size *= d
    if batched and size > limits.max_request_sentences:
        raise ServingError(INVALID, (
            f"input {name!r} declares {size} sentences; the limit is "
            f"{limits.max_request_sentences} (max_request_sentences)"))
    if size > limits.max_message_bytes:
        raise ServingError(INVALID, (
            f"input {name!r} declares shape {dims} ({size} values); the limit is "
            f"{limits.max_message_bytes} values (max_message_bytes)"))
    if proto.dtype not in _VALUE_FIELDS:
        raise ServingError(INVALID, f"input {name!r}: dtype {dtype_name(proto.dtype)} is "
                                    "not supported")
    field, per_element = _VALUE_FIELDS[proto.dtype]
    if proto.tensor_content:
        if proto.dtype == contract.DT_STRING:
            raise ServingError(INVALID, f"input {name!r}: string tensors carry their values "
                                        "in string_val, not tensor_content")
        itemsize = tf.as_dtype(proto.dtype).size
        if len(proto.tensor_content) % itemsize:
            raise ServingError(INVALID, (
                f"input {name!r}: tensor_content has {len(proto.tensor_content)} bytes, not "
                f"a multiple of {itemsize} ({dtype_name(proto.dtype)})"))
        count = len(proto.tensor_content) // itemsize
    else:
        count = len(getattr(proto, field)) // per_element
    if count != size:
        raise ServingError(INVALID, (
            f"input {name!r} declares shape {dims} ({size} values) but holds {count} "
            f"value(s)"))
    if proto.dtype == contract.DT_STRING:
        limit = 4 * limits.max_sentence_chars  # UTF-8: at most 4 bytes per character
        for index, value in enumerate(proto.string_val):
            if len(value) > limit:
                raise ServingError(INVALID, (
                    f"input {name!r}: string {index} has {len(value)} bytes; the limit is "
                    f"{limit} (4 x max_sentence_chars)"))


def check_inputs(servable, signature, request_inputs, limits):
    """Turns request TensorProtos into complete, checked NumPy inputs.

    Args:
        servable: the `Servable`.
        signature: signature key (known to exist).
        request_inputs: map of input name -> `TensorProto`.
        limits: the `Limits` of a request.

    Returns:
        dict of every input name -> NumPy array.

    Raises:
        ServingError: INVALID_ARGUMENT naming the bad input.
    """
    import tensorflow as tf

    spec = servable.signature_defs[signature].inputs
    batched = servable.batch_inputs.get(signature)
    inputs = {}
    for name, proto in request_inputs.items():
        if name not in spec:
            raise ServingError(INVALID, f"signature {bounded(signature)} has no input "
                                        f"{bounded(name)} (inputs: {', '.join(sorted(spec))})")
        expected = spec[name]
        check_tensor_proto(name, proto, expected, limits, batched=name == batched)
        try:
            value = tf.make_ndarray(proto)
        except Exception as error:  # noqa: BLE001 - malformed tensor from the client
            raise ServingError(INVALID, f"input {name!r} is not a valid tensor: "
                                        f"{type(error).__name__}: {error}") from None
        check_shape(name, value.shape, expected.tensor_shape)
        inputs[name] = value
    for name, value in servable.defaults[signature].items():
        inputs.setdefault(name, value)
    missing = sorted(set(spec) - set(inputs))
    if missing:
        raise ServingError(INVALID, f"missing input(s) {', '.join(missing)} of signature "
                                    f"{signature!r} (they have no default)")
    if batched is not None and spec[batched].dtype == tf.string.as_datatype_enum:
        check_sentences(inputs[batched], limits)
    check_scalars(servable, inputs)
    return inputs


def check_sentence_count(count, limits):
    """Checks the number of sentences of a request (`Translate`'s; for
    `Predict`, `check_tensor_proto` checks the declared shape).

    Raises:
        ServingError: INVALID_ARGUMENT with the limit.
    """
    if count > limits.max_request_sentences:
        raise ServingError(INVALID, f"{count} sentences in one request; the limit is "
                                    f"{limits.max_request_sentences} (max_request_sentences)")


def check_sentences(sentences, limits):
    """Checks that there are sentences, and the UTF-8 and length of each
    (bytes); their number is checked before (`check_sentence_count`,
    `check_tensor_proto`).

    Raises:
        ServingError: INVALID_ARGUMENT naming the sentence.
    """
    if len(sentences) == 0:
        raise ServingError(INVALID, "the batch of sentences is empty")
    for index, sentence in enumerate(sentences):
        try:
            text = sentence.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ServingError(INVALID, f"sentence {index} is not valid UTF-8 "
                                        f"({error.reason} at byte {error.start})") from None
        if len(text) > limits.max_sentence_chars:
            raise ServingError(INVALID, (
                f"sentence {index} has {len(text)} characters; the limit is "
                f"{limits.max_sentence_chars} (max_sentence_chars)"))


def check_scalars(servable, inputs):
    """Checks beam_size, n_best and max_length against the export's limits
    in keras_rnn.json (the graph checks them too).

    Raises:
        ServingError: INVALID_ARGUMENT naming the input and its range.
    """
    for name, (low, bound) in contract.SCALAR_RANGES.items():
        if name not in inputs or inputs[name].shape != ():
            continue
        high = inputs[bound] if bound in inputs else servable.metadata.get(bound)
        value = int(inputs[name])
        if value < low or (high is not None and value > int(high)):
            raise ServingError(INVALID, (
                f"{name}={value} is outside [{low}, {int(high) if high is not None else ''}]"
                f" ({bound})"))


def decoding_settings(servable, inputs):
    """`(beam_size, max_length, n_best)` of a request: its inputs', else the
    export's defaults (keras_rnn.json) for a signature without them; None
    where neither says.

    Args:
        servable: the `Servable`.
        inputs: dict of input name -> value.

    Returns:
        A tuple of three ints or Nones.
    """
    def setting(name, default):
        value = inputs.get(name, default)
        return None if value is None else int(np.asarray(value))

    return (setting(contract.BEAM_SIZE, servable.metadata.get("beam_size")),
            setting(contract.MAX_LENGTH, servable.metadata.get("max_length")),
            setting(contract.N_BEST, 1))


def response_bytes(sentences, n_best, max_length, source_pieces, outputs):
    """The size a translator's response can reach, from its shapes: every
    hypothesis `max_length` + 1 pieces long (with the end token), each
    string with 2 bytes of framing and at least 1 byte per piece, float32
    and int32 values 4 bytes (the alignments, 4 x sentences x n_best x
    target x source pieces, are most of it).

    Args:
        sentences, n_best, max_length: of the request.
        source_pieces: the most subword pieces of a source sentence (with
            its end token).
        outputs: names of the outputs answered.

    Returns:
        The size in bytes.
    """
    rows, target = sentences * n_best, max_length + 1
    sizes = {contract.TRANSLATIONS: rows * (2 + target), contract.SCORES: 4 * rows,
             contract.LENGTHS: 4 * rows, contract.ALIGNMENTS: 4 * rows * target * source_pieces,
             contract.SOURCE_PIECES: 3 * sentences * source_pieces,
             contract.TARGET_PIECES: 3 * rows * target}
    return sum(sizes.get(name, 0) for name in outputs)


def check_cost(servable, signature, inputs, limits, outputs=None):
    """Checks, before a request runs, its decoder steps (sentences x
    beam_size x max_length) against `max_request_cost`, and the size its
    response can reach (`response_bytes`) against `max_message_bytes`.

    Args:
        servable: the `Servable`.
        signature: signature key.
        inputs: dict of every input name -> value (checked).
        limits: the `Limits`.
        outputs: names of the outputs answered (default: all of the
            signature's).

    Raises:
        ServingError: INVALID_ARGUMENT over `max_request_cost`;
            RESOURCE_EXHAUSTED when the response could be over
            `max_message_bytes` (what gRPC answers for a larger message),
            both naming the limit and the value.
    """
    batched = servable.batch_inputs.get(signature)
    beam_size, max_length, n_best = decoding_settings(servable, inputs)
    if batched is None or beam_size is None or max_length is None:
        return
    sentences = inputs[batched]
    count = len(sentences)
    cost = count * beam_size * max_length
    if cost > limits.max_request_cost:
        raise ServingError(INVALID, (
            f"the request asks for {cost} decoder steps ({count} sentences x beam_size "
            f"{beam_size} x max_length {max_length}); the limit is {limits.max_request_cost} "
            "(max_request_cost): send fewer sentences, or a smaller beam_size or max_length"))
    longest = max((len(s) for s in sentences), default=0) + 1  # pieces: at most a byte each
    source = min(longest, servable.metadata.get("max_source_tokens") or longest) + 1
    names = list(servable.signature_defs[signature].outputs) if outputs is None else outputs
    size = response_bytes(count, n_best, max_length, source, names)
    if size > limits.max_message_bytes:
        raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, (
            f"the response can reach {size} bytes ({count} sentences x n_best {n_best} x "
            f"max_length {max_length}" + (f" x {source} source pieces of alignments"
                                          if contract.ALIGNMENTS in names else "")
            + f"); the limit is {limits.max_message_bytes} (max_message_bytes): send fewer "
            "sentences, or a smaller n_best or max_length"))
