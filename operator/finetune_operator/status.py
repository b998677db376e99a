"""The status of a FineTuneJob, derived from what was observed (pure: facts and the previous status in).

`derive` is the one state machine: the phase, the conditions (Ready/Reconciling/Stalled with kstatus meaning, so
Flux and Argo CD read them, plus Admitted, Training, Complete, Failed and Suspended), the result, the times and
the workload names. `transition_event` says which Event to post when the phase changed. Conditions keep their
`lastTransitionTime` while their status stays the same. Where Karpenter runs, a `Provisioning` condition says what it
does for the pods that wait for nodes (`karpenter.py`); a job whose node is on its way is not Stalled.

| phase      | when                                                                          |
|------------|-------------------------------------------------------------------------------|
| Pending    | objects being created, pods not running yet (Stalled when stuck)              |
| Queued     | the Job waits for Kueue's admission, or was evicted by Kueue (`queueName`)    |
| Running    | a training pod runs                                                           |
| Suspended  | `runPolicy.suspend` is true (pods deleted, checkpoints kept; queued: no Job)  |
| Succeeded  | the Job completed; `result` holds the trainer's output, digest, metrics       |
|            | (none readable: reason ResultMissing on Ready and Complete, a Warning Event)  |
| Failed     | the Job failed (the trainer's reason), or cannot run: InvalidSpec, DoesNotFit |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from finetune_api.status import (
    Condition,
    ConditionType,
    FineTuneJobStatus,
    MemoryEstimate,
    Phase,
    Progress,
    Result,
    Workload,
)
from finetune_api.trainer import ExitCode, TerminationMessage

from finetune_operator.karpenter import Provisioning
from finetune_operator.observed import AdmissionFacts, JobFacts, PodFacts

TERMINAL: tuple[Phase, ...] = ("Succeeded", "Failed")
RESULT_MISSING = "ResultMissing"
RESULT_MISSING_MESSAGE = (
    "the training Job completed, but its pod wrote no result (no finetune-trainer termination message): "
    "status.result is empty and nothing says what was published; the pod may have been killed after the last step, "
    "or the image is not finetune-trainer. Check the pod's log and the output location before using it"
)
"""The reason and message of a Succeeded job without a readable result (the Ready and Complete conditions)."""
MESSAGE_LIMIT = 32768
"""The most characters of a message the status schema takes."""
KUEUE_WAITING = "Pending"
"""Kueue's QuotaReserved reason while a Workload simply waits for quota: reported as our own reason, Queued."""


@dataclass(frozen=True)
class Observation:
    """Everything `derive` reads."""

    generation: int
    job: JobFacts
    pods: PodFacts
    user_suspended: bool
    queued: bool
    """`runPolicy.queueName` is set: Kueue, not the operator, lifts the Job's suspension."""
    workload: dict[str, str]
    now: datetime
    stall_after_seconds: float
    invalid_spec: str | None = None
    """Why the spec cannot run (rules the CRD cannot check); the job fails at once."""
    invalid_reason: str = "InvalidSpec"
    """The Failed reason for `invalid_spec`: InvalidSpec, or DoesNotFit when the GPU-fit estimate exceeds the GPUs."""
    estimate: dict[str, Any] | None = None
    """`status.estimate`: the GPU-fit estimate of the spec, when there is one."""
    admission: AdmissionFacts = field(default_factory=AdmissionFacts)
    """What Kueue's Workload for the Job says (nothing without Kueue)."""
    provisioning: Provisioning | None = None
    """What Karpenter does for the waiting pods; None where it does not run (no `Provisioning` condition)."""
    previous: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class State:
    """Phase, why, and whether it is stuck."""

    phase: Phase
    reason: str
    message: str
    stalled: bool = False
    result: TerminationMessage | None = None


def _failure(obs: Observation) -> State:
    """Why the Job failed: the deadline, else the trainer's own reason, else what Kubernetes saw."""
    pods, job = obs.pods, obs.job
    if job.failed_reason == "DeadlineExceeded":
        return State(
            "Failed", "DeadlineExceeded", job.failed_message or "runPolicy.activeDeadlineSeconds passed"
        )
    trainer, code = pods.failure, pods.failure_exit_code
    invalid = code == ExitCode.INVALID_CONFIG
    if trainer is not None and trainer.reason and trainer.reason != "Error":
        return State("Failed", trainer.reason, trainer.message or job.failed_message)
    if trainer is not None or invalid or pods.failure_cause not in ("", "Error"):
        reason = "InvalidConfig" if invalid else pods.failure_cause or "TrainerFailed"
        said = trainer.message if trainer is not None and trainer.message else ""
        return State("Failed", reason, said or f"the trainer exited with code {code} ({pods.failure_cause})")
    return State("Failed", job.failed_reason or "JobFailed", job.failed_message or "the training Job failed")


def _succeeded(said: TerminationMessage | None) -> State:
    """The Job completed: with the trainer's result, or ResultMissing when its pod said nothing we can read."""
    if said is not None and said.status == "Succeeded" and said.output:
        return State("Succeeded", "Succeeded", "training finished", result=said)
    return State("Succeeded", RESULT_MISSING, RESULT_MISSING_MESSAGE)


def _queued(admission: AdmissionFacts) -> State:
    """Kueue has not admitted the Job, or took its admission back: Kueue's reason and message when it gave one."""
    if admission.evicted:
        return State(
            "Queued", admission.reason, f"evicted by Kueue (checkpoints are kept): {admission.message}"
        )
    reason = "Queued" if admission.reason in ("", KUEUE_WAITING) else admission.reason
    detail = f": {admission.message}" if admission.message else ""
    return State("Queued", reason, f"waiting for Kueue to admit the workload{detail}")


def _state(obs: Observation) -> State:
    job, pods = obs.job, obs.pods
    if obs.invalid_spec is not None:
        return State("Failed", obs.invalid_reason, obs.invalid_spec)
    if not job.exists and obs.user_suspended and obs.queued:
        return State("Suspended", "Suspended", "runPolicy.suspend is true; checkpoints are kept (a queued job has no "
                     "Job meanwhile: it queues again when resumed)")  # fmt: skip
    if not job.exists:
        return State("Pending", "Creating", "creating the training workload")
    if job.complete:
        return _succeeded(pods.succeeded_message)
    if job.failed:
        return _failure(obs)
    if job.suspended and obs.user_suspended:
        return State("Suspended", "Suspended", "runPolicy.suspend is true; checkpoints are kept")
    if job.suspended and obs.queued:
        return _queued(obs.admission)
    if pods.running:
        return State("Running", "Training", f"{pods.running} training pod(s) running")
    if pods.succeeded:  # the pods are done; the Job controller has not marked the Job Complete yet
        return State("Running", "Finishing", "the training pods finished; waiting for the Job to complete")
    if pods.stuck_reason:
        return State("Pending", pods.stuck_reason, pods.stuck_message, stalled=True)
    if pods.unschedulable_since is not None:
        return _unschedulable(obs, pods.unschedulable_since, pods.unschedulable_message)
    if job.suspended:  # being suspended or resumed; the next observation settles it
        return State("Pending", "Resuming", "waiting for the Job to resume")
    return State("Pending", "Starting", "waiting for the training pods to start")


def _unschedulable(obs: Observation, since: datetime, message: str) -> State:
    """Pods wait for a node: one is being provisioned for them, or they stall after the timeout."""
    nodes = obs.provisioning
    if nodes is not None and nodes.in_flight:
        return State("Pending", "Provisioning", nodes.condition()[2])
    if nodes is not None and nodes.failure:
        message = f"{message}; Karpenter: {nodes.failure}"
    waited = (obs.now - since).total_seconds()
    return State("Pending", "Unschedulable", message, stalled=waited >= obs.stall_after_seconds)


def _conditions(state: State, obs: Observation) -> list[tuple[ConditionType, bool, str, str]]:
    phase, reason, message = state.phase, state.reason, state.message
    stalled = state.stalled or phase == "Failed"
    in_progress = phase in ("Pending", "Queued", "Running") and not stalled
    admitted = obs.job.exists and phase not in ("Queued",) and obs.invalid_spec is None
    conditions: list[tuple[ConditionType, bool, str, str]] = [
        ("Ready", phase == "Succeeded", reason, message),
        ("Reconciling", in_progress, reason, message),
        ("Stalled", stalled, reason if stalled else "NotStalled", message if stalled else ""),
        ("Admitted", admitted, "Admitted" if admitted else reason, "" if admitted else message),
        ("Training", phase == "Running", reason, message),
        ("Complete", phase == "Succeeded", reason, message),
        ("Failed", phase == "Failed", reason, message),
        ("Suspended", phase == "Suspended", reason, message),
    ]
    if obs.provisioning is not None:
        conditions.append(("Provisioning", *obs.provisioning.condition()))
    return conditions


_ALWAYS_SAY: tuple[ConditionType, ...] = ("Ready", "Reconciling", "Provisioning")
"""Conditions whose message stays when they are False (why not ready, why no node comes)."""


def _merge_conditions(state: State, obs: Observation) -> list[Condition]:
    previous = {c["type"]: c for c in obs.previous.get("conditions") or []}
    merged = []
    for kind, true, reason, message in _conditions(state, obs):
        status: Literal["True", "False"] = "True" if true else "False"
        old = previous.get(kind, {})
        moved = old.get("status") != status
        merged.append(Condition(
            type=kind, status=status, observed_generation=obs.generation,
            last_transition_time=obs.now if moved else old.get("lastTransitionTime", obs.now),
            reason=reason or "Unknown",
            message=(message if true or kind in _ALWAYS_SAY else "")[:MESSAGE_LIMIT],  # the others say why if true
        ))  # fmt: skip
    return merged


def derive(obs: Observation) -> dict[str, Any]:
    """The whole `status` as written to the status subresource (FineTuneJobStatus on the wire), progress aside."""
    state, previous = _state(obs), obs.previous
    running_or_ran = state.phase == "Running" or previous.get("startTime")
    progress = Progress.model_validate(previous.get("progress") or {})
    if state.phase == "Succeeded" and state.result is not None:
        progress = progress.model_copy(update=_final_progress(state.result.metrics))
    status = FineTuneJobStatus(
        phase=state.phase,
        observed_generation=obs.generation,
        conditions=_merge_conditions(state, obs),
        message=state.message[:MESSAGE_LIMIT],
        workload=Workload.model_validate(obs.workload),
        start_time=(previous.get("startTime") or obs.now) if running_or_ran else None,
        completion_time=(previous.get("completionTime") or obs.now) if state.phase in TERMINAL else None,
        result=_result(state.result),
        progress=progress if progress.model_fields_set else None,
        estimate=MemoryEstimate.model_validate(obs.estimate) if obs.estimate is not None else None,
    )
    return status.to_wire()


def _result(said: TerminationMessage | None) -> Result | None:
    """`status.result` from the trainer's termination message (the metrics it measured)."""
    if said is None:
        return None
    metrics = {k: v for k, v in said.metrics.items() if v is not None}
    return Result(artifact_uri=said.output, digest=said.digest, metrics=metrics)


def _final_progress(metrics: dict[str, float | None]) -> dict[str, Any]:
    """Progress at the end of a successful run, from the trainer's final metrics: the poller's last reading may be
    steps behind (the run can finish between two polls)."""
    final: dict[str, Any] = {"percent": 100, "eta_seconds": 0}
    if metrics.get("step") is not None:
        final["step"] = final["total_steps"] = int(metrics["step"] or 0)
    if metrics.get("loss") is not None:
        final["loss"] = metrics["loss"]
    return final


def transition_event(previous: dict[str, Any], current: dict[str, Any]) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event when the phase changed or the job became stalled, else None; a Warning
    for Failed, Stalled and a success without a result (ResultMissing)."""
    was, now = (previous.get("phase"), _stalled(previous)), (current.get("phase"), _stalled(current))
    if was == now or (was[0] == now[0] and not now[1]):
        return None
    stalled = _condition(current, "Stalled")
    if now[1] and stalled is not None:
        return ("Warning", str(stalled["reason"]), str(stalled["message"]))
    if now[0] == "Succeeded" and (_condition(current, "Complete") or {}).get("reason") == RESULT_MISSING:
        return ("Warning", RESULT_MISSING, str(current.get("message", "")))
    return ("Warning" if now[0] == "Failed" else "Normal", str(now[0]), str(current.get("message", "")))


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def _stalled(status: dict[str, Any]) -> bool:
    return (_condition(status, "Stalled") or {}).get("status") == "True"
