"""What the services answer requests with: one `Runtime` (the models with
their batchers, the request limits, the version labels), handed to each
servicer explicitly.

    runtime = Runtime(manager, configure(Limits, config), config.version_labels)
    servicer = PredictionServicer(runtime)

A servicer resolves the request's model and version (`models.resolve_name`,
`version_of`), holds the `Servable` in flight (`models.acquire`), checks
the request against `limits` (`validation.py`) and runs it with its
deadline (`deadline`, `Servable.run`); it knows nothing of the server
around it.
"""

import dataclasses

from keras_rnn.serving import validation
from keras_rnn.serving.interceptor import request_deadline


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may ask for (the `ServerConfig` fields of the same
    names: `configure(Limits, config)`).

    Attributes:
        max_request_sentences: most sentences in one request.
        max_request_cost: most decoder steps (sentences x beam_size x
            max_length) of one request.
        max_sentence_chars: longest sentence, in characters.
        max_message_bytes: largest message received or sent (and most values
            one request tensor may declare).
        max_request_seconds: longest a request may queue and run.
        max_concurrent_rpcs: requests in progress before RESOURCE_EXHAUSTED.
    """

    max_request_sentences: int
    max_request_cost: int
    max_sentence_chars: int
    max_message_bytes: int
    max_request_seconds: float
    max_concurrent_rpcs: int


@dataclasses.dataclass(frozen=True)
class Runtime:
    """The models, limits and version labels the servicers share.

    Attributes:
        models: the `ModelManager`; each `Servable` it serves carries its
            batcher (`Servable.run`).
        limits: the request `Limits`.
        version_labels: dict of model name -> {label: version}; model name
            "" labels every model (`ServerConfig.version_labels`).
    """

    models: object
    limits: Limits
    version_labels: dict = dataclasses.field(default_factory=dict)

    def version_of(self, model_spec, name):
        """The version a `ModelSpec` of model `name` asks for (by number or
        by label), or None for the newest served.

        Raises:
            ServingError: INVALID_ARGUMENT for a version label not set.
        """
        labels = {**self.version_labels.get("", {}), **self.version_labels.get(name, {})}
        return validation.version_of(model_spec, labels)

    def deadline(self, context):
        """The `time.monotonic()` deadline of the request of `context`: the
        client's, capped at `limits.max_request_seconds`."""
        return request_deadline(context, self.limits.max_request_seconds)
