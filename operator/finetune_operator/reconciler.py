"""Level-based reconcile of one FineTuneJob: desired objects from the builders, status from the observations.

Called by the handlers (`handlers.py`) on every watch event of a FineTuneJob, its Job, its pods or the Workload Kueue
made for its Job, and by the poller for time-based changes. It reads nothing from the API server: the observed Job,
pods and Workloads come from Kopf's in-memory indexes. It writes only what differs: the children when the Job is
missing, the ConfigMap when the generation moved, the Job's suspension (never of a queued Job: Kueue owns it; while
runPolicy.suspend holds a queued job, its Job is deleted), and the status when it changed. So a restart at any moment (say between
creating the Job and writing status) converges without duplicates: the Job is found in the index, or its create
answers 409.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from finetune_api import describe, fit
from pydantic import ValidationError

from finetune_operator import admission, names, observed
from finetune_operator.builders import pod, storage, workload
from finetune_operator.builders.meta import Owner
from finetune_operator.config import Settings
from finetune_operator.kubeapi import KubeApi
from finetune_operator.metrics import OperatorMetrics
from finetune_operator.provisioning import Provisioning
from finetune_operator.status import TERMINAL, Observation, derive, transition_event

logger = logging.getLogger(__name__)
NOT_ALLOWED = "NotAllowed"
"""The Failed reason of a job the installation's policy refuses (model.trustRemoteCode without the chart's leave)."""


def _seconds_since(timestamp: str) -> float:
    return (datetime.now(UTC) - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds()


def _phase_of(status: dict[str, Any]) -> str:
    return str(status.get("phase") or "New")


@dataclass(frozen=True)
class Parsed:
    """A FineTuneJob as the reconciler reads it: parsed, or refused with (reason, message) before anything runs."""

    owner: Owner | None
    refusal: tuple[str, str] | None = None
    estimate: dict[str, Any] | None = None
    """`status.estimate`."""


class Reconciler:
    """Holds the clients, the settings and what was last written per job (the watch may lag behind it)."""

    def __init__(
        self,
        kube: KubeApi,
        settings: Settings,
        metrics: OperatorMetrics,
        provisioning: Provisioning | None = None,
    ) -> None:
        self.kube, self.settings, self.metrics = kube, settings, metrics
        self.provisioning = provisioning
        """Karpenter's work for waiting pods; None where the cluster has no Karpenter."""
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._written: dict[str, dict[str, Any]] = {}
        self._owners: dict[str, tuple[str | None, Parsed]] = {}
        self.failed: set[str] = set()
        """Jobs whose last reconcile raised: the poller retries them (watch events are not redelivered)."""

    def _retry(self, uid: str) -> None:
        self.metrics.reconcile_errors.inc()
        self.failed.add(uid)

    def status_of(self, body: dict[str, Any]) -> dict[str, Any]:
        """The newest status known: the last one written by this process, else the one on the object."""
        return self._written.get(body["metadata"]["uid"]) or dict(body.get("status") or {})

    def forget(self, uid: str) -> None:
        """Drop what is kept for a deleted job."""
        self._written.pop(uid, None)
        self._owners.pop(uid, None)
        self._locks.pop(uid, None)
        self.failed.discard(uid)
        if self.provisioning is not None:
            self.provisioning.forget(uid)

    def reconcile(
        self,
        body: dict[str, Any],
        job: dict[str, Any] | None,
        pods: list[dict[str, Any]],
        workloads: list[dict[str, Any]] | None = None,
    ) -> None:
        """Converge one FineTuneJob (`workloads`: Kueue's for its Job, when Kueue runs); serialised per job."""
        started = time.perf_counter()
        uid = body["metadata"]["uid"]
        with self._locks[uid]:
            try:
                self._reconcile(body, job, pods, workloads or [])
            except Exception:
                self._retry(uid)
                raise
            else:
                self.failed.discard(uid)
            finally:
                self.metrics.reconcile_seconds.observe(time.perf_counter() - started)

    def _reconcile(
        self,
        body: dict[str, Any],
        job: dict[str, Any] | None,
        pods: list[dict[str, Any]],
        workloads: list[dict[str, Any]],
    ) -> None:
        meta, previous = body["metadata"], self.status_of(body)
        generation = int(meta.get("generation") or 1)
        if previous.get("phase") in TERMINAL and previous.get("observedGeneration") == generation:
            return
        parsed = self._parse(body)
        owner = parsed.owner if parsed.refusal is None else None
        if owner is not None:
            job = self._converge_children(owner, job, generation, previous)
        policy = owner.job.spec.run_policy if owner else None
        reason, invalid = parsed.refusal if parsed.refusal else ("InvalidSpec", None)
        obs = Observation(
            generation=generation, job=observed.job_facts(job), pods=observed.pod_facts(pods),
            user_suspended=bool(policy and policy.suspend), queued=bool(policy and policy.queue_name),
            workload=self._workload(owner) if owner else {}, now=datetime.now(UTC),
            stall_after_seconds=self.settings.stall_after_seconds, invalid_spec=invalid, invalid_reason=reason,
            estimate=parsed.estimate, previous=previous,
            provisioning=self.provisioning.facts(meta["uid"], pods) if self.provisioning else None,
            admission=observed.admission_facts(workloads, (job or {}).get("metadata", {}).get("uid")),
        )  # fmt: skip
        self.write_status(body, derive(obs))

    def _parse(self, body: dict[str, Any]) -> Parsed:
        """The parsed job and its GPU-fit verdict; once per resourceVersion (pod events are many)."""
        meta = body["metadata"]
        cached = self._owners.get(meta["uid"])
        if cached is not None and cached[0] == meta.get("resourceVersion"):
            return cached[1]
        try:
            owner = Owner.from_body(body)
        except ValidationError as exc:
            parsed = Parsed(None, ("InvalidSpec", "; ".join(describe(exc))))
        else:
            verdict = fit.verdict(owner.job.spec)
            problem = verdict.problem() if verdict else None
            refused = admission.remote_code_problem(owner.job.spec, self.settings.allow_trust_remote_code)
            refusal = (NOT_ALLOWED, refused) if refused else (fit.REASON, problem) if problem else None
            parsed = Parsed(owner, refusal, verdict.status() if verdict else None)
        self._owners[meta["uid"]] = (meta.get("resourceVersion"), parsed)
        return parsed

    def _converge_children(
        self, owner: Owner, job: dict[str, Any] | None, generation: int, previous: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Create what is missing and apply what the spec changed; returns the Job as now known."""
        ns, job_name = owner.namespace, names.job(owner.name)
        policy = owner.job.spec.run_policy
        # Kueue resumes any suspended Job whose Workload it admits: a queued job that runPolicy.suspend holds has no Job.
        held = policy.suspend and policy.queue_name is not None
        if job is None:
            wanted = workload.children(owner, self.settings)
            for obj in wanted.before_job():
                self.kube.apply(obj)
            if held:
                return None
            if self.kube.create_job(wanted.job):
                if created := (owner.job.metadata.model_extra or {}).get("creationTimestamp"):
                    self.metrics.create_to_workload.observe(_seconds_since(created))
                logger.info("created %s/%s for FineTuneJob %s", ns, job_name, owner.name)
            return wanted.job
        if previous.get("observedGeneration") not in (None, generation):
            self.kube.apply(workload.config_map(owner))  # runPolicy or resources changed
        suspended, facts = bool(job["spec"].get("suspend")), observed.job_facts(job)
        if policy.queue_name is not None:  # Kueue alone suspends and resumes a queued Job
            if not held or facts.complete or facts.failed:
                return job
            if not job["metadata"].get("deletionTimestamp"):
                logger.info("runPolicy.suspend of queued %s/%s: deleting its Job", ns, owner.name)
                self.kube.delete_job(ns, job_name)  # pods get SIGTERM and checkpoint, as on a suspension
            return None
        if policy.suspend and not suspended:
            self.kube.suspend_job(ns, job_name, True)
        elif not policy.suspend and suspended:
            if not pod.placement_matches(job["spec"]["template"]["spec"], owner, self.settings):
                logger.info("resources of %s/%s changed while suspended: recreating its Job", ns, owner.name)
                self.kube.delete_job(ns, job_name)  # the reconcile on its delete event creates it again
            else:
                self.kube.suspend_job(ns, job_name, False)
        return job

    def _workload(self, owner: Owner) -> dict[str, str]:
        found = {"jobName": names.job(owner.name), "configMapName": names.config_map(owner.name)}
        if owner.job.spec.distributed.nodes > 1:
            found["serviceName"] = names.service(owner.name)
        found["pvcName"] = storage.output_claim(owner)
        return found

    def write_progress(self, body: dict[str, Any], progress: dict[str, Any]) -> None:
        """Patch `status.progress` (the poller calls this at most once per interval per job)."""
        meta = body["metadata"]
        with self._locks[meta["uid"]]:
            self.kube.patch_status(meta["namespace"], meta["name"], {"progress": progress})
            self._written[meta["uid"]] = {**self.status_of(body), "progress": progress}

    def write_status(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        """Patch the status when it differs from the newest known one; post an Event on a phase change."""
        meta, previous = body["metadata"], self.status_of(body)
        if all(previous.get(key) == value for key, value in status.items()):
            return
        self.kube.patch_status(meta["namespace"], meta["name"], status)
        self._written[meta["uid"]] = {**previous, **status}
        if (event := transition_event(previous, status)) is not None:
            self.kube.post_event(body, *event)
        before, after = _phase_of(previous), _phase_of(status)
        if before != after:
            self.metrics.transitions.labels(before, after).inc()
            if after in TERMINAL and status.get("startTime"):
                self.metrics.job_duration.labels(after).observe(_seconds_since(status["startTime"]))
