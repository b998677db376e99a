"""Karpenter on the integration control plane: its CRDs, a KWOKNodeClass, a GPU NodePool, and its controller with the
KWOK cloud provider (built by `hack/cluster/build.sh --karpenter`, pinned in hack/versions.env) as a local process.

The NodePool `gpu` offers two 8-GPU instance types whose offerings carry the labels NVIDIA GPU Feature Discovery sets
(`nvidia.com/gpu.product`, `.memory`, `.count`), with the `nvidia.com/gpu` taint: Karpenter's nodes look like the
static ones of hack/cluster/up.sh, but with GPUs those lack (H100 80GB, A100 40GB; the static nodes have A100 80GB),
so a job asking for one of these products runs only on a node made for it. The control plane's KWOK controller
manages Karpenter's Nodes (they carry its `kwok.x-k8s.io/node: fake` annotation): they go Ready and pods on them
Running. The node class delays registration (`REGISTRATION_DELAY`) so that a test sees the NodeClaim launched but not
yet registered; empty nodes are consolidated at once (`consolidateAfter: 0s`, what a platform team would set to
minutes). At the end the NodePool goes (Karpenter deletes its nodes), then the process and the CRDs, so that later
tests run on a cluster without Karpenter.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from finetune_api.gpus import GPU_MEMORY_MIB
from finetune_operator import karpenter
from finetune_operator.builders.pod import GPU_PRODUCT_LABEL, GPU_RESOURCE
from kubernetes.client.rest import ApiException

from tests.integration.helpers import KUBECONFIG, ROOT, Kube, install_crds, run_live, wait_until
from tests.integration.operator_process import free_port

BUILD_TIMEOUT_S = 20 * 60  # cold on 2 cores: ~6 min (CONTRIBUTING.md#karpenter)
NODEPOOL = "gpu"
NODECLASS = ("karpenter.kwok.sh", "v1alpha1", "kwoknodeclasses")
NODEPOOLS = (karpenter.GROUP, "v1", "nodepools")
ZONE = "local-a"  # the static nodes' zone
REGISTRATION_DELAY = "20s"
INSTANCE_TYPES = {"p5.48xlarge": "NVIDIA-H100-80GB-HBM3", "p4d.24xlarge": "NVIDIA-A100-SXM4-40GB"}
"""Instance types of the NodePool: 8 GPUs of the product, 96 cores, 1152 GiB."""


def _in(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": [value]}


def _instance_type(name: str, product: str) -> dict[str, Any]:
    """One instance type in the KWOK provider's instance-types file (its JSON form of cloudprovider.InstanceType)."""
    gfd = [_in(GPU_PRODUCT_LABEL, product), _in("nvidia.com/gpu.memory", str(GPU_MEMORY_MIB[product])),
           _in("nvidia.com/gpu.count", "8")]  # fmt: skip
    offering = {"Price": 32.77, "Available": True,
                "Requirements": [_in("karpenter.sh/capacity-type", "on-demand"), _in("topology.kubernetes.io/zone", ZONE), *gfd]}  # fmt: skip
    resources = {
        "cpu": "96",
        "memory": "1152Gi",
        "ephemeral-storage": "7Ti",
        "pods": "110",
        GPU_RESOURCE: "8",
    }
    return {"name": name, "architecture": "amd64", "operatingSystems": ["linux"], "resources": resources,
            "offerings": [offering]}  # fmt: skip


def _objects() -> list[tuple[tuple[str, str, str], dict[str, Any]]]:
    node_class = {"apiVersion": "/".join(NODECLASS[:2]), "kind": "KWOKNodeClass", "metadata": {"name": NODEPOOL},
                  "spec": {"nodeRegistrationDelay": REGISTRATION_DELAY}}  # fmt: skip
    template = {
        "nodeClassRef": {"group": NODECLASS[0], "kind": "KWOKNodeClass", "name": NODEPOOL},
        "requirements": [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}],
        "taints": [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}],
        "expireAfter": "Never",
    }
    pool = {"apiVersion": "/".join(NODEPOOLS[:2]), "kind": "NodePool", "metadata": {"name": NODEPOOL},
            "spec": {"template": {"spec": template},
                     "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "0s"}}}  # fmt: skip
    return [(NODECLASS, node_class), (NODEPOOLS, pool)]


class Karpenter:
    """The controller process and what it was given."""

    def __init__(self, kube: Kube, bin_dir: Path, log_dir: Path = ROOT / ".cache" / "integration") -> None:
        self.kube, self.bin_dir = kube, bin_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path, self.types_path = log_dir / "karpenter.log", log_dir / "karpenter-instance-types.json"
        self.health_port, self.metrics_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.crds: list[str] = []

    def install(self) -> None:
        """CRDs, the node class and the NodePool (replacing leftovers of an interrupted run)."""
        docs = yaml.safe_load_all((self.bin_dir / "karpenter-crds.yaml").read_text())
        self.crds = install_crds(
            self.kube, [d for d in docs if d and d.get("kind") == "CustomResourceDefinition"]
        )
        for resource, obj in _objects():
            self._delete(resource, obj["metadata"]["name"])
            self.kube.custom.create_cluster_custom_object(*resource, obj)
        types = [_instance_type(name, product) for name, product in INSTANCE_TYPES.items()]
        self.types_path.write_text(json.dumps(types, indent=1))

    def start(self) -> None:
        """Run the controller and wait until it is ready (caches synced, its CRDs mapped)."""
        env = {
            **os.environ, "KUBECONFIG": str(KUBECONFIG), "INSTANCE_TYPES_FILE_PATH": str(self.types_path),
            "DISABLE_LEADER_ELECTION": "true", "HEALTH_PROBE_PORT": str(self.health_port),
            "METRICS_PORT": str(self.metrics_port), "LOG_LEVEL": "debug",
        }  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.bin_dir / "karpenter-kwok")], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until("Karpenter's /readyz", self._ready, timeout=90)

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"Karpenter exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as reply:
                return int(reply.status) == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def nodeclaims(self) -> list[dict[str, Any]]:
        found = self.kube.custom.list_cluster_custom_object(
            karpenter.GROUP, karpenter.VERSION, karpenter.PLURAL
        )
        return list(found["items"])

    def nodeclaim(self, name: str) -> dict[str, Any] | None:
        return _or_none(
            lambda: self.kube.custom.get_cluster_custom_object(
                karpenter.GROUP, karpenter.VERSION, karpenter.PLURAL, name
            )
        )

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _delete(self, resource: tuple[str, str, str], name: str) -> None:
        """Delete a cluster-scoped object and wait until it is gone (its finalizers done)."""
        custom = self.kube.custom
        if _or_none(functools.partial(custom.delete_cluster_custom_object, *resource, name)) is not None:
            read = functools.partial(custom.get_cluster_custom_object, *resource, name)
            wait_until(f"{resource[2]}/{name} deleted", _gone(read), timeout=120)

    def uninstall(self) -> None:
        """The NodePool and its nodes, the node class (the controller holds their finalizers), the process, the
        CRDs."""
        self._delete(NODEPOOLS, NODEPOOL)
        wait_until("Karpenter's NodeClaims deleted", lambda: not self.nodeclaims(), timeout=120)
        self._delete(NODECLASS, NODEPOOL)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        ext = self.kube.ext
        for name in self.crds:
            ext.delete_custom_resource_definition(name)
        for name in self.crds:
            wait_until(
                f"CRD {name} deleted", _gone(functools.partial(ext.read_custom_resource_definition, name))
            )


T = TypeVar("T")


def _or_none(call: Callable[[], T]) -> T | None:
    """`call()`, or None when the object is not found."""
    try:
        return call()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _gone(read: Callable[[], object]) -> Callable[[], bool]:
    """A probe: true once `read` finds nothing."""
    return lambda: _or_none(read) is None


def build(config: pytest.Config) -> Path:
    """The folder with `karpenter-kwok` and `karpenter-crds.yaml` (built on first use, then cached)."""
    script = ROOT / "hack" / "cluster" / "build.sh"
    run_live(config, [str(script), "--karpenter"], BUILD_TIMEOUT_S)
    return ROOT / ".cache" / "cluster" / "bin"
