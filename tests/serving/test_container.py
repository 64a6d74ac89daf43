"""The deployment files, checked offline against their published schemas.

- `docker-compose.yml` against the Compose Specification's JSON schema (the
  copy check-jsonschema ships: `--builtin-schema vendor.compose-spec`);
- `serving/k8s/` against the Kubernetes OpenAPI schemas of the oldest
  release it needs (1.27: gRPC probes) and the newest that
  kubernetes-validate ships, strictly (unknown fields fail), plus what ties
  the manifests together (selectors, ports, probes, drain timing).

Building and running the image is `make image-test`
(serving/container/image_test.py), not part of this suite.
"""

import subprocess
import sys

import pytest
import yaml

from tests.support import ROOT

K8S = ROOT / "serving" / "k8s"
OLDEST_KUBERNETES = "1.27.0"  # grpc probes are GA from 1.27


def k8s_documents():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    documents = []
    for name in kustomization["resources"]:
        documents += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return kustomization, documents


def by_kind(documents, kind):
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def test_the_compose_file_matches_the_compose_specification():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(ROOT / "docker-compose.yml")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_schema_check_catches_a_mistake(tmp_path):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose["services"]["keras-rnn"]["stop_grace_period"] = ["30s"]  # not a string
    broken = tmp_path / "compose.yml"
    broken.write_text(yaml.safe_dump(compose))
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(broken)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1


def test_the_kustomization_lists_every_manifest():
    kustomization, _ = k8s_documents()
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, "latest"])
def test_the_kubernetes_manifests_match_the_kubernetes_schemas(version):
    import kubernetes_validate

    if version == "latest":
        version = kubernetes_validate.utils.latest_version()
    _, documents = k8s_documents()
    assert len(documents) == 11
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_kubernetes_schema_check_catches_a_mistake():
    import kubernetes_validate

    _, documents = k8s_documents()
    deployment = by_kind(documents, "Deployment")["keras-rnn"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["grpcc"] = container["readinessProbe"].pop("grpc")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST_KUBERNETES, strict=True)


def test_the_manifests_fit_together_and_match_the_server():
    from keras_rnn.cli import add_serve_arguments
    import argparse

    _, documents = k8s_documents()
    deployments, services = by_kind(documents, "Deployment"), by_kind(documents, "Service")
    assert set(deployments) == {"keras-rnn", "tensorflow-serving"}
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
        assert {"requests", "limits"} <= set(container["resources"])
        assert pod["securityContext"]["runAsNonRoot"]
        [models] = [m for m in container["volumeMounts"] if m["mountPath"] == "/models"]
        assert models["readOnly"]
        [volume] = [v for v in pod["volumes"] if v["name"] == models["name"]]
        assert volume["persistentVolumeClaim"]["readOnly"]
        for service_name in (name, f"{name}-headless"):
            service = services[service_name]
            assert service["spec"]["selector"].items() <= labels.items()
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports
        assert services[f"{name}-headless"]["spec"]["clusterIP"] == "None"
        for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
            [other] = [d for d in documents if d["kind"] == kind
                       and d["metadata"]["name"] == name]
            if kind == "PodDisruptionBudget":
                assert other["spec"]["selector"]["matchLabels"].items() <= labels.items()
            else:
                assert other["spec"]["scaleTargetRef"]["name"] == name
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
