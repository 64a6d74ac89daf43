"""Reading a kustomization directory as `kubectl apply -k` would send it,
for the offline manifest tests (tests/serving/test_k8s.py,
tests/training/test_k8s_training.py)."""

import shutil
import subprocess

import yaml

WORKLOADS = ("Deployment", "Job")


def source_documents(directory):
    """The kustomization of `directory` and every document of the files it lists."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    documents = []
    for name in kustomization["resources"]:
        documents += [d for d in yaml.safe_load_all((directory / name).read_text()) if d]
    return kustomization, documents


def rendered_documents(directory):
    """What `kubectl apply -k directory` would send: `kubectl kustomize`'s
    output, or (no kubectl) the listed files with the kustomization's
    namespace and image tags applied as kustomize would."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True,
                                text=True, timeout=120)
        if result.returncode == 0:
            return [d for d in yaml.safe_load_all(result.stdout) if d]
    kustomization, documents = source_documents(directory)
    tags = {i["name"]: i["newTag"] for i in kustomization.get("images", [])}
    for document in documents:
        if document["kind"] != "Namespace":
            document["metadata"]["namespace"] = kustomization["namespace"]
        for container in pod_containers(document):
            name = container["image"].split(":")[0]
            if name in tags:
                container["image"] = f"{name}:{tags[name]}"
    return documents


def pod_containers(document):
    """The init and regular containers of a Deployment or Job (none otherwise)."""
    if document["kind"] not in WORKLOADS:
        return []
    pod = document["spec"]["template"]["spec"]
    return pod.get("initContainers", []) + pod["containers"]


def by_kind(documents, kind):
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}
