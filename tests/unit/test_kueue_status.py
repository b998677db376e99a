"""Kueue in the status: what the Workload Kueue made for the Job says while the job is Queued (facts, then phases)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from finetune_operator.observed import (
    AdmissionFacts,
    admission_facts,
    job_facts,
    pod_facts,
    slim_workload,
    workload_owner,
)
from finetune_operator.status import Observation, derive, transition_event

from tests.unit.test_status import NOW, job, pod

JOB_UID = "uid-of-the-job"
QUOTA = "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor a100, 8 more needed"
PREEMPTED = (
    "Preempted to accommodate a workload (UID: w-2, JobUID: j-2) due to prioritization in the ClusterQueue"
)


def workload(*conditions: tuple[str, str, str, str], owner_uid: str = JOB_UID) -> dict[str, Any]:
    """A Workload as Kueue writes it for a batch Job: conditions are (type, status, reason, message)."""
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j-train", "uid": owner_uid, "controller": True}
    conds = [
        {"type": t, "status": s, "reason": r, "message": m, "lastTransitionTime": "2026-11-28T11:00:00Z"}
        for t, s, r, m in conditions
    ]
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
        "metadata": {"name": "job-j-train-1a2b3", "ownerReferences": [owner], "managedFields": [{}]},
        "spec": {"queueName": "team-q", "podSets": [{"name": "main", "count": 1}]},
        "status": {"conditions": conds},
    }  # fmt: skip


PENDING = workload(("QuotaReserved", "False", "Pending", QUOTA))
INADMISSIBLE = workload(("QuotaReserved", "False", "Inadmissible", "LocalQueue team-q doesn't exist"))
ADMITTED = workload(("QuotaReserved", "True", "QuotaReserved", "Quota reserved in ClusterQueue cq"),
                    ("Admitted", "True", "Admitted", "The workload is admitted"))  # fmt: skip
EVICTED = workload(
    ("QuotaReserved", "False", "Preempted", PREEMPTED), ("Admitted", "False", "NoReservation", "no quota"),
    ("Evicted", "True", "Preempted", PREEMPTED), ("Preempted", "True", "InClusterQueue", PREEMPTED),
)  # fmt: skip
READMITTED = workload(
    ("QuotaReserved", "True", "QuotaReserved", "Quota reserved in ClusterQueue cq"),
    ("Admitted", "True", "Admitted", "The workload is admitted"),
    ("Evicted", "False", "QuotaReserved", f"Previously: {PREEMPTED}"),
)


@pytest.mark.parametrize(
    ("workloads", "facts"),
    [
        ([], AdmissionFacts()),
        ([PENDING], AdmissionFacts(reason="Pending", message=QUOTA)),
        ([ADMITTED], AdmissionFacts(admitted=True)),
        ([EVICTED], AdmissionFacts(evicted=True, reason="Preempted", message=PREEMPTED)),
        ([READMITTED], AdmissionFacts(admitted=True)),
        ([workload(("QuotaReserved", "True", "QuotaReserved", ""))], AdmissionFacts()),
        (
            [workload(owner_uid="an-older-job"), PENDING],
            AdmissionFacts(reason="Pending", message=QUOTA),
        ),
        (
            [workload(("QuotaReserved", "False", "Pending", QUOTA), owner_uid="an-older-job")],
            AdmissionFacts(),
        ),
    ],
    ids=[
        "none",
        "pending",
        "admitted",
        "evicted",
        "readmitted",
        "admission-checks",
        "old-job",
        "only-old-job",
    ],
)
def test_admission_facts_from_the_workload_of_the_current_job(
    workloads: list[dict[str, Any]], facts: AdmissionFacts
) -> None:
    assert admission_facts([slim_workload(w) for w in workloads], JOB_UID) == facts
    assert admission_facts(workloads, None) == AdmissionFacts(), "a Job not yet created has no Workload"


def test_only_workloads_of_batch_jobs_have_an_owner() -> None:
    assert (workload_owner(PENDING) or {}).get("name") == "j-train"
    other = {**PENDING, "metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p"}]}}
    assert workload_owner(other) is None
    assert slim_workload(other)["metadata"]["ownerReferences"] == []
    assert "managedFields" not in slim_workload(PENDING)["metadata"]


def observe(
    job_body: dict[str, Any], wl: dict[str, Any] | None, pods: list[dict[str, Any]] | None = None
) -> Observation:
    body = {**job_body, "metadata": {"uid": JOB_UID}}
    return Observation(
        generation=1, job=job_facts(body), pods=pod_facts(pods or []), user_suspended=False, queued=True,
        workload={"jobName": "j-train"}, now=NOW, stall_after_seconds=300,
        admission=admission_facts([wl] if wl else [], JOB_UID),
    )  # fmt: skip


def _admitted(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Admitted")


@pytest.mark.parametrize(
    ("wl", "reason", "message"),
    [
        (None, "Queued", "waiting for Kueue to admit the workload"),
        (PENDING, "Queued", f"waiting for Kueue to admit the workload: {QUOTA}"),
        (
            INADMISSIBLE,
            "Inadmissible",
            "waiting for Kueue to admit the workload: LocalQueue team-q doesn't exist",
        ),
        (
            ADMITTED,
            "Queued",
            "waiting for Kueue to admit the workload",
        ),  # admitted; Kueue resumes the Job next
        (EVICTED, "Preempted", f"evicted by Kueue (checkpoints are kept): {PREEMPTED}"),
    ],
    ids=["no-workload-yet", "no-quota", "no-queue", "admitted-not-resumed", "preempted"],
)
def test_a_suspended_queued_job_shows_kueues_reason(
    wl: dict[str, Any] | None, reason: str, message: str
) -> None:
    status = derive(observe(job(suspend=True), wl))
    assert (status["phase"], status["message"]) == ("Queued", message)
    reconciling = next(c for c in status["conditions"] if c["type"] == "Reconciling")
    assert (reconciling["status"], reconciling["reason"], reconciling["message"]) == ("True", reason, message)
    assert (_admitted(status)["status"], _admitted(status)["reason"]) == ("False", reason)


def test_preemption_takes_a_running_job_back_to_queued_then_running_again() -> None:
    running = derive(observe(job(active=1), ADMITTED, [pod("Running")]))
    assert running["phase"] == "Running"
    evicted_not_yet_suspended = derive(
        replace(observe(job(active=1), EVICTED, [pod("Running")]), previous=running)
    )
    assert evicted_not_yet_suspended["phase"] == "Running", "the pods run until Kueue suspends the Job"
    queued = derive(replace(observe(job(suspend=True), EVICTED), previous=running))
    assert (queued["phase"], _admitted(queued)["reason"]) == ("Queued", "Preempted")
    assert transition_event(running, queued) == ("Normal", "Queued", queued["message"])
    resumed = derive(replace(observe(job(active=1), READMITTED, [pod("Running")]), previous=queued))
    assert (resumed["phase"], _admitted(resumed)["status"]) == ("Running", "True")
    assert resumed["startTime"] == running["startTime"]
