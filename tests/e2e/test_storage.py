"""s3:// and oci:// in real pods, with the credentials of Secrets the operator hands to each role: a job reads its
dataset from an S3 store and writes its adapter there; another pushes its adapter to a registry as an ORAS artifact.
The servers (`tests/storage_servers.py`: versitygw, the CNCF distribution registry with htpasswd auth) run on the
host, listening on the kind network's gateway address, which the pods reach through their node; hack/kind/install.sh
lists that address in trainer.insecureRegistries, as the registry speaks plain HTTP."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from finetune_trainer.oci import ADAPTER_ARTIFACT_TYPE, TITLE

from tests import storage_servers
from tests.e2e.kindkit import Watch, apply, tiny_lora
from tests.integration.helpers import Kube

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def kind_gateway() -> str:
    """The host's IPv4 address on the Docker network kind puts its nodes on."""
    network = subprocess.run(
        ["/usr/bin/docker", "network", "inspect", "kind"], check=True, capture_output=True, text=True
    )
    configs = json.loads(network.stdout)[0]["IPAM"]["Config"]
    return next(c["Gateway"] for c in configs if "." in c.get("Gateway", ""))


@pytest.fixture(scope="module")
def registry(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[storage_servers.Registry]:
    """An OCI registry on the kind network's gateway address."""
    del kube
    root = tmp_path_factory.mktemp("e2e-registry")
    with storage_servers.registry(storage_servers.build(), root, host=kind_gateway()) as found:
        yield found


@pytest.fixture(scope="module")
def store(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[storage_servers.ObjectStore]:
    """An S3 gateway on the kind network's gateway address, with the buckets `corpora` and `results`."""
    del kube  # the cluster (and so its network) first
    root = tmp_path_factory.mktemp("e2e-s3")
    for bucket in ("corpora", "results"):
        (root / "data" / bucket).mkdir(parents=True)
    with storage_servers.object_store(storage_servers.build(), root, host=kind_gateway()) as store:
        yield store


def test_a_job_reads_its_dataset_from_s3_and_writes_its_adapter_there(
    kube: Kube, namespace: str, store: storage_servers.ObjectStore, tmp_path: Path
) -> None:
    job, data = tiny_lora(
        "s3-lora",
        training={"maxSteps": 20},
        dataset={"uri": "s3://corpora/e2e/train.jsonl", "secretRef": {"name": "s3"}},
        output={"uri": "s3://results/e2e/s3-lora", "pushSecretRef": {"name": "s3"}},
    )
    rows = tmp_path / "train.jsonl"
    rows.write_text(data[0]["data"]["train.jsonl"])
    store.client().fput_object("corpora", "e2e/train.jsonl", str(rows))
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "s3"}, "stringData": store.env()})
    apply(kube, namespace, job)

    done = Watch(kube, namespace, "s3-lora").until_phase("Succeeded", "Failed")

    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["result"]["artifactUri"] == "s3://results/e2e/s3-lora", status["result"]
    fetched = tmp_path / "adapter"
    listed = {o.object_name for o in store.client().list_objects("results", prefix="e2e/", recursive=True)}
    assert "e2e/s3-lora/manifest.json" in listed, listed
    assert "e2e/s3-lora/adapter_model.safetensors" in listed, listed
    store.client().fget_object("results", "e2e/s3-lora/manifest.json", str(fetched / "manifest.json"))
    manifest = json.loads((fetched / "manifest.json").read_text())
    digest = "sha256:" + hashlib.sha256((fetched / "manifest.json").read_bytes()).hexdigest()
    assert status["result"]["digest"] == digest, status["result"]
    assert "adapter_model.safetensors" in manifest["digests"], manifest
    assert store.secret_key not in json.dumps(status), "a credential in status"


def test_a_job_pushes_its_adapter_to_a_registry(
    kube: Kube, namespace: str, registry: storage_servers.Registry
) -> None:
    target = f"{registry.host}/e2e/tiny-lora"
    job, data = tiny_lora(
        "oci-lora",
        training={"maxSteps": 20},
        output={"uri": f"oci://{target}:v1", "pushSecretRef": {"name": "reg"}},
    )
    kube.core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "reg"}, "type": "kubernetes.io/dockerconfigjson",
         "stringData": {".dockerconfigjson": registry.config_json()}},
    )  # fmt: skip
    apply(kube, namespace, job, data)

    done = Watch(kube, namespace, "oci-lora").until_phase("Succeeded", "Failed")

    status = done["status"]
    assert status["phase"] == "Succeeded", status
    digest = status["result"]["digest"]
    assert status["result"]["artifactUri"] == f"oci://{target}@{digest}", status["result"]
    manifest = registry.client().get_manifest(f"{target}:v1")
    assert manifest["artifactType"] == ADAPTER_ARTIFACT_TYPE, manifest
    titles = [layer["annotations"][TITLE] for layer in manifest["layers"]]
    assert "adapter_model.safetensors" in titles and titles[-1] == "manifest.json", titles
    assert registry.password not in json.dumps(status), "a credential in status"
