"""`runPolicy.queueName` against the real Kueue controller (the pinned release, tests/integration/kueue.py).

The operator runs under the chart's RBAC (as in test_chart.py), so a rule it lacks (Workloads) shows up. Pods run on
the fake 8-GPU KWOK nodes until a test ends them (the kwok.finetune.io/run-duration annotation). Each test gets its
own ClusterQueue with a GPU quota, admitting only its namespace, and a LocalQueue `gpus` there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from finetune_operator.builders.meta import MANAGED_BY

from tests.integration.chart_release import ChartOperator, installed, running
from tests.integration.helpers import KWOK_RUN_DURATION, Kube
from tests.integration.kueue import KueueProcess, Queues
from tests.integration.operator_world import World, condition, finetunejob

pytestmark = pytest.mark.integration

KUEUE_WAIT_S = 90.0
RUN_LONG = {KWOK_RUN_DURATION: "1h"}


@pytest.fixture(scope="module")
def chart_operator(
    kube: Kube, crds: list[str], kueue: KueueProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChartOperator]:
    with (
        installed(kube, "image.tag=it") as release,
        running(release, tmp_path_factory.mktemp("op")) as process,
    ):
        yield process


@pytest.fixture
def world(kube: Kube, namespace: str, chart_operator: ChartOperator) -> Iterator[World]:
    with World(kube, namespace, chart_operator) as world:
        yield world


@pytest.fixture
def queues(kube: Kube, namespace: str) -> Iterator[Queues]:
    queues = Queues(kube, namespace)
    try:
        yield queues
    finally:
        queues.cleanup()


def gpu_job(world: World, name: str, nodes: int = 1, **policy: Any) -> None:
    """A FineTuneJob asking for a whole node (8 GPUs) on `nodes` nodes through the LocalQueue, running until ended."""
    world.output_volume(name, access_mode="ReadWriteMany" if nodes > 1 else "ReadWriteOnce")
    run_policy = {"queueName": Queues.LOCAL_QUEUE, **policy}
    spec: dict[str, Any] = {"resources": {"gpu": {"count": 8}}, "runPolicy": run_policy}
    if nodes > 1:
        spec["distributed"] = {"nodes": nodes}
    world.create(finetunejob(name, annotations=RUN_LONG, **spec))


def finish(world: World, name: str) -> None:
    """End the job's running pods successfully (KWOK re-reads the annotation)."""
    for pod in world.pods(name):
        world.annotate_pod(pod, {KWOK_RUN_DURATION: "0s"})
    world.wait_phase(name, "Succeeded", timeout=KUEUE_WAIT_S)


def queued_by_kueue(world: World, name: str, reason: str, says: str) -> dict[str, Any]:
    """Wait until the job is Queued with Kueue's `reason` and a message containing `says`; returns its status."""

    def probe() -> dict[str, Any] | None:
        status = world.status(name)
        admitted = condition(status, "Admitted")
        ok = (
            status.get("phase") == "Queued" and admitted.get("reason") == reason and says in status["message"]
        )
        return status if ok else None

    return world.wait(f"{name} Queued ({reason}: …{says}…)", probe, timeout=KUEUE_WAIT_S)


def suspend_owner(job: dict[str, Any]) -> list[str]:
    """The field managers owning the Job's spec.suspend (managedFields)."""
    return [entry["manager"] for entry in job["metadata"].get("managedFields") or []
            if "f:suspend" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})]  # fmt: skip


def test_two_8_gpu_jobs_take_turns_on_an_8_gpu_quota(world: World, queues: Queues) -> None:
    queues.create(gpus=8)
    gpu_job(world, "first")
    world.wait_phase("first", "Running", timeout=KUEUE_WAIT_S)
    gpu_job(world, "second")
    status = queued_by_kueue(world, "second", "Queued", "insufficient unused quota for nvidia.com/gpu")
    assert status["message"].startswith("waiting for Kueue to admit the workload: couldn't assign flavors")
    assert world.must_job("second")["spec"]["suspend"] is True
    assert world.pods("second", include_finished=True) == []
    assert condition(world.status("first"), "Admitted")["status"] == "True"

    finish(world, "first")
    status = world.wait_phase("second", "Running", timeout=KUEUE_WAIT_S)
    assert condition(status, "Admitted")["status"] == "True"
    assert MANAGED_BY not in suspend_owner(world.must_job("second")), "Kueue, not the operator, resumed it"


def test_a_missing_local_queue_is_kueues_reason(world: World, queues: Queues) -> None:
    gpu_job(world, "lost", queueName="no-such-queue")
    queued_by_kueue(world, "lost", "Inadmissible", "LocalQueue no-such-queue doesn't exist")
    assert world.must_job("lost")["spec"]["suspend"] is True


def test_run_policy_suspend_holds_a_queued_job_by_having_no_job(world: World, queues: Queues) -> None:
    """Kueue resumes any suspended Job whose Workload it admits, so suspending the Job cannot hold a queued job (the
    operator and Kueue would flip `suspend` back and forth): while runPolicy.suspend is true it has no Job."""
    queues.create(gpus=8)
    gpu_job(world, "held", suspend=True)
    status = world.wait_phase("held", "Suspended", timeout=KUEUE_WAIT_S)
    assert condition(status, "Suspended")["status"] == "True"
    assert world.job("held") is None and world.pods("held", include_finished=True) == []

    world.patch("held", {"spec": {"runPolicy": {"suspend": False}}})
    world.wait_phase("held", "Running", timeout=KUEUE_WAIT_S)
    claim = _claim(world.pods("held")[0])
    world.patch("held", {"spec": {"runPolicy": {"suspend": True}}})
    world.wait_phase("held", "Suspended", timeout=KUEUE_WAIT_S)
    world.wait("the Job of held to be gone", lambda: world.job("held") is None, timeout=KUEUE_WAIT_S)

    world.patch("held", {"spec": {"runPolicy": {"suspend": False}}})
    world.wait_phase("held", "Running", timeout=KUEUE_WAIT_S)
    assert [_claim(p) for p in world.pods("held")] == [claim], "it resumes from the same checkpoints"
    assert MANAGED_BY not in suspend_owner(world.must_job("held"))


def test_a_two_node_job_is_admitted_whole_or_not_at_all(world: World, queues: Queues) -> None:
    """16 GPUs of quota, 8 taken: the 2-node, 8-GPU-per-node job gets no pod at all (without Kueue its Indexed Job would start one
    pod on the free node and leave the other Pending), then both at once."""
    queues.create(gpus=16)
    gpu_job(world, "blocker")
    world.wait_phase("blocker", "Running", timeout=KUEUE_WAIT_S)
    gpu_job(world, "pair", nodes=2)
    queued_by_kueue(world, "pair", "Queued", "insufficient unused quota for nvidia.com/gpu")
    assert world.pods("pair", include_finished=True) == [], "no pod before the whole workload is admitted"
    job = world.must_job("pair")
    workload = queues.workload(job["metadata"]["uid"])
    assert workload is not None and [ps["count"] for ps in workload["spec"]["podSets"]] == [2]

    finish(world, "blocker")
    world.wait_phase("pair", "Running", timeout=KUEUE_WAIT_S)
    running = world.wait("both pods of pair Running", lambda: _running(world.pods("pair"), 2), KUEUE_WAIT_S)
    assert sorted(p["spec"]["nodeName"] for p in running) == ["gpu-node-0", "gpu-node-1"]
    admission = (queues.workload(job["metadata"]["uid"]) or {})["status"]["admission"]
    assert [a["count"] for a in admission["podSetAssignments"]] == [2]


def _running(pods: list[dict[str, Any]], count: int) -> list[dict[str, Any]] | None:
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    return running if len(running) == count else None


def test_preemption_queues_our_job_until_the_higher_priority_one_ends(world: World, queues: Queues) -> None:
    """Kueue evicts the low-priority job: it is suspended by Kueue (never resumed by the operator) and shows Queued
    with Kueue's reason, then resumes when the high-priority job ends. Resuming from the newest checkpoint is the
    trainer's own behaviour (tests/trainer/test_resume.py) given the same output volume: the new pod mounts the
    same claim, which outlived the evicted pod."""
    queues.create(gpus=8, preemption=True)
    low, high = queues.priority_class("low", 100), queues.priority_class("high", 1000)
    gpu_job(world, "low", workloadPriorityClass=low)
    world.wait_phase("low", "Running", timeout=KUEUE_WAIT_S)
    first_pod = world.pods("low")[0]
    claim = _claim(first_pod)

    gpu_job(world, "high", workloadPriorityClass=high)
    status = queued_by_kueue(world, "low", "Preempted", "Preempted to accommodate a workload")
    assert status["message"].startswith("evicted by Kueue (checkpoints are kept): ")
    world.wait_phase("high", "Running", timeout=KUEUE_WAIT_S)
    job = world.must_job("low")
    assert job["spec"]["suspend"] is True
    assert MANAGED_BY not in suspend_owner(job), "the operator never suspends or resumes a queued job"
    evicted = (queues.workload(job["metadata"]["uid"]) or {})["status"]["conditions"]
    assert {c["type"]: c["status"] for c in evicted}["QuotaReserved"] == "False"
    world.wait("an Event Queued", lambda: "Queued" in world.event_reasons("low"))

    finish(world, "high")
    world.wait_phase("low", "Running", timeout=KUEUE_WAIT_S)
    resumed = world.pods("low")
    assert [p["metadata"]["uid"] for p in resumed] != [first_pod["metadata"]["uid"]]
    assert [_claim(p) for p in resumed] == [claim], "the checkpoints' volume is the one the evicted pod wrote"
    assert MANAGED_BY not in suspend_owner(world.must_job("low"))


def _claim(pod: dict[str, Any]) -> str:
    return next(
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    )
