"""`serving/k8s/`, checked offline: every manifest against the Kubernetes
OpenAPI schemas kubernetes-validate ships (the oldest release it needs,
1.27 for gRPC probes, and the newest), strictly (unknown fields fail); the
kustomization rendered by `kubectl kustomize` where kubectl is installed,
else read from its `resources`; and one check for each defect an operator's
review found (memory under the measured peaks, model names that disagree,
an empty model volume, probes that flap, thread pools sized by the node,
`:latest`, no namespace, a mounted token, no NetworkPolicy, no spreading).
"""

import argparse
import copy
import re
from pathlib import Path

import pytest

from tests.k8s_support import by_kind, pod_containers, rendered_documents, source_documents
from tests.support import ROOT

K8S = ROOT / "serving" / "k8s"
OLDEST_KUBERNETES = "1.27.0"  # grpc probes are GA from 1.27
NAMESPACE = "keras-rnn"
PORTS = {"keras-rnn": {8500, 9100}, "tensorflow-serving": {8500, 8501}}
MIB = {"Mi": 1, "Gi": 1024}
# benchmarks/README.md, quick model: RSS after the 100,000-request soak, and
# the highest measured across hot reloads ("Memory: a 100,000-request soak
# and hot reloads").
STEADY_STATE_MIB, RELOAD_PEAK_MIB = 1574, 2295


def mib(quantity):
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
    return int(number) * MIB[unit]


@pytest.fixture(scope="module")
def rendered():
    return rendered_documents(K8S)


@pytest.fixture
def documents(rendered):
    """A copy of the rendered documents per test (tests may edit it)."""
    return copy.deepcopy(rendered)


def test_the_kustomization_lists_every_manifest():
    kustomization, _ = source_documents(K8S)
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == present


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, "latest"])
def test_the_manifests_match_the_kubernetes_schemas(version, documents):
    import kubernetes_validate

    if version == "latest":
        version = kubernetes_validate.utils.latest_version()
    assert len(documents) == 15
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_schema_check_catches_a_mistake(documents):
    import kubernetes_validate

    deployment = by_kind(documents, "Deployment")["keras-rnn"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["grpcc"] = container["readinessProbe"].pop("grpc")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST_KUBERNETES, strict=True)


def test_everything_is_in_its_namespace_with_pinned_images(documents):
    namespaces = by_kind(documents, "Namespace")
    assert set(namespaces) == {NAMESPACE}
    assert namespaces[NAMESPACE]["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "restricted"
    for document in documents:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == NAMESPACE, document["metadata"]
        for container in pod_containers(document):
            image = container["image"]
            assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+|[\w./-]+@sha256:[0-9a-f]{64}", image), (
                f"{image}: not pinned to a version tag or digest")
    for path in K8S.glob("*.yaml"):  # the files as applied without kustomize too
        assert ":latest" not in path.read_text() and "newTag: latest" not in path.read_text()


def test_resources_cover_the_measured_memory_and_threads_follow_the_cpu_limit(documents):
    for name, deployment in by_kind(documents, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        [server] = pod["containers"]
        resources = server["resources"]
        assert mib(resources["requests"]["memory"]) >= STEADY_STATE_MIB, name
        assert mib(resources["limits"]["memory"]) >= RELOAD_PEAK_MIB, name
        for container in pod_containers(deployment):
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), container["name"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        env = {e["name"]: e.get("valueFrom", {}) for e in server["env"]}
        for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            field = env[variable]["resourceFieldRef"]
            assert (field["resource"], field["divisor"], field["containerName"]) == (
                "limits.cpu", "1", server["name"])
    # The comment cites the figures the limits come from.
    text = (K8S / "keras-rnn-deployment.yaml").read_text()
    assert "1,574 MiB" in text and "2,295 MiB" in text and "benchmarks/README.md" in text


def test_the_server_reads_the_thread_variables(documents, monkeypatch):
    from keras_rnn.cli import add_serve_arguments

    [server] = by_kind(documents, "Deployment")["keras-rnn"]["spec"]["template"]["spec"][
        "containers"]
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "2")  # what limits.cpu: "2" gives
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "2")
    args = add_serve_arguments(argparse.ArgumentParser()).parse_args(server["args"])
    assert args.tensorflow_intra_op_parallelism == args.tensorflow_inter_op_parallelism == 2
    # and sets TensorFlow's pools from them (a fake TensorFlow: the real one
    # is started once per process; the last pool cannot change any more).
    from types import SimpleNamespace

    from keras_rnn.serving.server import set_tensorflow_threads

    pools = {"intra": 0, "inter": 0}

    def setter(pool):
        def set_(n):
            if pool == "inter":
                raise RuntimeError("Inter op parallelism cannot be modified after initialization.")
            pools[pool] = n
        return set_

    fake = SimpleNamespace(config=SimpleNamespace(threading=SimpleNamespace(
        get_intra_op_parallelism_threads=lambda: pools["intra"],
        set_intra_op_parallelism_threads=setter("intra"),
        get_inter_op_parallelism_threads=lambda: pools["inter"],
        set_inter_op_parallelism_threads=setter("inter"))))
    assert set_tensorflow_threads(fake, 2, 2) == {"intra_op": 2, "inter_op": 0}
    assert set_tensorflow_threads(fake, 0, 0) == {"intra_op": 2, "inter_op": 0}
    [stock] = by_kind(documents, "Deployment")["tensorflow-serving"]["spec"]["template"]["spec"][
        "containers"]
    assert "--tensorflow_intra_op_parallelism=$(TF_NUM_INTRAOP_THREADS)" in stock["args"]
    assert "--tensorflow_inter_op_parallelism=$(TF_NUM_INTEROP_THREADS)" in stock["args"]


def test_one_model_name_and_a_filled_model_volume(documents):
    [config] = by_kind(documents, "ConfigMap").values()
    name = config["data"]["MODEL_NAME"]
    assert config["data"]["MODEL_URL"].startswith("https://")
    for deployment in by_kind(documents, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        [fetch] = pod["initContainers"]
        assert fetch["command"][:2] == ["python", "/opt/keras-rnn/fetch_models.py"]
        assert fetch["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        [writable] = [m for m in fetch["volumeMounts"] if m["mountPath"] == "/models"]
        [server] = pod["containers"]
        [models] = [m for m in server["volumeMounts"] if m["mountPath"] == "/models"]
        assert models["readOnly"] and models["name"] == writable["name"]
        [volume] = [v for v in pod["volumes"] if v["name"] == models["name"]]
        assert "emptyDir" in volume  # filled by fetch-models, not a PVC nothing fills
    [stock] = by_kind(documents, "Deployment")["tensorflow-serving"]["spec"]["template"]["spec"][
        "containers"]
    env = {e["name"]: e for e in stock["env"]}
    assert env["MODEL_NAME"]["valueFrom"]["configMapKeyRef"]["key"] == "MODEL_NAME"
    for probe in ("startupProbe", "readinessProbe"):
        assert stock[probe]["httpGet"]["path"] == f"/v1/models/{name}"
    for path in K8S.glob("*"):  # no other model name anywhere (was: tiny)
        assert "tiny" not in path.read_text(), path
    assert (ROOT / "Dockerfile").read_text().count(
        "COPY serving/container/fetch_models.py /opt/keras-rnn/fetch_models.py") == 1


def test_probes_tolerate_load(documents):
    for deployment in by_kind(documents, "Deployment").values():
        [server] = deployment["spec"]["template"]["spec"]["containers"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert server[probe]["failureThreshold"] >= 3, (probe, server[probe])
            assert server[probe]["timeoutSeconds"] >= 5, (probe, server[probe])
        startup = server["startupProbe"]
        assert startup["failureThreshold"] * startup["periodSeconds"] >= 300  # warm-up


def test_pods_are_locked_down_and_spread(documents):
    [account] = by_kind(documents, "ServiceAccount").values()
    assert account["automountServiceAccountToken"] is False
    policies = by_kind(documents, "NetworkPolicy")
    for name, deployment in by_kind(documents, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pod["serviceAccountName"] == account["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"]
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod_containers(deployment):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
            assert context["capabilities"]["drop"] == ["ALL"]
        [term] = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= labels.items()
        keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        policy = policies[name]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        [ingress] = policy["spec"]["ingress"]
        assert {p["port"] for p in ingress["ports"]} == PORTS[name]
        [server] = pod["containers"]
        assert {p["containerPort"] for p in server["ports"]} == PORTS[name]


def test_the_manifests_fit_together_and_match_the_server(documents):
    from keras_rnn.cli import add_serve_arguments

    deployments, services = by_kind(documents, "Deployment"), by_kind(documents, "Service")
    assert set(deployments) == {"keras-rnn", "tensorflow-serving"}
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for service_name in (name, f"{name}-headless"):
            service = services[service_name]
            assert service["spec"]["selector"].items() <= labels.items()
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports
        assert services[f"{name}-headless"]["spec"]["clusterIP"] == "None"
        [hpa] = [d for d in documents if d["kind"] == "HorizontalPodAutoscaler"
                 and d["metadata"]["name"] == name]
        [pdb] = [d for d in documents if d["kind"] == "PodDisruptionBudget"
                 and d["metadata"]["name"] == name]
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert deployment["spec"]["replicas"] == hpa["spec"]["minReplicas"] >= 2
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]  # one always serves
    # Our server: gRPC health probes on its port, drain inside the grace period.
    pod = deployments["keras-rnn"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = add_serve_arguments(argparse.ArgumentParser()).parse_args(container["args"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == args.port
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    # SIGTERM: answer while health-watchers leave (drain), gRPC drain (grace),
    # then model unload (at most grace again).
    assert (pre_stop + args.drain_seconds + 2 * args.grace_seconds
            < pod["terminationGracePeriodSeconds"])
    assert args.host == "0.0.0.0" and args.metrics_host == "0.0.0.0"
    assert args.model_base_dir == "/models"


def test_fetch_models_fills_the_volume_or_fails_saying_why(tmp_path, capsys):
    """The init container's script: an archive of NAME/VERSION or of
    VERSION only; a wrong model name, a bad checksum or no URL fail."""
    import hashlib
    import importlib.util
    import tarfile

    spec = importlib.util.spec_from_file_location(
        "fetch_models", ROOT / "serving" / "container" / "fetch_models.py")
    fetch_models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch_models)
    version = tmp_path / "export" / "quick" / "3"
    (version / "variables").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"pb")
    whole, versions_only = tmp_path / "quick.tar.gz", tmp_path / "versions.tgz"
    with tarfile.open(whole, "w:gz") as tar:
        tar.add(version.parent, arcname="quick")
    with tarfile.open(versions_only, "w:gz") as tar:
        tar.add(version, arcname="3")
    digest = hashlib.sha256(whole.read_bytes()).hexdigest()
    dest = tmp_path / "models"
    assert fetch_models.main(["--url", whole.as_uri(), "--model-name", "quick", "--dest",
                              str(dest), "--sha256", digest], environ={}) == 0
    assert "holds quick versions 3" in capsys.readouterr().out
    assert (dest / "quick" / "3" / "saved_model.pb").read_bytes() == b"pb"
    assert [p.name for p in dest.iterdir()] == ["quick"]  # no work files left
    other = tmp_path / "other"
    env = {"MODEL_URL": str(versions_only), "MODEL_NAME": "de_en", "MODEL_DIR": str(other)}
    assert fetch_models.main([], environ=env) == 0
    assert (other / "de_en" / "3" / "saved_model.pb").exists()
    assert fetch_models.main(["--url", str(whole), "--model-name", "tiny", "--dest",
                              str(tmp_path / "m2")], environ={}) == 1
    assert "no complete version of model 'tiny'" in capsys.readouterr().err
    assert fetch_models.main(["--url", str(whole), "--model-name", "quick", "--dest",
                              str(tmp_path / "m3"), "--sha256", "0" * 64], environ={}) == 1
    assert "SHA-256 mismatch" in capsys.readouterr().err
    assert fetch_models.main([], environ={}) == 1
    assert "MODEL_URL and MODEL_NAME must be set" in capsys.readouterr().err
    assert not Path(tmp_path / "m2" / "tiny").exists()
