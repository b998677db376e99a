"""What hack/kind/install.sh leaves in the nodes (hack/kind/load.sh): each image once, and only where its pods run,
so that a reused cluster does not grow with every build and the 6.6 GB trainer image is not held twice."""

from __future__ import annotations

import json
import subprocess

import pytest
from kubernetes import client

from tests.e2e.kindkit import RELEASE, RELEASE_NAMESPACE, trainer_image
from tests.integration.helpers import Kube

pytestmark = [pytest.mark.e2e]


def _references(node: str, repository: str) -> set[str]:
    """The node's containerd references (tags and digests) to docker.io/library/<repository>."""
    listed = subprocess.run(["/usr/bin/docker", "exec", node, "crictl", "images", "-o", "json"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    prefix = f"docker.io/library/{repository}"
    return {
        ref
        for image in json.loads(listed.stdout)["images"]
        for ref in (*(image.get("repoTags") or ()), *(image.get("repoDigests") or ()))
        if ref.startswith((prefix + ":", prefix + "@"))
    }


def test_each_image_is_in_the_nodes_that_run_it_once(kube: Kube) -> None:
    operator = client.AppsV1Api(kube.api).read_namespaced_deployment(RELEASE, RELEASE_NAMESPACE)
    operator_image = operator.spec.template.spec.containers[0].image
    trainer = trainer_image(kube)
    gpu_nodes = {
        n.metadata.name for n in kube.core.list_node(label_selector="nvidia.com/gpu.present=true").items
    }
    nodes = {n.metadata.name for n in kube.core.list_node().items}
    assert gpu_nodes and gpu_nodes < nodes
    for node in nodes:
        assert _references(node, "finetune-operator") == {f"docker.io/library/{operator_image}"}, node
        expected = {f"docker.io/library/{trainer}"} if node in gpu_nodes else set()
        assert _references(node, "finetune-trainer") == expected, node
