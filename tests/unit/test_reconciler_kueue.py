"""The reconciler and Kueue's Job: it never patches `suspend` of a queued Job; runPolicy.suspend holds a queued job by
deleting its Job (Kueue would resume a suspended one as soon as it admits its Workload)."""

from __future__ import annotations

from typing import Any

from finetune_operator.builders import workload
from finetune_operator.config import Settings
from finetune_operator.metrics import OperatorMetrics
from finetune_operator.observed import slim_job
from finetune_operator.reconciler import Reconciler
from prometheus_client import CollectorRegistry

from tests.unit.operator_fixtures import body, owner
from tests.unit.test_reconciler_refusals import RecordingKube

QUEUED = {"queueName": "team-q"}


class JobWritesKube(RecordingKube):
    """Also records the Job's suspensions and deletions."""

    def __init__(self) -> None:
        super().__init__()
        self.suspends: list[bool] = []
        self.deleted: list[str] = []

    def suspend_job(self, namespace: str, name: str, suspend: bool) -> None:
        self.suspends.append(suspend)

    def delete_job(self, namespace: str, name: str) -> None:
        self.deleted.append(name)


def existing_job(suspend: bool, deleting: bool = False, complete: bool = False) -> dict[str, Any]:
    """The Job as the operator's index holds it, for a queued tiny-llama job."""
    job = workload.job(owner(runPolicy=QUEUED), Settings())
    job["metadata"]["uid"] = "uid-job"
    if deleting:
        job["metadata"]["deletionTimestamp"] = "2026-11-28T08:00:00Z"
    job["spec"]["suspend"] = suspend
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}] if complete else []}
    return slim_job(job)


def reconcile(job: dict[str, Any] | None, **policy: Any) -> JobWritesKube:
    kube = JobWritesKube()
    spec = body(runPolicy={**QUEUED, **policy})
    Reconciler(kube, Settings(), OperatorMetrics(CollectorRegistry())).reconcile(spec, job, [])
    return kube


def test_a_suspended_queued_job_gets_its_objects_but_no_job() -> None:
    kube = reconcile(None, suspend=True)
    assert [o["kind"] for o in kube.created] == ["PersistentVolumeClaim", "ConfigMap"]
    (status,) = kube.statuses
    assert status["phase"] == "Suspended" and "a queued job has no Job meanwhile" in status["message"]


def test_suspending_a_running_queued_job_deletes_its_job_once() -> None:
    kube = reconcile(existing_job(suspend=False), suspend=True)
    assert (kube.deleted, kube.suspends) == (["demo-train"], [])
    assert kube.statuses[0]["phase"] == "Suspended"
    assert reconcile(existing_job(suspend=False, deleting=True), suspend=True).deleted == []
    assert reconcile(existing_job(suspend=False, complete=True), suspend=True).deleted == []


def test_the_operator_never_resumes_or_suspends_a_queued_job() -> None:
    waiting = reconcile(existing_job(suspend=True))
    assert (waiting.suspends, waiting.deleted, waiting.statuses[0]["phase"]) == ([], [], "Queued")
    admitted = reconcile(existing_job(suspend=False))
    assert (admitted.suspends, admitted.deleted) == ([], [])
