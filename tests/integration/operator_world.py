"""A test's view of one namespace while the operator runs: create FineTuneJobs, read what the operator made.

Reads return plain dicts (camelCase for FineTuneJobs, as the API server sends them; snake_case for the typed core
objects is avoided by reading those through `ApiClient.sanitize_for_serialization`). Waits fail with the operator's
log tail, so a red test says what the operator was doing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from finetune_operator import names
from kubernetes.client.rest import ApiException

from tests.integration.helpers import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    Kube,
    wait_until,
)
from tests.integration.operator_process import OperatorProcess

T = TypeVar("T")
KWOK_MESSAGE = "kwok.finetune.io/termination-message"
KWOK_POD_IP = "kwok.finetune.io/pod-ip"
WAIT_S = 60.0


def finetunejob(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A tiny-llama FineTuneJob asking for one GPU (the fake nodes are tainted for GPU pods only)."""
    body = {
        "model": {"preset": "tiny-llama"},
        "dataset": {"uri": "configmap://data/train.jsonl"},
        "resources": {"gpu": {"count": 1}},
        **spec,
    }
    meta = {"name": name, "annotations": annotations or {}}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": meta, "spec": body}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition of type `kind` ({} when absent)."""
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


class World:
    """One test namespace, its cluster-scoped leftovers, and the operator watching it."""

    def __init__(self, kube: Kube, namespace: str, operator: OperatorProcess) -> None:
        self.kube, self.namespace, self.operator = kube, namespace, operator
        self._volumes: list[str] = []
        self._namespaces: list[str] = []

    def _plain(self, obj: Any) -> dict[str, Any]:
        return dict(self.kube.api.sanitize_for_serialization(obj))

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float = WAIT_S) -> T:
        """`wait_until`, failing with the operator's log tail."""
        try:
            return wait_until(what, probe, timeout=timeout)
        except pytest.fail.Exception:
            pytest.fail(
                f"timed out after {timeout:.0f}s waiting for {what}; operator log:\n{self.operator.log_tail()}"
            )

    def create(self, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        return dict(self.kube.create_finetunejob(namespace or self.namespace, body))

    def create_raw(self, obj: dict[str, Any]) -> None:
        """Create a child object as the operator would (used to stage a crash)."""
        ns = obj["metadata"]["namespace"]
        creators = {"ConfigMap": self.kube.core.create_namespaced_config_map,
                    "PersistentVolumeClaim": self.kube.core.create_namespaced_persistent_volume_claim,
                    "Service": self.kube.core.create_namespaced_service, "Job": self.kube.batch.create_namespaced_job}  # fmt: skip
        creators[obj["kind"]](ns, obj)

    def patch(self, name: str, patch: dict[str, Any]) -> None:
        self.kube.patch_finetunejob(self.namespace, name, patch)

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        return dict(
            self.kube.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace or self.namespace, PLURAL, name
            )
        )

    def status(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        return dict(self.get(name, namespace).get("status") or {})

    def wait_phase(
        self, name: str, phase: str, namespace: str | None = None, timeout: float = WAIT_S
    ) -> dict[str, Any]:
        """Wait for `status.phase`; returns the status."""

        def probe() -> dict[str, Any] | None:
            status = self.status(name, namespace)
            return status if status.get("phase") == phase else None

        return self.wait(f"{name} to be {phase}", probe, timeout=timeout)

    def job(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self._plain(
                self.kube.batch.read_namespaced_job(names.job(name), namespace or self.namespace)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def must_job(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        job = self.job(name, namespace)
        assert job is not None, f"no Job for {name}"
        return job

    def config_map(self, name: str) -> dict[str, Any] | None:
        try:
            return self._plain(self.kube.core.read_namespaced_config_map(name, self.namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pods(
        self, name: str, namespace: str | None = None, include_finished: bool = False
    ) -> list[dict[str, Any]]:
        """The job's pods (by default those not finished and not being deleted)."""
        found = self.kube.core.list_namespaced_pod(
            namespace or self.namespace, label_selector=f"finetune.io/job-name={name}"
        )
        pods = [self._plain(p) for p in found.items]
        if include_finished:
            return pods
        return [p for p in pods if p["status"].get("phase") in ("Pending", "Running")
                and not p["metadata"].get("deletionTimestamp")]  # fmt: skip

    def annotate_pod(self, pod: dict[str, Any], annotations: dict[str, str]) -> None:
        meta = pod["metadata"]
        self.kube.core.patch_namespaced_pod(
            meta["name"], meta["namespace"], {"metadata": {"annotations": annotations}}
        )

    def event_reasons(self, name: str) -> list[str]:
        return [reason for _, reason in self.events(name)]

    def events(self, name: str) -> list[tuple[str, str]]:
        """(type, reason) of the Events about the object `name` in this namespace."""
        events = self.kube.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        return [(e.type, e.reason) for e in events.items]

    def output_volume(
        self, job: str, namespace: str | None = None, access_mode: str = "ReadWriteOnce"
    ) -> None:
        """A PersistentVolume pre-bound to the job's output PVC (the test cluster has no provisioner)."""
        namespace = namespace or self.namespace
        name = "pv-" + re.sub(r"[^a-z0-9-]", "-", f"{namespace}-{job}")[:200] + "-" + uuid.uuid4().hex[:4]
        self.kube.core.create_persistent_volume({
            "metadata": {"name": name, "labels": {"finetune.io/test": "integration"}},
            "spec": {"capacity": {"storage": "20Gi"}, "accessModes": [access_mode],
                     "persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": f"/tmp/{name}"},
                     "claimRef": {"namespace": namespace, "name": names.output_pvc(job)}},
        })  # fmt: skip
        self._volumes.append(name)

    def other_namespace(self) -> str:
        name = f"{self.namespace[:50]}-b"
        self.kube.core.create_namespace(
            {"metadata": {"name": name, "labels": {"finetune.io/test": "integration"}}}
        )
        self._namespaces.append(name)
        return name

    def __enter__(self) -> World:
        return self

    def __exit__(self, *_: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        for volume in self._volumes:
            try:
                self.kube.core.delete_persistent_volume(volume)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        for namespace in self._namespaces:
            self.kube.core.delete_namespace(namespace)
