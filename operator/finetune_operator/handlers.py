"""Every Kopf trigger of the operator, as plain functions (thin glue; the work is in `reconciler.py`).

- Indexes keep the FineTuneJobs, their Jobs and their pods in memory (no reads on the hot path), each reduced to
  what the operator reads (`observed.slim_*`): thousands of pods stay cheap.
- A watch event of a FineTuneJob, of a Job or of a pod the operator created reconciles that FineTuneJob; so does one
  of a Kueue Workload made for such a Job (Kopf watches Workloads only while their CRD exists: without Kueue it
  logs once that workloads.kueue.x-k8s.io is unresolved, and picks the CRD up when Kueue is installed later).
- At startup the poller starts (`poller.py`): progress of running jobs and time-based changes (Stalled).
- Where Karpenter runs (`reconciler.provisioning` is set), an index keeps its NodeClaims, for the `Provisioning`
  condition of jobs whose pods wait for nodes (the poller re-reconciles those).
- With a webhook port, the validating admission webhook (`validate_finetunejob`, `admission.review`'s verdict).

`register` puts them on a registry and returns the Kopf memo that carries their `Context` (the reconciler, the
liveness beat, the client): Kopf hands the memo to every handler. No handler needs a finalizer (no timers or
daemons): deleting a FineTuneJob never waits for the operator, and its children go with it through their owner
references.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import kopf
from finetune_api import GROUP, PLURAL, VERSION

from finetune_operator import admission, karpenter, names, observed, poller
from finetune_operator.builders.meta import KUEUE_GROUP, LABEL_JOB_NAME, LABEL_MANAGED_BY, MANAGED_BY
from finetune_operator.kubeapi import KubeApi
from finetune_operator.reconciler import Reconciler

Key = tuple[str, str]
V = TypeVar("V")
OURS: dict[str, Any] = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_JOB_NAME: kopf.PRESENT}
"""Children of FineTuneJobs: what the operator created."""
WEBHOOK_ID = "validate-finetunejob"
"""The webhook handler's id, which is also the URL path Kopf serves it at: the chart's webhook configuration names
it."""
MEMO_KEY = "finetune"


@dataclass
class Context:
    """What the handlers work with, in Kopf's memo under MEMO_KEY."""

    reconciler: Reconciler
    beat: Callable[[], None]
    """Called on every poller tick: the liveness probe's sign that the operator's loop runs."""
    kube: KubeApi
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    """The poller, cancelled at cleanup."""


def context(memo: kopf.Memo) -> Context:
    """The handlers' Context from the memo Kopf passes them."""
    return cast(Context, memo[MEMO_KEY])


def first(index: kopf.Index[Key, V], key: Key) -> V | None:
    """The one value stored under `key`, or None."""
    return next(iter(index.get(key, ())), None)


def _key(namespace: str | None, name: str) -> Key:
    return (namespace or "", name)


def _our_job(workload: kopf.Body) -> str | None:
    """The name of the operator's Job a Kueue Workload was made for, or None."""
    owner = observed.workload_owner(dict(workload))
    return str(owner["name"]) if owner and str(owner["name"]).endswith(names.JOB_SUFFIX) else None


def _reconcile(memo: kopf.Memo, key: Key, kwargs: dict[str, Any], body: dict[str, Any] | None = None) -> None:
    indexes = poller.Indexes.of(kwargs)
    body = body or first(indexes.finetunejobs, key)
    if body is not None:
        context(memo).reconciler.reconcile(body, *indexes.children(key))


# Indexes (Kopf passes each to every handler as a kwarg named after its id).


def finetunejobs(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
    return {_key(namespace, name): observed.slim_body(dict(body))}


def trainer_jobs(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, dict[str, Any]]:
    return {_key(namespace, labels[LABEL_JOB_NAME]): observed.slim_job(dict(body))}


def trainer_pods(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, dict[str, Any]]:
    return {_key(namespace, labels[LABEL_JOB_NAME]): observed.slim_pod(dict(body))}


def trainer_job_owners(namespace: str | None, name: str, labels: kopf.Labels, **_: Any) -> dict[Key, str]:
    return {_key(namespace, name): labels[LABEL_JOB_NAME]}


def kueue_workloads(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
    job = _our_job(body)
    return {_key(namespace, job): observed.slim_workload(dict(body))} if job else {}


def nodeclaims(name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    return {name: karpenter.slim_nodeclaim(dict(body))}


# Watch events.


def finetunejob_changed(
    type: str, namespace: str | None, name: str, body: kopf.Body, memo: kopf.Memo, **kwargs: Any
) -> None:
    if type == "DELETED":
        context(memo).reconciler.forget(body["metadata"]["uid"])
    elif body.get("metadata", {}).get("deletionTimestamp") is None:
        _reconcile(memo, _key(namespace, name), kwargs, observed.slim_body(dict(body)))


def child_changed(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any) -> None:
    """A Job or pod of a FineTuneJob changed: reconcile its FineTuneJob."""
    _reconcile(memo, _key(namespace, labels[LABEL_JOB_NAME]), kwargs)


def workload_changed(namespace: str | None, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    job = _our_job(body)
    owner = first(kwargs["trainer_job_owners"], _key(namespace, job)) if job else None
    if owner is not None:
        _reconcile(memo, _key(namespace, owner), kwargs)


# Admission.


def validate_finetunejob(
    body: kopf.Body, namespace: str | None, warnings: list[str], memo: kopf.Memo, **kwargs: Any
) -> None:
    """On CREATE, and on UPDATE when the spec changed (a label or annotation change of an admitted job is never
    refused because, say, its Secret was deleted since): every problem in one message, warnings to kubectl."""
    old: kopf.Body | None = kwargs.get("old")
    if old is not None and old.get("spec") == body.get("spec"):
        return
    namespace = namespace or "default"
    secret_keys = functools.partial(context(memo).kube.secret_keys, namespace)
    allowed = context(memo).reconciler.settings.allow_trust_remote_code
    verdict = admission.review(
        dict(body), namespace, secret_keys, admission.resolve_host, allow_remote_code=allowed
    )
    warnings.extend(verdict.warnings)
    if verdict.problems:
        raise kopf.AdmissionError(verdict.message(), code=422)


# Lifecycle.


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster ServiceAccount when in a pod, else the kubeconfig (as `kube.load_config`)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


async def start_poller(memo: kopf.Memo, **kwargs: Any) -> None:
    ctx = context(memo)
    if ctx.reconciler.provisioning is not None:
        ctx.reconciler.provisioning.watch(kwargs["nodeclaims"])
    interval = ctx.reconciler.settings.progress_interval_seconds
    ctx.tasks.add(
        asyncio.create_task(poller.run(ctx.reconciler, poller.Indexes.of(kwargs), interval, ctx.beat))
    )


async def stop_poller(memo: kopf.Memo, **_: Any) -> None:
    tasks = context(memo).tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def register(registry: kopf.OperatorRegistry, ctx: Context, webhook: bool = False) -> kopf.Memo:
    """Put every trigger on `registry` (the NodeClaim index only where Karpenter runs, the webhook only with
    `webhook`); returns the memo to run Kopf with, which carries `ctx` to the handlers."""
    index = functools.partial(kopf.index, registry=registry)
    on_event = functools.partial(kopf.on.event, registry=registry)
    index(GROUP, VERSION, PLURAL, id="finetunejobs")(finetunejobs)
    index("batch", "v1", "jobs", labels=OURS, id="trainer_jobs")(trainer_jobs)
    index("", "v1", "pods", labels=OURS, id="trainer_pods")(trainer_pods)
    index("batch", "v1", "jobs", labels=OURS, id="trainer_job_owners")(trainer_job_owners)
    index(KUEUE_GROUP, "workloads", id="kueue_workloads")(kueue_workloads)
    if ctx.reconciler.provisioning is not None:
        index(karpenter.GROUP, karpenter.VERSION, karpenter.PLURAL, id="nodeclaims")(nodeclaims)
    on_event(GROUP, VERSION, PLURAL)(finetunejob_changed)
    on_event("batch", "v1", "jobs", labels=OURS, id="job_changed")(child_changed)
    on_event("", "v1", "pods", labels=OURS, id="pod_changed")(child_changed)
    on_event(KUEUE_GROUP, "workloads")(workload_changed)
    if webhook:
        kopf.on.validate(GROUP, VERSION, PLURAL, id=WEBHOOK_ID, operations=["CREATE", "UPDATE"],
                         registry=registry)(validate_finetunejob)  # fmt: skip
    kopf.on.login(registry=registry)(login)
    kopf.on.startup(registry=registry)(start_poller)
    kopf.on.cleanup(registry=registry)(stop_poller)
    return kopf.Memo({MEMO_KEY: ctx})
