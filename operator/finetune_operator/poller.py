"""The operator's periodic work, one asyncio task: progress of running jobs, and time-based status changes.

Twice per `interval` it scrapes rank 0's metrics endpoint of each Running job whose last progress write is at least
`interval` old (all concurrently, each with a short timeout) and writes `status.progress` when the numbers changed,
so at most once per interval per job; and it
re-reconciles Pending jobs with unschedulable pods, whose status depends on time (the stall timeout) and, where
Karpenter runs, on what it does for them (`provisioning.py` reads its Events first), and
jobs whose last reconcile raised (Kopf does not redeliver watch events). One task for
all jobs instead of a Kopf timer per job: no finalizers, and the number of concurrent scrapes stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from finetune_api.status import PHASES
from finetune_api.trainer import METRICS_PORT

from finetune_operator import names, observed, progress
from finetune_operator.reconciler import Reconciler

logger = logging.getLogger(__name__)
SCRAPE_TIMEOUT_S = 3.0
MAX_CONCURRENT_SCRAPES = 50
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


@dataclass(frozen=True)
class Indexes:
    """Kopf's live indexes: FineTuneJobs, Jobs and pods by (namespace, FineTuneJob name), Kueue's Workloads by
    (namespace, Job name)."""

    finetunejobs: Any
    jobs: Any
    pods: Any
    workloads: Any

    @classmethod
    def of(cls, kwargs: dict[str, Any]) -> Indexes:
        """From the keyword arguments Kopf passes to every handler (the indexes by their ids)."""
        return cls(
            kwargs["finetunejobs"], kwargs["trainer_jobs"], kwargs["trainer_pods"], kwargs["kueue_workloads"]
        )

    def values(self, index: Any, key: tuple[str, str]) -> list[dict[str, Any]]:
        return list(index.get(key, ()))

    def children(self, key: tuple[str, str]) -> tuple[dict[str, Any] | None, list[Any], list[Any]]:
        """What `Reconciler.reconcile` reads of one FineTuneJob: its Job, its pods and its Job's Workloads."""
        jobs = self.values(self.jobs, key)
        workloads = self.values(self.workloads, (key[0], names.job(key[1])))
        return (jobs[0] if jobs else None), self.values(self.pods, key), workloads


def rank_zero_url(pods: list[dict[str, Any]]) -> str | None:
    """The metrics URL of the running pod of node 0 (any running pod of a one-node job)."""
    for pod in pods:
        status, labels = pod.get("status") or {}, pod.get("metadata", {}).get("labels") or {}
        if status.get("phase") == "Running" and status.get("podIP") and labels.get(INDEX_LABEL, "0") == "0":
            return f"http://{status['podIP']}:{METRICS_PORT}/metrics"
    return None


async def _scrape(
    session: aiohttp.ClientSession, reconciler: Reconciler, body: dict[str, Any], url: str
) -> None:
    try:
        async with session.get(url) as response:
            response.raise_for_status()
            current = progress.parse(await response.text())
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        reconciler.metrics.progress_polls.labels("error").inc()
        logger.debug("progress of %s: %s", body["metadata"]["name"], exc)
        return
    reconciler.metrics.progress_polls.labels("ok").inc()
    if current and progress.changed(reconciler.status_of(body).get("progress"), current):
        stamped = progress.stamped(current, datetime.now(UTC))
        await _in_thread(reconciler.write_progress, body, stamped)


def _time_dependent(
    reconciler: Reconciler, body: dict[str, Any], phase: str, pods: list[dict[str, Any]]
) -> bool:
    """A job whose last reconcile failed, or a Pending one with unschedulable pods (the stall timeout runs)."""
    if body["metadata"]["uid"] in reconciler.failed:
        return True
    return phase == "Pending" and observed.pod_facts(pods).unschedulable_since is not None


def _reconcile_logged(
    reconciler: Reconciler, body: dict[str, Any], indexes: Indexes, key: tuple[str, str]
) -> None:
    try:
        job, pods, workloads = indexes.children(key)
        if reconciler.provisioning is not None:
            reconciler.provisioning.refresh(body, pods)
        reconciler.reconcile(body, job, pods, workloads)
    except Exception:
        logger.exception(
            "reconcile of %s/%s failed", body["metadata"].get("namespace"), body["metadata"]["name"]
        )


async def tick(
    session: aiohttp.ClientSession, reconciler: Reconciler, indexes: Indexes, interval: float
) -> None:
    """One round over all jobs; a running job is scraped only when its last progress write is `interval` old."""
    scrapes, phases = [], Counter[str]()
    for key, store in list(indexes.finetunejobs.items()):
        for body in list(store):
            status = reconciler.status_of(body)
            phase = status.get("phase") or "Pending"
            phases[phase] += 1
            if phase == "Running" and not progress.due(status.get("progress"), datetime.now(UTC), interval):
                continue
            if phase == "Running" and (url := rank_zero_url(indexes.values(indexes.pods, key))):
                scrapes.append(_scrape(session, reconciler, body, url))
            elif _time_dependent(reconciler, body, phase, indexes.values(indexes.pods, key)):
                await _in_thread(_reconcile_logged, reconciler, body, indexes, key)
    for phase in PHASES:
        reconciler.metrics.jobs.labels(phase).set(phases.get(phase, 0))
    limit = asyncio.Semaphore(MAX_CONCURRENT_SCRAPES)

    async def bounded(scrape: Any) -> None:
        async with limit:
            await scrape

    await asyncio.gather(*(bounded(s) for s in scrapes))


_EXECUTOR: ContextVar[ThreadPoolExecutor] = ContextVar("poller_executor")


async def _in_thread(fn: Callable[..., None], *args: Any) -> None:
    """Run a blocking call (the API writes) on the poller's own threads."""
    await asyncio.get_running_loop().run_in_executor(_EXECUTOR.get(), fn, *args)


async def run(reconciler: Reconciler, indexes: Indexes, interval: float, beat: Callable[[], None]) -> None:
    """Tick forever (cancelled at operator shutdown), calling `beat` each round; a failing tick is logged.

    Blocking calls go to threads of its own, shut down without waiting when it is cancelled: the loop's default
    executor would make the operator's exit wait on them.
    """
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="poller")
    _EXECUTOR.set(executor)
    try:
        await _loop(reconciler, indexes, interval, timeout, beat)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


async def _loop(
    reconciler: Reconciler,
    indexes: Indexes,
    interval: float,
    timeout: aiohttp.ClientTimeout,
    beat: Callable[[], None],
) -> None:
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            started = asyncio.get_running_loop().time()
            beat()
            try:
                await tick(session, reconciler, indexes, interval)
            except Exception:
                logger.exception("poller tick failed")
            # Twice per interval: a job whose write is due waits at most half an interval for its scrape.
            await asyncio.sleep(max(0.0, interval / 2 - (asyncio.get_running_loop().time() - started)))
