"""`keras-rnn translate`: a client for `keras-rnn serve`.

    keras-rnn translate --server 127.0.0.1:8500 "Ein Mann fährt Fahrrad."
    cat sentences.de | keras-rnn translate --server 127.0.0.1:8500 --beam-size 4
    keras-rnn translate --server host:8500 --tls-ca ca.pem --tls-cert me.pem \\
        --tls-key me.key --n-best 3 "Zwei Hunde spielen im Schnee."
    keras-rnn translate --server 10.0.0.5:8500,10.0.0.6:8500 "Hallo."   # round robin
    keras-rnn translate --server dns:///keras-rnn-headless:8500 "Hallo."  # every A record

Without sentences on the command line it translates standard input line by
line, each line as soon as it arrives. Every call has a deadline
(`--timeout`, default 30 s).

Several servers (`--server A,B,...`, or one DNS name with several
addresses, e.g. a Kubernetes headless Service) are balanced by gRPC itself:
the channel's service config picks the `round_robin` policy (one
connection per address, calls spread over the ready ones) and retries calls
that fail UNAVAILABLE on another address (`SERVICE_CONFIG`).

Exit status: 0 when everything translated, 2
when the server rejected a request (INVALID_ARGUMENT, NOT_FOUND,
FAILED_PRECONDITION, OUT_OF_RANGE), 1 for any other failure (server
unreachable, deadline exceeded, ...).

Library:

    with TranslatorClient("127.0.0.1:8500", timeout=10) as client:
        response = client.translate(["Ein Mann fährt Fahrrad."], n_best=2)
        outputs = client.predict(["Ein Mann fährt Fahrrad."])   # TF Serving API
        outputs = client.predict(["Hallo."], beam_size=4, n_best=2)  # translate_with_options
"""

import ipaddress
import json
import socket
import sys
from pathlib import Path

import grpc

from keras_rnn.serving import translator_pb2, translator_pb2_grpc
from keras_rnn.serving.contract import DEFAULT_SIGNATURE, OPTIONS_SIGNATURE
from keras_rnn.serving.config import DEFAULT_CLIENT_TIMEOUT

REJECTED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE}
# gRPC service config of every client channel: round robin over all the
# addresses the target resolves to, and up to 4 attempts of a call that
# fails UNAVAILABLE (a server stopping or unreachable; the others answer)
# or CANCELLED by the server (gRPC cancels the calls a stopping server had
# received but not started, and those still running when its grace ends).
# Translations are idempotent, so a retry is safe; a call the client itself
# cancels or whose deadline passes is never retried.
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    # Client-side health checking: a server whose gRPC health says
    # NOT_SERVING (as `serve` does first when it drains) gets no new calls.
    "healthCheckConfig": {"serviceName": ""},
    "methodConfig": [{
        "name": [{}],  # every method of every service
        "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"]},
    }],
}
HINTS = {
    grpc.StatusCode.UNAVAILABLE: "the server is not reachable (is `keras-rnn serve` running "
                                 "there, with the same TLS settings?)",
    grpc.StatusCode.DEADLINE_EXCEEDED: "no answer within the deadline (raise --timeout?)",
    grpc.StatusCode.INVALID_ARGUMENT: "the server rejected the request",
    grpc.StatusCode.NOT_FOUND: "no such model or version on the server",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "the server is overloaded; retry later",
}


def channel_credentials(tls_ca=None, tls_cert=None, tls_key=None):
    """TLS channel credentials from PEM files, or None for plaintext.

    Args:
        tls_ca: CA certificate that signed the server's certificate (None:
            the system roots).
        tls_cert, tls_key: client certificate chain and key (mutual TLS).

    Returns:
        `grpc.ChannelCredentials`, or None when no TLS option is set.

    Raises:
        ValueError: only one of `tls_cert` and `tls_key` is set.
    """
    if not (tls_ca or tls_cert or tls_key):
        return None
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("a client certificate needs both --tls-cert and --tls-key")

    def read(path):
        return Path(path).read_bytes() if path else None

    return grpc.ssl_channel_credentials(root_certificates=read(tls_ca),
                                        private_key=read(tls_key),
                                        certificate_chain=read(tls_cert))


def channel_target(servers):
    """The gRPC target for one or several servers.

    Args:
        servers: "HOST:PORT", a gRPC target URI ("dns:///name:8500"), or
            several "HOST:PORT" as a list or joined by commas.

    Returns:
        `(target, authority)`: one server's target as given (DNS names
        resolve to all their addresses, re-resolved by gRPC); several as
        gRPC's static address list `ipv4:A:P,B:P` (or `ipv6:`), host names
        resolved once here. `authority` is the first server's "HOST:PORT"
        when names were resolved (TLS checks the certificate against it),
        else None.

    Raises:
        ValueError: an entry is not HOST:PORT, or IPv4 and IPv6 are mixed.
    """
    if isinstance(servers, str):
        servers = servers.split(",")
    servers = [s.strip() for s in servers if s.strip()]
    if not servers:
        raise ValueError("no server given")
    if len(servers) == 1:
        return servers[0], None
    addresses, resolved = [], False
    for server in servers:
        host, _, port = server.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ValueError(f"{server!r} is not HOST:PORT")
        try:
            ips = [ipaddress.ip_address(host)]
        except ValueError:
            resolved = True
            ips = sorted({ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(
                host, int(port), type=socket.SOCK_STREAM)}, key=str)
        addresses += [(ip, port) for ip in ips]
    versions = {ip.version for ip, _ in addresses}
    if versions == {4}:
        target = "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in addresses)
    elif versions == {6}:
        target = "ipv6:" + ",".join(f"[{ip}]:{port}" for ip, port in addresses)
    else:
        raise ValueError(f"servers {servers} mix IPv4 and IPv6 addresses")
    return target, (servers[0] if resolved else None)


class TranslatorClient:
    """A connection to `keras-rnn serve`.

    Args:
        target: "HOST:PORT", a gRPC target ("dns:///name:8500"), or
            several servers, balanced round robin (`channel_target`).
        timeout: default deadline of every call, in seconds.
        tls_ca, tls_cert, tls_key: PEM files (see `channel_credentials`);
            any of them turns TLS on.
        options: extra gRPC channel options.
    """

    def __init__(self, target, timeout=DEFAULT_CLIENT_TIMEOUT, tls_ca=None, tls_cert=None,
                 tls_key=None, options=()):
        self.target = target
        self.timeout = timeout
        credentials = channel_credentials(tls_ca, tls_cert, tls_key)
        address, authority = channel_target(target)
        options = [("grpc.service_config", json.dumps(SERVICE_CONFIG)),
                   ("grpc.enable_retries", 1),
                   *([("grpc.default_authority", authority)] if authority else []),
                   *options]
        if credentials is None:
            self.channel = grpc.insecure_channel(address, options=options)
        else:
            self.channel = grpc.secure_channel(address, credentials, options=options)
        self.translator = translator_pb2_grpc.TranslatorStub(self.channel)
        self._prediction = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.channel.close()

    def translate(self, sentences, model="", version=None, beam_size=None, n_best=1,
                  max_length=None, alignments=False, timeout=None):
        """Translates sentences with the typed Translator service.

        Args:
            sentences: list of str.
            model: model name ("" = the server's only model).
            version: model version (None = the newest served).
            beam_size, max_length: None = the model's defaults.
            n_best: hypotheses per sentence.
            alignments: also return subwords and attention weights.
            timeout: deadline in seconds (default: the client's).

        Returns:
            A `translator_pb2.TranslateResponse`.

        Raises:
            grpc.RpcError: the call failed (`.code()`, `.details()`).
        """
        request = translator_pb2.TranslateRequest(
            model_name=model or "", sentences=list(sentences), beam_size=beam_size or 0,
            n_best=n_best or 0, max_length=max_length or 0, alignments=alignments)
        if version is not None:
            request.version = version
        return self.translator.Translate(request, timeout=timeout or self.timeout)

    @property
    def prediction_service(self):
        """A stock `tensorflow.serving.PredictionServiceStub` on the channel."""
        if self._prediction is None:
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        return self._prediction

    def metadata(self, model="", version=None, timeout=None):
        """The model's SignatureDefs (GetModelMetadata).

        Returns:
            dict of signature key -> `SignatureDef` proto.
        """
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=["signature_def"])
        request.model_spec.name = model or ""
        if version is not None:
            request.model_spec.version.value = version
        response = self.prediction_service.GetModelMetadata(
            request, timeout=timeout or self.timeout)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return dict(signature_map.signature_def)

    def predict(self, sentences, model="", version=None, signature=None,
                output_filter=(), timeout=None, **scalars):
        """Translates through TensorFlow Serving's PredictionService.Predict.

        The input names come from the model's metadata: the signature's one
        string vector input gets `sentences`, `scalars` (e.g. `beam_size=4`)
        go to the scalar inputs of the same names.

        Args:
            sentences: list of str or bytes.
            model, version: as in `translate`.
            signature: signature key (None: `serving_default`, or
                `translate_with_options` when `scalars` are set and
                `serving_default` does not take them, as in exports since
                `translate_with_options`).
            output_filter: output names to return (empty: all).
            timeout: deadline in seconds (default: the client's).
            **scalars: values of the signature's scalar inputs.

        Returns:
            dict of output name -> NumPy array, plus "version": the version
            that answered.

        Raises:
            ValueError: the signature is unknown or has no string input.
            grpc.RpcError: the call failed.
        """
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        signature_defs = self.metadata(model, version, timeout)
        if signature is None:
            default = signature_defs.get(DEFAULT_SIGNATURE)
            signature = (OPTIONS_SIGNATURE if default is not None and OPTIONS_SIGNATURE in
                         signature_defs and not set(scalars) <= set(default.inputs)
                         else DEFAULT_SIGNATURE)
        signature_def = signature_defs.get(signature)
        if signature_def is None:
            raise ValueError(f"the model has no signature {signature!r}")
        string_inputs = [name for name, info in signature_def.inputs.items()
                         if info.dtype == tf.string.as_datatype_enum]
        if len(string_inputs) != 1:
            raise ValueError(f"signature {signature!r} has string inputs {string_inputs}; "
                             "expected exactly one")
        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        request.model_spec.name = model or ""
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        request.inputs[string_inputs[0]].CopyFrom(tf.make_tensor_proto(
            [s.encode("utf-8") if isinstance(s, str) else s for s in sentences], tf.string))
        for name, value in scalars.items():
            if name not in signature_def.inputs:
                raise ValueError(f"signature {signature!r} has no input {name!r}")
            dtype = tf.as_dtype(signature_def.inputs[name].dtype)
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype))
        response = self.prediction_service.Predict(request, timeout=timeout or self.timeout)
        outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        outputs["version"] = response.model_spec.version.value
        return outputs

    def health(self, service="", timeout=None):
        """The gRPC health status name ("SERVING", "NOT_SERVING", ...)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        response = health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout or self.timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


# ---------------------------------------------------------------- CLI


def _print_response(response, n_best, out):
    for translation in response.translations:
        if n_best <= 1:
            out.write(translation.hypotheses[0].text + "\n")
        else:
            for rank, hypothesis in enumerate(translation.hypotheses, 1):
                out.write(f"{rank}\t{hypothesis.score:.4f}\t{hypothesis.text}\n")
            out.write("\n")
    out.flush()


def _explain(error, target):
    code = error.code()
    hint = HINTS.get(code, "the call failed")
    return f"keras-rnn translate: {code.name} from {target}: {hint}: {error.details()}"


def run_client(args, stdin=None, stdout=None, stderr=None):
    """Translates the sentences of `args` (or stdin lines) (`keras-rnn translate`).

    Args:
        args: parsed `add_client_arguments` flags.
        stdin, stdout, stderr: streams (default: the process's).

    Returns:
        Exit status: 0 ok, 2 a request was rejected, 1 any other failure.
    """
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    try:
        client = TranslatorClient(args.server, timeout=args.timeout, tls_ca=args.tls_ca,
                                  tls_cert=args.tls_cert, tls_key=args.tls_key)
    except (ValueError, OSError) as error:
        print(f"keras-rnn translate: {error}", file=stderr)
        return 2
    status = 0

    def translate(sentences):
        nonlocal status
        try:
            response = client.translate(sentences, model=args.model, version=args.version,
                                        beam_size=args.beam_size, n_best=args.n_best,
                                        max_length=args.max_length)
        except grpc.RpcError as error:
            print(_explain(error, args.server), file=stderr)
            if error.code() in REJECTED:
                status = max(status, 2) if status != 1 else 1
                return True  # the next line may be fine
            status = 1
            return False  # the server is unreachable or too slow: stop
        _print_response(response, args.n_best, stdout)
        return True

    with client:
        if args.sentences:
            translate(args.sentences)
        else:
            for line in iter(stdin.readline, ""):
                if not translate([line.rstrip("\r\n")]):
                    break
    return status
