"""Every event the operator reacts to, in one place (thin Kopf glue; the work is in `reconciler.py`).

- Indexes keep the FineTuneJobs, their Jobs and their pods in memory (no reads on the hot path), each reduced to
  what the operator reads (`observed.slim_*`): thousands of pods stay cheap.
- A watch event of a FineTuneJob, of a Job or of a pod the operator created reconciles that FineTuneJob; so does one
  of a Kueue Workload made for such a Job (Kopf watches Workloads only while their CRD exists: without Kueue it
  logs once that workloads.kueue.x-k8s.io is unresolved, and picks the CRD up when Kueue is installed later).
- At startup the poller starts (`poller.py`): progress of running jobs and time-based changes (Stalled).
- Where Karpenter runs (`reconciler.provisioning` is set), an index keeps its NodeClaims, for the `Provisioning`
  condition of jobs whose pods wait for nodes (the poller re-reconciles those).

No handler here needs a finalizer (no timers or daemons): deleting a FineTuneJob never waits for the operator, and
its children go with it through their owner references.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import kopf
from finetune_api import GROUP, PLURAL, VERSION

from finetune_operator import karpenter, names, observed, poller
from finetune_operator.builders.meta import KUEUE_GROUP, LABEL_JOB_NAME, LABEL_MANAGED_BY, MANAGED_BY
from finetune_operator.reconciler import Reconciler

Key = tuple[str, str]
V = TypeVar("V")
OURS: dict[str, Any] = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_JOB_NAME: kopf.PRESENT}
"""Children of FineTuneJobs: what the operator created."""


def first(index: kopf.Index[Key, V], key: Key) -> V | None:
    """The one value stored under `key`, or None."""
    return next(iter(index.get(key, ())), None)


def _key(namespace: str | None, name: str) -> Key:
    return (namespace or "", name)


def _our_job(workload: kopf.Body) -> str | None:
    """The name of the operator's Job a Kueue Workload was made for, or None."""
    owner = observed.workload_owner(dict(workload))
    return str(owner["name"]) if owner and str(owner["name"]).endswith(names.JOB_SUFFIX) else None


def register(registry: kopf.OperatorRegistry, reconciler: Reconciler, beat: Callable[[], None]) -> None:
    """Register the indexes and handlers on `registry` (Kopf passes the indexes as kwargs named after them).

    `beat` is called on every poller tick: the liveness probe's sign that the operator's loop runs.
    """
    settings, tasks = reconciler.settings, set[asyncio.Task[None]]()

    def reconcile(key: Key, kwargs: dict[str, Any], body: dict[str, Any] | None = None) -> None:
        indexes = poller.Indexes.of(kwargs)
        body = body or first(indexes.finetunejobs, key)
        if body is not None:
            reconciler.reconcile(body, *indexes.children(key))

    @kopf.index(GROUP, VERSION, PLURAL, id="finetunejobs", registry=registry)
    def finetunejobs(
        namespace: str | None, name: str, body: kopf.Body, **_: Any
    ) -> dict[Key, dict[str, Any]]:
        return {_key(namespace, name): observed.slim_body(dict(body))}

    @kopf.index("batch", "v1", "jobs", labels=OURS, id="trainer_jobs", registry=registry)
    def trainer_jobs(
        namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
    ) -> dict[Key, dict[str, Any]]:
        return {_key(namespace, labels[LABEL_JOB_NAME]): observed.slim_job(dict(body))}

    @kopf.index("", "v1", "pods", labels=OURS, id="trainer_pods", registry=registry)
    def trainer_pods(
        namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
    ) -> dict[Key, dict[str, Any]]:
        return {_key(namespace, labels[LABEL_JOB_NAME]): observed.slim_pod(dict(body))}

    @kopf.index("batch", "v1", "jobs", labels=OURS, id="trainer_job_owners", registry=registry)
    def trainer_job_owners(namespace: str | None, name: str, labels: kopf.Labels, **_: Any) -> dict[Key, str]:
        return {_key(namespace, name): labels[LABEL_JOB_NAME]}

    @kopf.index(KUEUE_GROUP, "workloads", id="kueue_workloads", registry=registry)
    def kueue_workloads(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
        job = _our_job(body)
        return {_key(namespace, job): observed.slim_workload(dict(body))} if job else {}

    if reconciler.provisioning is not None:

        @kopf.index(karpenter.GROUP, karpenter.VERSION, karpenter.PLURAL, id="nodeclaims", registry=registry)
        def nodeclaims(name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
            return {name: karpenter.slim_nodeclaim(dict(body))}

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def finetunejob_changed(
        type: str, namespace: str | None, name: str, body: kopf.Body, **kwargs: Any
    ) -> None:
        if type == "DELETED":
            reconciler.forget(body["metadata"]["uid"])
        elif body.get("metadata", {}).get("deletionTimestamp") is None:
            reconcile(_key(namespace, name), kwargs, observed.slim_body(dict(body)))

    @kopf.on.event("batch", "v1", "jobs", labels=OURS, registry=registry)
    def job_changed(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
        reconcile(_key(namespace, labels[LABEL_JOB_NAME]), kwargs)

    @kopf.on.event("", "v1", "pods", labels=OURS, registry=registry)
    def pod_changed(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
        reconcile(_key(namespace, labels[LABEL_JOB_NAME]), kwargs)

    @kopf.on.event(KUEUE_GROUP, "workloads", registry=registry)
    def workload_changed(namespace: str | None, body: kopf.Body, **kwargs: Any) -> None:
        job = _our_job(body)
        owner = first(kwargs["trainer_job_owners"], _key(namespace, job)) if job else None
        if owner is not None:
            reconcile(_key(namespace, owner), kwargs)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In-cluster ServiceAccount when in a pod, else the kubeconfig (as `kube.load_config`)."""
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def start_poller(**kwargs: Any) -> None:
        if reconciler.provisioning is not None:
            reconciler.provisioning.watch(kwargs["nodeclaims"])
        indexes = poller.Indexes.of(kwargs)
        tasks.add(
            asyncio.create_task(poller.run(reconciler, indexes, settings.progress_interval_seconds, beat))
        )

    @kopf.on.cleanup(registry=registry)
    async def stop_poller(**_: Any) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
