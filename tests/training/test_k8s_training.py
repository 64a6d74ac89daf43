"""`training/k8s/`, checked offline: the manifests against the Kubernetes
OpenAPI schemas kubernetes-validate ships (1.29 and the newest), strictly;
the kustomization rendered by `kubectl kustomize` where kubectl is
installed, else read from its `resources` (tests/k8s_support.py); and the
wiring of `keras-rnn train` on N processes: an Indexed Job of N pods whose
Keras distribution variables name exactly its N pods through the headless
Service, process ids from the completion index, the run directory and the
caches on the shared ReadWriteMany volume, locked-down pods, pinned images.
"""

import copy
import re

import pytest
import yaml

from tests.k8s_support import by_kind, pod_containers, rendered_documents, source_documents
from tests.support import ROOT

K8S = ROOT / "training" / "k8s"
# 1.27's and 1.28's schemas mark a podFailurePolicy rule's onPodConditions
# required, which an exit-code rule cannot have (their API servers accept
# the rule without it; 1.29's schema does too).
OLDEST_KUBERNETES = "1.29.0"
NAMESPACE = "keras-rnn-training"
SHARED = "/shared"
INDEX_ANNOTATION = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
OUTSIDE_KUSTOMIZATION = {"fill-data-job.yaml"}  # runs before the training Job
PINNED = r"[\w./-]+:\d+\.\d+\.\d+|[\w./-]+@sha256:[0-9a-f]{64}"


@pytest.fixture(scope="module")
def rendered():
    return rendered_documents(K8S)


@pytest.fixture
def documents(rendered):
    """A copy of the rendered documents per test (tests may edit it)."""
    return copy.deepcopy(rendered)


@pytest.fixture
def fill_data():
    [job] = [d for d in yaml.safe_load_all((K8S / "fill-data-job.yaml").read_text()) if d]
    return job


def the_job(documents):
    [job] = by_kind(documents, "Job").values()
    return job


def env_of(container):
    return {e["name"]: e for e in container["env"]}


def test_the_kustomization_lists_every_manifest_but_the_data_job():
    kustomization, _ = source_documents(K8S)
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == present - OUTSIDE_KUSTOMIZATION
    assert OUTSIDE_KUSTOMIZATION <= present


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, "latest"])
def test_the_manifests_match_the_kubernetes_schemas(version, documents, fill_data):
    import kubernetes_validate

    if version == "latest":
        version = kubernetes_validate.utils.latest_version()
    assert sorted(d["kind"] for d in documents) == [
        "Job", "Namespace", "PersistentVolumeClaim", "Service", "ServiceAccount"]
    for document in documents + [fill_data]:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_schema_check_catches_a_mistake(documents):
    import kubernetes_validate

    job = the_job(documents)
    job["spec"]["completionsMode"] = job["spec"].pop("completionMode")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, OLDEST_KUBERNETES, strict=True)


def test_n_processes_name_each_other_through_the_headless_service(documents):
    job = the_job(documents)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    [train] = pod["containers"]
    env = env_of(train)
    n = int(env["KERAS_DISTRIBUTION_NUM_PROCESSES"]["value"])
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == n >= 2
    # Pod I is JOB-I (Kubernetes' hostname for an Indexed Job's pods) in the
    # subdomain of the headless Service that selects them.
    service = by_kind(documents, "Service")[pod["subdomain"]]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] and service["spec"]["selector"].items() <= labels.items()
    assert "hostname" not in pod  # one name for every pod would break the Indexed ones
    [port] = service["spec"]["ports"]
    [container_port] = [p for p in train["ports"] if p["name"] == port["targetPort"]]
    assert container_port["containerPort"] == port["port"]
    job_name, service_name = job["metadata"]["name"], service["metadata"]["name"]
    addresses = env["KERAS_DISTRIBUTION_JOB_ADDRESSES"]["value"].split(",")
    assert addresses == [f"{job_name}-{i}.{service_name}:{port['port']}" for i in range(n)]
    # Each pod's id is its completion index, not a constant.
    index = env["KERAS_DISTRIBUTION_PROCESS_ID"]
    assert "value" not in index
    assert index["valueFrom"]["fieldRef"]["fieldPath"] == INDEX_ANNOTATION
    assert env["KERAS_BACKEND"]["value"] == "jax"


def test_keras_takes_pod_0_as_the_coordinator(documents, monkeypatch):
    """Keras's JAX `initialize` (what `keras-rnn train` calls) given the
    Job's variables: JAX joins N processes at pod 0's address (a fake
    `jax.distributed.initialize`; nothing is started)."""
    jax = pytest.importorskip("jax")
    from keras.src.backend.jax import distribution_lib

    [train] = the_job(documents)["spec"]["template"]["spec"]["containers"]
    env = env_of(train)
    addresses, n = (env["KERAS_DISTRIBUTION_JOB_ADDRESSES"]["value"],
                    int(env["KERAS_DISTRIBUTION_NUM_PROCESSES"]["value"]))
    joined = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: joined.append(kw))
    monkeypatch.setattr(distribution_lib, "initialize_rng", lambda: None)
    for process_id in range(n):
        distribution_lib.initialize(addresses, n, process_id)
    assert joined == [{"coordinator_address": addresses.split(",")[0], "num_processes": n,
                       "process_id": i} for i in range(n)]
    assert joined[0]["coordinator_address"].startswith(
        f"{the_job(documents)['metadata']['name']}-0.")
    with pytest.raises(ValueError, match="num_processes"):  # N changed in one place only
        distribution_lib.initialize(addresses, n + 1, 0)


def test_the_run_directory_and_caches_are_on_the_shared_volume(documents, fill_data):
    from keras_rnn.cli import build_parser
    from keras_rnn.training.config import Config, resolve_config

    job = the_job(documents)
    pod = job["spec"]["template"]["spec"]
    [train] = pod["containers"]
    [claim] = by_kind(documents, "PersistentVolumeClaim").values()
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # pods on several nodes
    for workload in (pod, fill_data["spec"]["template"]["spec"]):
        [volume] = [v for v in workload["volumes"] if "persistentVolumeClaim" in v]
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        [container] = workload["containers"]
        [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["mountPath"] == SHARED and not mount.get("readOnly")
    assert train["command"] == ["keras-rnn", "train"]
    args = build_parser().parse_args(train["command"][1:] + train["args"])
    overrides = dict(item.split("=", 1) for item in args.set)
    path, implied = resolve_config(args.config, data_dir=args.data_dir)
    config = Config.load(path, overrides=[*implied, *args.set])
    for directory in (config.output_dir, config.data.dir, config.data.cache_dir):
        assert directory.startswith(SHARED + "/"), directory
    assert overrides["output_dir"] == config.output_dir  # not the config's runs/...
    # where the data job puts the corpus
    assert fill_data["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "keras-rnn", "download", config.data.dir]


def test_a_failure_restarts_from_the_volume_and_bad_input_fails_at_once(
        documents, monkeypatch, capsys):
    import keras_rnn.cli
    from keras_rnn.cli.extras import MissingExtra

    spec = the_job(documents)["spec"]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy's condition
    # One failure takes every process down: N retries at most per incident.
    assert spec["backoffLimit"] >= 3 * spec["completions"]
    rules = spec["podFailurePolicy"]["rules"]
    [ignore] = [r for r in rules if r["action"] == "Ignore"]
    assert ignore["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    [fail] = [r for r in rules if r["action"] == "FailJob"]
    assert fail["onExitCodes"] == {"containerName": pod["containers"][0]["name"],
                                   "operator": "In", "values": [2, 3]}
    # 2 and 3 are what the pod's command exits with for a user error (here
    # the corpus not on the volume) and for an image without the extra.
    [train] = pod["containers"]
    argv = ["--no-compile-cache", *train["command"][1:], *train["args"]]
    assert keras_rnn.cli.main(argv) == 2
    assert "/shared/data/multi30k: no such corpus directory" in capsys.readouterr().err

    def missing(extra):
        raise MissingExtra(extra, "sentencepiece", "No module named 'sentencepiece'")

    monkeypatch.setattr(keras_rnn.cli, "require", missing)
    assert keras_rnn.cli.main(argv) == 3
    assert "needs the training extra" in capsys.readouterr().err


def test_pods_are_locked_down_and_images_pinned(documents, fill_data):
    [namespace] = by_kind(documents, "Namespace").values()
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    [account] = by_kind(documents, "ServiceAccount").values()
    assert account["automountServiceAccountToken"] is False
    job = the_job(documents)
    [image] = {c["image"] for c in pod_containers(job)}
    for document in documents + [fill_data]:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == NAMESPACE, document["metadata"]
        for container in pod_containers(document):
            assert re.fullmatch(PINNED, container["image"]), container["image"]
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
            assert context["capabilities"]["drop"] == ["ALL"]
            assert context["runAsNonRoot"]
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        if document["kind"] == "Job":
            pod = document["spec"]["template"]["spec"]
            assert pod["serviceAccountName"] == account["metadata"]["name"]
            assert pod["automountServiceAccountToken"] is False
            assert pod["securityContext"]["runAsNonRoot"]
            assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            [tmp] = [v for v in pod["volumes"] if v["name"] == "tmp"]
            assert "emptyDir" in tmp
    # the data job (not kustomized) runs the image the kustomization pins
    assert fill_data["spec"]["template"]["spec"]["containers"][0]["image"] == image
    for path in K8S.glob("*.yaml"):
        assert ":latest" not in path.read_text() and "newTag: latest" not in path.read_text()


def test_the_image_has_the_training_extra_and_a_gpu_variant_is_documented():
    dockerfile = (K8S / "Dockerfile").read_text()
    assert "ARG EXTRAS=jax,training" in dockerfile
    assert '-c requirements/constraints.txt ".[${EXTRAS}]"' in dockerfile
    assert "USER 10001:10001" in dockerfile and "KERAS_BACKEND=jax" in dockerfile
    # (the serving image does not have it, hence this one)
    assert '".[tensorflow,serving]"' in (ROOT / "Dockerfile").read_text()
    job = (K8S / "train-job.yaml").read_text()
    assert "EXTRAS=jax-cuda,training" in job and "#     nvidia.com/gpu: 1" in job
    assert "jax-cuda" in (ROOT / "setup.cfg").read_text()
    readme = (K8S / "README.md").read_text()
    for step in ("docker build -f training/k8s/Dockerfile", "fill-data-job.yaml",
                 "kubectl apply -k training/k8s/", "nvidia.com/gpu"):
        assert step in readme, step
