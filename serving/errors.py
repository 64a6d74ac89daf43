"""Serving errors and their gRPC status codes.

    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "input 'inputs' ...")
    code, message = status_of(error)      # any exception -> (code, message)

Text that came from a client (model, signature and input names) is echoed
through `bounded`, and every message is cut to `MAX_MESSAGE_CHARS`, so a
megabyte name cannot make the status (sent as metadata) or a log line huge.
"""

import grpc

from keras_rnn.serving import batching

MAX_NAME_CHARS = 100  # of a client-supplied name echoed in a message
MAX_MESSAGE_CHARS = 1000  # of a status message


class ServingError(Exception):
    """An RPC error with its gRPC status code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class ModelNotFoundError(LookupError):
    """No such model or version is served (gRPC NOT_FOUND)."""


class ModelUnavailableError(RuntimeError):
    """The model exists but no version of it is loaded yet (UNAVAILABLE)."""


class ContractError(ValueError):
    """A version's signatures do not keep the serving contract (`contract.py`)."""


def bounded(name, limit=MAX_NAME_CHARS):
    """`repr(name)`, cut to `limit` characters with the full length said."""
    text = repr(name)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...' ({len(name)} characters)"


def cut(message, limit=MAX_MESSAGE_CHARS):
    """`message` cut to `limit` characters."""
    return message if len(message) <= limit else message[:limit] + "... (cut)"


_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def status_of(error):
    """The gRPC status code and message for an exception raised serving."""
    import tensorflow as tf

    if isinstance(error, ServingError):
        return error.code, cut(str(error))
    if isinstance(error, ModelNotFoundError):
        return grpc.StatusCode.NOT_FOUND, cut(str(error))
    if isinstance(error, ModelUnavailableError):
        return grpc.StatusCode.UNAVAILABLE, cut(str(error))
    if isinstance(error, batching.QueueFullError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, cut(str(error))
    if isinstance(error, batching.DeadlineExceededError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, cut(str(error))
    if isinstance(error, batching.BatcherStoppedError):
        return grpc.StatusCode.UNAVAILABLE, cut(str(error))
    if isinstance(error, tf.errors.OpError):
        # TensorFlow's error codes are gRPC's. Keep the assertion message,
        # not the graph dump that follows it.
        message = error.message.strip()
        for line in message.splitlines():
            if "assertion failed:" in line or "Condition" in line:
                message = line.strip()
                break
        else:
            message = message.splitlines()[0] if message else type(error).__name__
        code = _STATUS_BY_NUMBER.get(error.error_code, grpc.StatusCode.INTERNAL)
        return code, cut(message)
    return grpc.StatusCode.INTERNAL, cut(f"internal error: {type(error).__name__}: {error}")
