"""Pure readers of the observed children: what the Job, its pods and Kueue's Workload say (dict in, facts out).

Kept apart from `status.py` so the state machine reads as decisions, and these as table-testable facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from finetune_api.trainer import TerminationMessage
from pydantic import ValidationError

from finetune_operator.builders.pod import CONTAINER

STUCK_WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
"""Container waiting reasons that do not resolve by themselves (a missing image or Secret)."""


@dataclass(frozen=True)
class JobFacts:
    """The batch Job's state."""

    exists: bool
    suspended: bool = False
    complete: bool = False
    failed: bool = False
    failed_reason: str = ""
    failed_message: str = ""


@dataclass(frozen=True)
class PodFacts:
    """The training pods' state, reduced to what the status needs."""

    running: int = 0
    succeeded: int = 0
    unschedulable_since: datetime | None = None
    unschedulable_message: str = ""
    stuck_reason: str = ""
    stuck_message: str = ""
    succeeded_message: TerminationMessage | None = None
    failure: TerminationMessage | None = None
    """The newest failed pod's termination message, when it left one."""
    failure_exit_code: int | None = None
    failure_cause: str = ""
    """Kubernetes' reason for the newest failed pod's end (Error, OOMKilled, Evicted…)."""


@dataclass(frozen=True)
class AdmissionFacts:
    """What Kueue's Workload for the Job says about its admission (Kueue's batch/Job integration)."""

    admitted: bool = False
    evicted: bool = False
    """Kueue took the admission back (preemption, …): it suspends the Job and queues the Workload again."""
    reason: str = ""
    """Kueue's reason for not admitting it (Pending, Inadmissible, …) or for evicting it (Preempted, …)."""
    message: str = ""


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def job_facts(job: dict[str, Any] | None) -> JobFacts:
    """Facts from a batch/v1 Job (None when it does not exist)."""
    if job is None:
        return JobFacts(exists=False)
    failed = _condition(job, "Failed")
    return JobFacts(
        exists=True,
        suspended=bool((job.get("spec") or {}).get("suspend")),
        complete=_condition(job, "Complete") is not None,
        failed=failed is not None,
        failed_reason=(failed or {}).get("reason", ""),
        failed_message=(failed or {}).get("message", ""),
    )


def workload_owner(workload: dict[str, Any]) -> dict[str, Any] | None:
    """The owner reference of a Kueue Workload to the batch Job it was made for (None for other owners)."""
    for ref in (workload.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("apiVersion") == "batch/v1" and ref.get("kind") == "Job" and ref.get("controller"):
            return dict(ref)
    return None


def admission_facts(workloads: list[dict[str, Any]], job_uid: str | None) -> AdmissionFacts:
    """Facts from the Workload Kueue made for the Job with `job_uid` (one made for a deleted Job is ignored)."""
    workload = next(
        (w for w in workloads if job_uid and (workload_owner(w) or {}).get("uid") == job_uid), None
    )
    if workload is None:
        return AdmissionFacts()
    conditions = {c.get("type"): c for c in (workload.get("status") or {}).get("conditions") or []}
    evicted = conditions.get("Evicted") or {}
    if evicted.get("status") == "True":
        return AdmissionFacts(
            evicted=True, reason=evicted.get("reason") or "Evicted", message=evicted.get("message", "")
        )
    for kind in ("QuotaReserved", "Admitted"):
        condition = conditions.get(kind) or {}
        if condition.get("status") != "True":
            return AdmissionFacts(reason=condition.get("reason", ""), message=condition.get("message", ""))
    return AdmissionFacts(admitted=True)


def termination_message(text: str | None) -> TerminationMessage | None:
    """The trainer's message; text that is not one (the log tail Kubernetes fell back to) becomes the message."""
    if not text:
        return None
    try:
        return TerminationMessage.model_validate_json(text)
    except ValidationError:
        return TerminationMessage(status="Failed", reason="Error", message=text.strip()[-2000:])


def _trainer_status(pod: dict[str, Any]) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return dict(status)
    return {}


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _created(pod: dict[str, Any]) -> str:
    return str(pod.get("metadata", {}).get("creationTimestamp") or "")


def pod_facts(pods: list[dict[str, Any]]) -> PodFacts:
    """Facts from the training pods (newest last wins for failures)."""
    facts: dict[str, Any] = {"running": 0, "succeeded": 0}
    for pod in sorted(pods, key=_created):
        status, phase = pod.get("status") or {}, (pod.get("status") or {}).get("phase")
        container = _trainer_status(pod)
        terminated = (container.get("state") or {}).get("terminated") or {}
        waiting = (container.get("state") or {}).get("waiting") or {}
        if phase == "Running" and not pod.get("metadata", {}).get("deletionTimestamp"):
            facts["running"] += 1
        elif phase == "Succeeded":
            facts["succeeded"] += 1
            facts["succeeded_message"] = termination_message(terminated.get("message"))
        elif phase == "Failed":
            facts["failure"] = termination_message(terminated.get("message"))
            facts["failure_exit_code"] = terminated.get("exitCode")
            facts["failure_cause"] = terminated.get("reason") or status.get("reason") or ""
        if waiting.get("reason") in STUCK_WAITING_REASONS:
            facts["stuck_reason"], facts["stuck_message"] = waiting["reason"], waiting.get("message", "")
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
                since = _time(condition.get("lastTransitionTime"))
                earliest = facts.get("unschedulable_since")
                if since is not None and (earliest is None or since < earliest):
                    facts["unschedulable_since"] = since
                facts["unschedulable_message"] = condition.get("message", "")
    return PodFacts(**facts)


def _unschedulable(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions)


def waiting_pods(pods: list[dict[str, Any]]) -> list[str]:
    """Names of the pods the scheduler could not place (nodes may be on their way for them)."""
    return [
        str(pod["metadata"]["name"])
        for pod in pods
        if _unschedulable(pod) and not pod["metadata"].get("deletionTimestamp")
    ]


def _pick(obj: dict[str, Any], *path: str) -> Any:
    for key in path:
        obj = obj.get(key) or {}
    return obj or None


def slim_body(body: dict[str, Any]) -> dict[str, Any]:
    """A FineTuneJob without what the operator never reads (managedFields, kubectl's last-applied copy)."""
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith("kubectl.kubernetes.io/")
    }
    return {**body, "metadata": {**meta, "annotations": annotations}}


def slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """What `pod_facts` and the poller read of a pod: the operator keeps thousands of these in memory."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    return {
        "metadata": {k: meta.get(k) for k in ("name", "creationTimestamp", "deletionTimestamp", "labels")},
        "status": {
            "phase": status.get("phase"),
            "podIP": status.get("podIP"),
            "reason": status.get("reason"),
            "message": status.get("message"),
            "conditions": [c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"],
            "containerStatuses": [_trainer_status(pod)],
        },
    }


def slim_job(job: dict[str, Any]) -> dict[str, Any]:
    """What `job_facts` and the reconciler read of a Job: suspension, deletion, conditions and its placement."""
    template = _pick(job, "spec", "template", "spec") or {}
    containers = template.get("containers") or [{}]
    placement = {k: template.get(k) for k in ("nodeSelector", "tolerations", "affinity", "priorityClassName")}
    return {
        "metadata": {k: (job.get("metadata") or {}).get(k) for k in ("name", "uid", "deletionTimestamp")},
        "spec": {
            "suspend": _pick(job, "spec", "suspend") or False,
            "template": {
                "spec": {"containers": [{"resources": containers[0].get("resources")}], **placement}
            },
        },
        "status": {
            "conditions": _pick(job, "status", "conditions") or [],
        },
    }


def slim_workload(workload: dict[str, Any]) -> dict[str, Any]:
    """What `admission_facts` reads of a Kueue Workload: its owning Job and its conditions, without timestamps."""
    keep = ("type", "status", "reason", "message")
    return {
        "metadata": {"name": (workload.get("metadata") or {}).get("name"),
                     "ownerReferences": [ref for ref in [workload_owner(workload)] if ref]},
        "status": {"conditions": [{k: c.get(k) for k in keep} for c in _pick(workload, "status", "conditions") or []]},
    }  # fmt: skip
