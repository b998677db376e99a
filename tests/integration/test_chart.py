"""The Helm chart on the real control plane: install, the operator running under the chart's RBAC, upgrade and
uninstall.

The chart's Deployment cannot run here (no kubelet; the fake nodes take GPU pods only), so the operator runs as the
usual subprocess, but authenticated as the chart's ServiceAccount (a TokenRequest token in its own kubeconfig) with
the Lease settings the chart gives it: a job reaching Running proves the chart's rules are enough.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from finetune_operator.api import GROUP, PLURAL, VERSION
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests import charttools
from tests.charttools import CHART
from tests.integration.helpers import KUBECONFIG, KWOK_RUN_DURATION, Kube, wait_until
from tests.integration.operator_process import OperatorProcess
from tests.integration.operator_world import World, finetunejob

pytestmark = pytest.mark.integration
TOKEN_SECONDS = 3600


class Release:
    """One Helm release of the chart, in its own namespace."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.name = f"ft-{uuid.uuid4().hex[:6]}"
        self.namespace = f"{self.name}-system"
        self.fullname = f"{self.name}-finetune-operator"
        self.notes = ""
        """What `helm install` printed (NOTES.txt)."""

    def helm(self, *args: str, check: bool = True) -> Any:
        return charttools.run(
            "helm", *args, "--namespace", self.namespace, "--kubeconfig", str(KUBECONFIG), check=check
        )

    def deployment(self) -> dict[str, Any]:
        found = client.AppsV1Api(self.kube.api).read_namespaced_deployment(self.fullname, self.namespace)
        return dict(self.kube.api.sanitize_for_serialization(found))

    def env(self) -> dict[str, str]:
        container = self.deployment()["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value", "") for e in container["env"]}

    def can(self, group: str, resource: str, verb: str, namespace: str = "default") -> bool:
        """What the API server's authorizer answers for the chart's ServiceAccount."""
        user = f"system:serviceaccount:{self.namespace}:{self.fullname}"
        attributes = {"group": group, "resource": resource, "verb": verb, "namespace": namespace}
        review = {"spec": {"user": user, "resourceAttributes": attributes}}
        return bool(
            client.AuthorizationV1Api(self.kube.api).create_subject_access_review(review).status.allowed
        )

    def rbac_in_force(self) -> bool:
        """The bindings Helm just created are in the authorizer's cache (it follows RBAC objects by watch)."""
        return self.can("", "events", "create") and self.can(
            "coordination.k8s.io", "leases", "create", self.namespace
        )

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for the cluster that authenticates as the chart's ServiceAccount."""
        request = {"spec": {"expirationSeconds": TOKEN_SECONDS}}
        token = self.kube.core.create_namespaced_service_account_token(self.fullname, self.namespace, request)
        admin = yaml.safe_load(KUBECONFIG.read_text())
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
            "users": [{"name": "chart", "user": {"token": token.status.token}}],
            "contexts": [{"name": "chart", "context": {"cluster": admin["clusters"][0]["name"], "user": "chart"}}],
            "current-context": "chart",
        }))  # fmt: skip
        path.chmod(0o600)
        return path


class ChartOperator(OperatorProcess):
    """`finetune operator` as the chart's ServiceAccount, with the chart's Lease settings."""

    def __init__(self, release: Release, folder: Path) -> None:
        super().__init__(log_dir=folder)  # a log of its own: the RBAC test reads all of it
        self.release, self.kubeconfig = release, release.kubeconfig(folder / "kubeconfig")

    def env(self) -> dict[str, str]:
        chart = self.release.env()
        lease = {
            "FINETUNE_LEASE_NAME": chart["FINETUNE_LEASE_NAME"],
            "FINETUNE_LEASE_NAMESPACE": self.release.namespace,
        }
        return {**super().env(), **lease, "KUBECONFIG": str(self.kubeconfig)}


@pytest.fixture(scope="module")
def release(kube: Kube, crds: list[str]) -> Iterator[Release]:
    release = Release(kube)
    release.notes = release.helm(
        "install", release.name, str(CHART), "--create-namespace", "--set", "image.tag=it"
    ).stdout
    try:
        yield release
    finally:
        release.helm("uninstall", release.name, "--ignore-not-found")
        kube.core.delete_namespace(release.namespace)


@pytest.fixture(scope="module")
def chart_operator(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartOperator]:
    process = ChartOperator(release, tmp_path_factory.mktemp("chart-operator"))
    wait_until("the chart's RBAC to reach the API server's authorizer", release.rbac_in_force, timeout=30)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def world(kube: Kube, namespace: str, chart_operator: ChartOperator) -> Iterator[World]:
    world = World(kube, namespace, chart_operator)
    try:
        yield world
    finally:
        world.cleanup()


def test_operator_reconciles_under_the_charts_rbac(world: World, release: Release) -> None:
    name = f"rbac-{uuid.uuid4().hex[:6]}"  # a job of an earlier run may linger in a terminating namespace
    world.output_volume(name)
    world.create(finetunejob(name, annotations={KWOK_RUN_DURATION: "1h"}))
    world.wait_phase(name, "Running")
    world.wait("Events Pending and Running", lambda: {"Pending", "Running"} <= set(world.event_reasons(name)))
    lease = client.CoordinationV1Api(world.kube.api).read_namespaced_lease(
        release.fullname, release.namespace
    )
    assert lease.spec.holder_identity, "the operator holds the chart's Lease"
    ours = [line for line in world.operator.log_path.read_text().splitlines() if name in line]
    assert not [line for line in ours if "Forbidden" in line], "\n".join(ours)


def test_the_service_account_gets_nothing_more(release: Release) -> None:
    """Least privilege, checked by the API server: what the operator never does is denied."""
    denied = [("", "secrets", "list"), ("", "pods", "delete"), (GROUP, PLURAL, "delete"), (GROUP, PLURAL, "patch"),
              ("batch", "jobs", "update"), ("coordination.k8s.io", "leases", "list")]  # fmt: skip
    allowed = [(GROUP, PLURAL, "watch"), ("batch", "jobs", "create"), ("", "events", "create")]
    assert [rule for rule in denied if release.can(*rule)] == []
    assert [rule for rule in allowed if not release.can(*rule)] == []


def test_notes_say_what_to_do_next(release: Release) -> None:
    assert f"kubectl -n {release.namespace} rollout status deployment/{release.fullname}" in release.notes
    assert "kubectl get finetunejobs -w" in release.notes and "keeps the CRD" in release.notes


def test_bad_values_fail_install_with_the_schema_message(release: Release, tmp_path: Path) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(yaml.safe_dump({"replicaCount": 0}))
    done = release.helm("install", "bad", str(CHART), "--dry-run", "-f", str(bad), check=False)
    assert done.returncode != 0
    assert "at '/replicaCount': minimum: got 0, want 1" in done.stderr, done.stderr


def test_upgrade_applies_a_changed_value(release: Release) -> None:
    release.helm("upgrade", release.name, str(CHART), "--reuse-values", "--set", "operator.stallAfterSeconds=60",
                 "--set", "trainer.image.tag=v2")  # fmt: skip
    env = release.env()
    assert env["FINETUNE_STALL_AFTER_SECONDS"] == "60"
    assert env["FINETUNE_TRAINER_IMAGE"] == "finetune-trainer:v2"
    assert (
        release.deployment()["spec"]["template"]["spec"]["containers"][0]["image"] == "finetune-operator:it"
    )
    status = yaml.safe_load(release.helm("status", release.name, "--output", "yaml").stdout)
    assert status["version"] == 2


def test_uninstall_keeps_the_crd_and_the_jobs(kube: Kube, release: Release, namespace: str) -> None:
    kube.create_finetunejob(namespace, finetunejob("kept"))
    release.helm("uninstall", release.name, "--wait")
    kube.ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    assert kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "kept")
    rbac = client.RbacAuthorizationV1Api(kube.api)
    with pytest.raises(ApiException) as gone:
        rbac.read_cluster_role(release.fullname)
    assert gone.value.status == 404
