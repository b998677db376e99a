"""What the operator asks of the API server, as a Protocol: `kube.Kube` implements it with the kubernetes client,
unit tests with a recording fake (`tests/unit/operator_fixtures.FakeKube`). Pure: no client import here, so the
reconciler, the provisioning tracker and the webhook depend on this and never on the client."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from finetune_operator import karpenter


@runtime_checkable
class KubeApi(Protocol):
    """The few reads and writes the operator makes (Kopf's watches and indexes aside)."""

    def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply of a ConfigMap, Service or PersistentVolumeClaim (creates or converges it)."""

    def secret_keys(self, namespace: str, name: str) -> set[str] | None:
        """The data keys of a Secret (values are never kept), or None when it does not exist (admission)."""

    def create_job(self, job: dict[str, Any]) -> bool:
        """Create the batch Job; False when it already exists (a restart or a stale cache: nothing duplicated)."""

    def suspend_job(self, namespace: str, name: str, suspend: bool) -> None:
        """Set the Job's `spec.suspend` (Kubernetes deletes or recreates its pods)."""

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete the Job and its pods (to start again with a changed pod template)."""

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge `status` into the FineTuneJob's status subresource (lists such as conditions are replaced)."""

    def post_event(self, owner: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """Record an Event on the FineTuneJob (best effort: a lost Event never fails a reconcile)."""

    def serves(self, group: str, version: str, plural: str) -> bool:
        """Whether the API server serves `plural` in `group/version` (e.g. a CRD that is installed)."""

    def karpenter_events(self, namespace: str) -> list[karpenter.PodEvent]:
        """The Events Karpenter recorded on pods of `namespace` (Nominated, FailedScheduling…)."""
