"""The status state machine, table-driven: (Job, pods, spec flags) → (phase, reason, stalled, key conditions)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from finetune_api.trainer import TerminationMessage
from finetune_operator.observed import job_facts, pod_facts, termination_message
from finetune_operator.status import Observation, derive, transition_event

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OK = TerminationMessage(
    status="Succeeded", output="s3://b/out", digest="sha256:00", metrics={"loss": 0.5, "x": None}
)
BAD_ROW = TerminationMessage(
    status="Failed", reason="DataError", message="train.jsonl line 7: no 'completion'"
)


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def job(*conditions: tuple[str, str], suspend: bool = False, active: int = 0) -> dict[str, Any]:
    conds = [
        {"type": kind, "status": "True", "reason": reason, "message": f"{reason}!"}
        for kind, reason in conditions
    ]
    return {"spec": {"suspend": suspend}, "status": {"conditions": conds, "active": active}}


def pod(
    phase: str,
    message: TerminationMessage | str | None = None,
    exit_code: int = 1,
    waiting: str = "",
    unschedulable_for: float | None = None,
    cause: str = "Error",
    created: str = "2026-11-28T11:00:00Z",
) -> dict[str, Any]:
    text = message.to_json() if isinstance(message, TerminationMessage) else message
    state: dict[str, Any] = {}
    if phase in ("Succeeded", "Failed"):
        state = {
            "terminated": {
                "exitCode": 0 if phase == "Succeeded" else exit_code,
                "reason": cause,
                "message": text,
            }
        }
    elif waiting:
        state = {"waiting": {"reason": waiting, "message": f"{waiting} details"}}
    conditions = []
    if unschedulable_for is not None:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
                "lastTransitionTime": _stamp(NOW - timedelta(seconds=unschedulable_for)),
            }
        )
    status = {
        "phase": phase,
        "conditions": conditions,
        "containerStatuses": [{"name": "trainer", "state": state}],
    }
    return {"metadata": {"creationTimestamp": created}, "status": status}


@dataclass
class Case:
    name: str
    job: dict[str, Any] | None
    pods: list[dict[str, Any]] = field(default_factory=list)
    phase: str = ""
    reason: str = ""
    stalled: bool = False
    user_suspended: bool = False
    queued: bool = False
    invalid: str | None = None
    invalid_reason: str = "InvalidSpec"


# fmt: off
CASES = [
    Case("no job yet", None, phase="Pending", reason="Creating"),
    Case("pod pending", job(active=1), [pod("Pending")], phase="Pending", reason="Starting"),
    Case("pod running", job(active=1), [pod("Running")], phase="Running", reason="Training"),
    Case(
        "complete",
        job(("Complete", "Completed")),
        [pod("Succeeded", OK)],
        phase="Succeeded",
        reason="Succeeded",
    ),
    Case(
        "trainer reason wins",
        job(("Failed", "PodFailurePolicy")),
        [pod("Failed", BAD_ROW, exit_code=2)],
        phase="Failed",
        reason="DataError",
        stalled=True,
    ),
    Case(
        "exit 2 with logs only",
        job(("Failed", "PodFailurePolicy")),
        [pod("Failed", "Traceback: boom", exit_code=2)],
        phase="Failed",
        reason="InvalidConfig",
        stalled=True,
    ),
    Case(
        "backoff, no message",
        job(("Failed", "BackoffLimitExceeded")),
        [pod("Failed")],
        phase="Failed",
        reason="BackoffLimitExceeded",
        stalled=True,
    ),
    Case(
        "deadline",
        job(("Failed", "DeadlineExceeded")),
        [pod("Failed", BAD_ROW)],
        phase="Failed",
        reason="DeadlineExceeded",
        stalled=True,
    ),
    Case(
        "job failed, no pods",
        job(("Failed", "BackoffLimitExceeded")),
        phase="Failed",
        reason="BackoffLimitExceeded",
        stalled=True,
    ),
    Case(
        "retrying after a failure",
        job(active=1),
        [pod("Failed", BAD_ROW, created="2026-11-28T10:00:00Z"), pod("Running")],
        phase="Running",
        reason="Training",
    ),
    Case(
        "suspended by the user", job(suspend=True), phase="Suspended", reason="Suspended", user_suspended=True
    ),
    Case("waiting for kueue", job(suspend=True), phase="Queued", reason="Queued", queued=True),
    Case(
        "user suspend beats the queue",
        job(suspend=True),
        phase="Suspended",
        reason="Suspended",
        user_suspended=True,
        queued=True,
    ),
    Case(
        "unschedulable briefly",
        job(active=1),
        [pod("Pending", unschedulable_for=10)],
        phase="Pending",
        reason="Unschedulable",
    ),
    Case(
        "unschedulable too long",
        job(active=1),
        [pod("Pending", unschedulable_for=600)],
        phase="Pending",
        reason="Unschedulable",
        stalled=True,
    ),
    Case(
        "image cannot be pulled",
        job(active=1),
        [pod("Pending", waiting="ImagePullBackOff")],
        phase="Pending",
        reason="ImagePullBackOff",
        stalled=True,
    ),
    Case(
        "missing secret",
        job(active=1),
        [pod("Pending", waiting="CreateContainerConfigError")],
        phase="Pending",
        reason="CreateContainerConfigError",
        stalled=True,
    ),
    Case(
        "out of memory",
        job(("Failed", "BackoffLimitExceeded")),
        [pod("Failed", exit_code=137, cause="OOMKilled")],
        phase="Failed",
        reason="OOMKilled",
        stalled=True,
    ),
    Case(
        "pods done, job not complete yet",
        job(active=0),
        [pod("Succeeded", OK)],
        phase="Running",
        reason="Finishing",
    ),
    Case(
        "spec cannot run",
        None,
        phase="Failed",
        reason="InvalidSpec",
        stalled=True,
        invalid="resources.gpu: no",
    ),
    Case(
        "spec does not fit its GPUs",
        None,
        phase="Failed",
        reason="DoesNotFit",
        stalled=True,
        invalid="spec.resources.gpu.minMemoryGiB: the job needs about 140 GiB per GPU",
        invalid_reason="DoesNotFit",
    ),
]


def observe(case: Case, previous: dict[str, Any] | None = None) -> Observation:
    return Observation(
        generation=3, job=job_facts(case.job), pods=pod_facts(case.pods), user_suspended=case.user_suspended,
        queued=case.queued, workload={"jobName": "j-train"}, now=NOW, stall_after_seconds=300,
        invalid_spec=case.invalid, invalid_reason=case.invalid_reason, previous=previous or {},
    )


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_phase_reason_and_conditions(case: Case) -> None:
    status = derive(observe(case))
    by_type = conditions(status)
    assert (status["phase"], by_type["Stalled"]["status"] == "True") == (case.phase, case.stalled)
    reason_holder = "Stalled" if case.stalled else "Reconciling"
    assert by_type[reason_holder]["reason"] == case.reason
    assert by_type["Ready"]["status"] == ("True" if case.phase == "Succeeded" else "False")
    in_progress = case.phase in ("Pending", "Queued", "Running") and not case.stalled
    assert by_type["Reconciling"]["status"] == ("True" if in_progress else "False")
    for kind, phase in (("Training", "Running"), ("Complete", "Succeeded"), ("Failed", "Failed"),
                        ("Suspended", "Suspended")):
        assert by_type[kind]["status"] == ("True" if case.phase == phase else "False"), kind
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    assert status["observedGeneration"] == 3


def test_failure_message_is_the_trainers() -> None:
    status = derive(observe(CASES[4]))
    assert conditions(status)["Failed"]["message"] == "train.jsonl line 7: no 'completion'"
    assert status["completionTime"] == _stamp(NOW)


def test_result_comes_from_the_termination_message() -> None:
    status = derive(observe(CASES[3]))
    assert status["result"] == {"artifactUri": "s3://b/out", "digest": "sha256:00", "metrics": {"loss": 0.5}}


def test_success_completes_progress_from_the_final_metrics() -> None:
    """The run may end between two metric polls: the last reading (step 84 of 150) is not where it finished."""
    previous = {"phase": "Running", "progress": {"step": 84, "totalSteps": 150, "percent": 56, "loss": 2.0}}
    case = observe(CASES[3], previous)
    assert case.pods.succeeded_message is not None
    message = case.pods.succeeded_message.model_copy(update={"metrics": {"step": 150, "loss": 0.5}})
    status = derive(replace(case, pods=replace(case.pods, succeeded_message=message)))
    assert status["progress"] == {"step": 150, "totalSteps": 150, "percent": 100, "etaSeconds": 0, "loss": 0.5}


def test_stalled_carries_the_schedulers_message() -> None:
    stalled = conditions(derive(observe(CASES[14])))["Stalled"]
    assert stalled["message"] == "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."


def test_transition_times_stay_while_a_condition_holds() -> None:
    first = derive(observe(CASES[2]))
    later = derive(replace(observe(CASES[2]), now=NOW + timedelta(hours=1), previous=first))
    assert conditions(later)["Training"]["lastTransitionTime"] == _stamp(NOW)
    assert later["startTime"] == first["startTime"] == _stamp(NOW)
    done = derive(replace(observe(CASES[3]), now=NOW + timedelta(hours=2), previous=later))
    assert conditions(done)["Training"]["lastTransitionTime"] == _stamp(NOW + timedelta(hours=2))
    assert done["startTime"] == _stamp(NOW)


def test_progress_survives_status_derivation() -> None:
    previous = {"phase": "Running", "progress": {"step": 5}}
    assert derive(observe(CASES[2], previous))["progress"] == {"step": 5}


def test_events_on_phase_changes_and_on_stalling_only() -> None:
    pending = derive(observe(CASES[1]))
    running = derive(observe(CASES[2], pending))
    assert transition_event({}, pending) == ("Normal", "Pending", "waiting for the training pods to start")
    assert transition_event(pending, running) == ("Normal", "Running", "1 training pod(s) running")
    assert transition_event(running, derive(observe(CASES[2], running))) is None
    stuck = derive(observe(CASES[14], pending))
    kind, reason, _ = transition_event(pending, stuck) or ("", "", "")
    assert (kind, reason) == ("Warning", "Unschedulable")
    assert transition_event(stuck, derive(observe(CASES[14], stuck))) is None
    failed = derive(observe(CASES[4], running))
    assert (transition_event(running, failed) or ("",))[0] == "Warning"


def test_a_termination_message_that_is_not_json_becomes_the_message() -> None:
    parsed = termination_message("Traceback (most recent call last):\n  boom")
    assert parsed is not None and parsed.reason == "Error" and "boom" in (parsed.message or "")
    assert termination_message("") is None


def test_the_gpu_fit_estimate_is_shown_in_status() -> None:
    estimate = {"gpuMemoryGiB": 11.3, "capacityGiB": 80.0, "fits": True}
    obs = replace(observe(CASES[0]), estimate=estimate)

    assert derive(obs)["estimate"] == estimate
    assert "estimate" not in derive(observe(CASES[0]))


@pytest.mark.parametrize(
    "said",
    [None, "killed by an OOM after the last step", '{"status": "Succeeded"}'],
    ids=["no termination message", "not the trainer's", "ours without an output"],
)
def test_a_success_without_a_result_says_so_with_a_warning(said: str | None) -> None:
    """A pod that exits 0 without the trainer's summary leaves no result: ResultMissing, not a silent success."""
    case = observe(CASES[3], {"phase": "Running"})
    facts = replace(case.pods, succeeded_message=termination_message(said))
    status = derive(replace(case, pods=facts))
    assert status["phase"] == "Succeeded" and "result" not in status
    ready, complete = conditions(status)["Ready"], conditions(status)["Complete"]
    assert ready["reason"] == complete["reason"] == "ResultMissing"
    assert "wrote no result" in status["message"] and "pod's log" in status["message"]
    event = transition_event({"phase": "Running"}, status)
    assert event is not None and event[:2] == ("Warning", "ResultMissing")


def test_a_success_with_a_result_is_a_normal_event() -> None:
    status = derive(observe(CASES[3], {"phase": "Running"}))
    assert transition_event({"phase": "Running"}, status) == ("Normal", "Succeeded", "training finished")
