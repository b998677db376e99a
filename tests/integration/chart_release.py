"""A Helm release of the chart on the integration cluster, and the operator running as its ServiceAccount.

The chart's Deployment cannot run here (no kubelet; the fake nodes take GPU pods only), so the operator runs as the
usual subprocess, but authenticated as the chart's ServiceAccount (a TokenRequest token in its own kubeconfig) with
the namespaces and Lease the chart gives it: jobs reaching Running prove the chart's rules are enough.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests import charttools
from tests.charttools import CHART
from tests.integration.helpers import KUBECONFIG, Kube, wait_until
from tests.integration.operator_process import OperatorProcess

TOKEN_SECONDS = 3600


class Release:
    """One Helm release of the chart, in its own namespace."""

    def __init__(self, kube: Kube, *sets: str) -> None:
        self.kube, self.sets = kube, sets
        self.name = f"ft-{uuid.uuid4().hex[:6]}"
        self.namespace = f"{self.name}-system"
        self.fullname = f"{self.name}-finetune-operator"
        self.notes = ""
        """What `helm install` printed (NOTES.txt)."""

    def install(self) -> None:
        args = [arg for value in self.sets for arg in ("--set", value)]
        self.notes = self.helm("install", self.name, str(CHART), "--create-namespace", *args).stdout

    def uninstall(self) -> None:
        self.helm("uninstall", self.name, "--ignore-not-found")
        self.kube.core.delete_namespace(self.namespace)

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
        watched = self.env()["FINETUNE_NAMESPACES"].split(",")[0] or "default"
        return self.can("", "events", "create", watched) and self.can(
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
    """`finetune operator` as the chart's ServiceAccount, watching the chart's namespaces with its Lease."""

    def __init__(self, release: Release, folder: Path, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(
            log_dir=folder, extra_env=extra_env
        )  # a log of its own: the RBAC test reads all of it
        self.release, self.kubeconfig = release, release.kubeconfig(folder / "kubeconfig")

    def env(self) -> dict[str, str]:
        chart = self.release.env()
        ours = {name: chart[name] for name in ("FINETUNE_NAMESPACES", "FINETUNE_LEASE_NAME")}
        ours["FINETUNE_LEASE_NAMESPACE"] = self.release.namespace
        return {**super().env(), **ours, "KUBECONFIG": str(self.kubeconfig), **self.extra_env}


@contextlib.contextmanager
def installed(kube: Kube, *sets: str) -> Iterator[Release]:
    """A release for the length of the block (`--set` values in `sets`)."""
    release = Release(kube, *sets)
    release.install()
    try:
        yield release
    finally:
        release.uninstall()


@contextlib.contextmanager
def running(
    release: Release, folder: Path, extra_env: dict[str, str] | None = None
) -> Iterator[ChartOperator]:
    """The operator as `release`'s ServiceAccount, once the release's bindings are in force."""
    process = ChartOperator(release, folder, extra_env)
    wait_until("the chart's RBAC to reach the API server's authorizer", release.rbac_in_force, timeout=30)
    process.start()
    try:
        yield process
    finally:
        process.stop()
