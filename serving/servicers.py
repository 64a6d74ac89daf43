"""The gRPC services, as standard `(request, context)` servicers.

- `PredictionServicer`: tensorflow.serving.PredictionService (`Predict`,
  `GetModelMetadata`; `Classify`, `Regress`, `MultiInference` answer
  UNIMPLEMENTED).
- `ModelServicer`: tensorflow.serving.ModelService (`GetModelStatus`).
- `TranslatorServicer`: keras_rnn.serving.Translator (`Translate`), typed
  translation on top of the contract's two signatures.

They raise exceptions and fill `observability.call_fields()`; the server's
interceptor (`serving/interceptor.py`) turns exceptions into status codes
and writes metrics and the log line. `server` is the `Server`: its model
manager, its config (limits) and `run` (batching).
"""

import grpc
import numpy as np
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from keras_rnn.serving import contract, translator_pb2_grpc, validation
from keras_rnn.serving.errors import ServingError, bounded
from keras_rnn.serving.observability import call_fields


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService: Predict and GetModelMetadata."""

    def __init__(self, server):
        self.server = server

    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        server, info = self.server, call_fields()
        name = server.manager.resolve_name(request.model_spec.name)
        info["model"] = name
        version = validation.version_of(request.model_spec, server.config.labels_for(name))
        with server.manager.acquire(name, version) as servable:
            info["version"] = servable.version
            signature = request.model_spec.signature_name or contract.DEFAULT_SIGNATURE
            info["signature"] = signature[:100]
            if signature not in servable.signature_defs:
                raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, (
                    f"Serving signature key {bounded(signature)} not found (signatures: "
                    f"{', '.join(sorted(servable.signature_defs))})"))
            outputs_spec = servable.signature_defs[signature].outputs
            wanted = list(request.output_filter) or list(outputs_spec)
            unknown = sorted(set(wanted) - set(outputs_spec))
            if unknown:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"output_filter names unknown output(s) "
                    f"{', '.join(bounded(u) for u in unknown[:5])} (outputs of "
                    f"{signature!r}: {', '.join(sorted(outputs_spec))})"))
            inputs = validation.check_inputs(servable, signature, request.inputs,
                                             server.config)
            batch_input = servable.batch_inputs.get(signature)
            if batch_input:
                info["sentences"] = len(inputs[batch_input])
            outputs = server.run(servable, signature, inputs, context)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = signature
            for key in wanted:
                response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
            return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        from tensorflow_serving.apis import get_model_metadata_pb2

        server, info = self.server, call_fields()
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                f"metadata_field must be ['signature_def'] (the only metadata served); "
                f"got {[bounded(f) for f in fields[:5]]}"))
        name = server.manager.resolve_name(request.model_spec.name)
        info["model"] = name
        version = validation.version_of(request.model_spec, server.config.labels_for(name))
        with server.manager.acquire(name, version) as servable:
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
    """tensorflow.serving.ModelService: GetModelStatus."""

    def __init__(self, server):
        self.server = server

    def GetModelStatus(self, request, context):  # noqa: N802
        from tensorflow_serving.apis import get_model_status_pb2

        manager, info = self.server.manager, call_fields()
        name = manager.resolve_name(request.model_spec.name)
        info["model"] = name
        version = validation.version_of(request.model_spec,
                                        self.server.config.labels_for(name))
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in manager.status(name, version):
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
    `serving_default` / `translate_with_alignments` signatures."""

    def __init__(self, server):
        self.server = server

    def Translate(self, request, context):  # noqa: N802
        from keras_rnn.serving import translator_pb2

        server, info = self.server, call_fields()
        name = server.manager.resolve_name(request.model_name)
        info["model"] = name
        version = request.version if request.HasField("version") else None
        signature = (contract.ALIGNMENTS_SIGNATURE if request.alignments
                     else contract.DEFAULT_SIGNATURE)
        with server.manager.acquire(name, version) as servable:
            info["version"] = servable.version
            info["signature"] = signature
            if signature not in servable.signature_defs:
                raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, (
                    f"model {name!r} version {servable.version} has no {signature!r} "
                    "signature" + (" (no alignments)" if request.alignments else "")))
            info["sentences"] = len(request.sentences)
            if len(request.sentences) > server.config.max_request_sentences:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"{len(request.sentences)} sentences in one request; the limit is "
                    f"{server.config.max_request_sentences} (max_request_sentences)"))
            sentences = np.array([s.encode("utf-8") for s in request.sentences], dtype=object)
            validation.check_sentences(sentences, server.config)
            inputs = dict(servable.defaults[signature])
            inputs[contract.SENTENCES_INPUT] = sentences
            for field in contract.SCALAR_INPUTS:
                value = getattr(request, field)
                if value:
                    inputs[field] = np.int32(value)
            inputs.setdefault(contract.N_BEST, np.int32(1))
            missing = sorted(set(servable.signature_defs[signature].inputs) - set(inputs))
            if missing:
                raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, (
                    f"model {name!r} has no default for {', '.join(missing)}; set them"))
            validation.check_scalars(servable, inputs)
            outputs = server.run(servable, signature,
                                 validation.typed(servable, signature, inputs), context)
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
