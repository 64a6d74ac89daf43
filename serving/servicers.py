"""The gRPC services, as standard `(request, context)` servicers.

- `PredictionServicer`: tensorflow.serving.PredictionService (`Predict`,
  `GetModelMetadata`; `Classify`, `Regress`, `MultiInference` answer
  UNIMPLEMENTED).
- `ModelServicer`: tensorflow.serving.ModelService (`GetModelStatus`).
- `TranslatorServicer`: keras_rnn.serving.Translator (`Translate`), typed
  translation on top of the contract's two signatures.

Each is a leaf over one `runtime.Runtime` (the models with their batchers,
the limits, the version labels), given to its constructor: it takes the
request's deadline from its context (`Runtime.deadline`) and passes it on
(`Servable.run`). They raise exceptions and fill
`observability.call_fields()`; the interceptor (`serving/interceptor.py`)
turns exceptions into status codes and writes metrics and the log line.
"""

import grpc
import numpy as np
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from keras_rnn.serving import contract, translator_pb2_grpc, validation
from keras_rnn.serving.errors import ServingError, bounded
from keras_rnn.serving.observability import call_fields


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService: Predict and GetModelMetadata.

    Args:
        runtime: the `Runtime`.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        return self.predict(request, self.runtime.deadline(context))

    def predict(self, request, deadline, read_inputs=None):
        """`Predict` with its deadline given.

        Args:
            request: a `PredictRequest`; its `inputs` are read unless
                `read_inputs` is given.
            deadline: `time.monotonic()` time to answer by.
            read_inputs: optional `read_inputs(signature_def)` -> {input
                name: TensorProto} (the REST API converts its JSON body
                there, with the dtypes of the signature asked for).

        Returns:
            The `PredictResponse`.
        """
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        runtime, info = self.runtime, call_fields()
        name = runtime.models.resolve_name(request.model_spec.name)
        info["model"] = name
        version = runtime.version_of(request.model_spec, name)
        with runtime.models.acquire(name, version) as servable:
            info["version"] = servable.version
            signature = request.model_spec.signature_name or contract.DEFAULT_SIGNATURE
            info["signature"] = signature[:100]
            signature_def = servable.signature_defs.get(signature)
            if signature_def is None:
                raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, (
                    f"Serving signature key {bounded(signature)} not found (signatures: "
                    f"{', '.join(sorted(servable.signature_defs))})"))
            outputs_spec = signature_def.outputs
            wanted = list(request.output_filter) or list(outputs_spec)
            unknown = sorted(set(wanted) - set(outputs_spec))
            if unknown:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"output_filter names unknown output(s) "
                    f"{', '.join(bounded(u) for u in unknown[:5])} (outputs of "
                    f"{signature!r}: {', '.join(sorted(outputs_spec))})"))
            protos = request.inputs if read_inputs is None else read_inputs(signature_def)
            inputs = validation.check_inputs(servable, signature, protos, runtime.limits)
            validation.check_cost(servable, signature, inputs, runtime.limits, wanted)
            batch_input = servable.batch_inputs.get(signature)
            if batch_input:
                info["sentences"] = len(inputs[batch_input])
            outputs = servable.run(signature, inputs, deadline)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = signature
            for key in wanted:
                response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
            return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        from tensorflow_serving.apis import get_model_metadata_pb2

        runtime, info = self.runtime, call_fields()
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                f"metadata_field must be ['signature_def'] (the only metadata served); "
                f"got {[bounded(f) for f in fields[:5]]}"))
        name = runtime.models.resolve_name(request.model_spec.name)
        info["model"] = name
        version = runtime.version_of(request.model_spec, name)
        with runtime.models.acquire(name, version) as servable:
            info["version"] = servable.version
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, signature_def in servable.signature_defs.items():
                signature_map.signature_def[key].CopyFrom(signature_def)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(signature_map)
            return response

    def Classify(self, request, context):  # noqa: N802
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "Classify is not supported: translators have Predict signatures")

    def Regress(self, request, context):  # noqa: N802
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "Regress is not supported: translators have Predict signatures")

    def MultiInference(self, request, context):  # noqa: N802
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           "MultiInference is not supported: use Predict")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: GetModelStatus.

    Args:
        runtime: the `Runtime`.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def GetModelStatus(self, request, context):  # noqa: N802
        from tensorflow_serving.apis import get_model_status_pb2

        runtime, info = self.runtime, call_fields()
        name = runtime.models.resolve_name(request.model_spec.name)
        info["model"] = name
        version = runtime.version_of(request.model_spec, name)
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in runtime.models.status(name, version):
            entry = response.model_version_status.add()
            entry.version = status.version
            entry.state = status.state
            entry.status.error_code = status.error_code
            entry.status.error_message = status.error_message
        return response

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, (
            "model config reloads are not supported: models are found on disk "
            "(--model-base-dir / --model) and new versions are loaded by polling"))


class TranslatorServicer(translator_pb2_grpc.TranslatorServicer):
    """keras_rnn.serving.Translator: typed translation on top of the
    `serving_default`, `translate_with_options` and `translate_with_alignments`
    signatures (`Servable.translate_inputs` picks one).

    Args:
        runtime: the `Runtime`.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def Translate(self, request, context):  # noqa: N802
        runtime, info = self.runtime, call_fields()
        deadline = runtime.deadline(context)
        name = runtime.models.resolve_name(request.model_name)
        info["model"] = name
        version = request.version if request.HasField("version") else None
        with runtime.models.acquire(name, version) as servable:
            info["version"] = servable.version
            info["sentences"] = len(request.sentences)
            validation.check_sentence_count(len(request.sentences), runtime.limits)
            sentences = np.array([s.encode("utf-8") for s in request.sentences], dtype=object)
            validation.check_sentences(sentences, runtime.limits)
            signature, inputs = servable.translate_inputs(
                sentences, request.alignments, **{field: getattr(request, field)
                                                  for field in contract.SCALAR_INPUTS})
            info["signature"] = signature
            validation.check_scalars(servable, inputs)
            validation.check_cost(servable, signature, inputs, runtime.limits)
            outputs = servable.run(signature, validation.typed(servable, signature, inputs),
                                   deadline)
            return _translate_response(request, name, servable.version, outputs)


def _translate_response(request, name, version, outputs):
    from keras_rnn.serving import translator_pb2

    c = contract
    response = translator_pb2.TranslateResponse(model_name=name, version=version)
    for i, source in enumerate(request.sentences):
        translation = response.translations.add(source=source)
        source_tokens = []
        if request.alignments:
            source_tokens = [p.decode("utf-8", "replace")
                             for p in outputs[c.SOURCE_PIECES][i] if p]
            translation.source_tokens.extend(source_tokens)
        for k, text in enumerate(outputs[c.TRANSLATIONS][i]):
            hypothesis = translation.hypotheses.add(
                text=text.decode("utf-8", "replace"),
                score=float(outputs[c.SCORES][i, k]),
                length=int(outputs[c.LENGTHS][i, k]))
            if request.alignments:
                target = [p.decode("utf-8", "replace")
                          for p in outputs[c.TARGET_PIECES][i, k] if p]
                hypothesis.target_tokens.extend(target)
                weights = outputs[c.ALIGNMENTS][i, k, :len(target), :len(source_tokens)]
                hypothesis.alignment.target_length = len(target)
                hypothesis.alignment.source_length = len(source_tokens)
                hypothesis.alignment.weights.extend(weights.ravel().tolist())
    return response
