"""Karpenter's provisioning as the operator reads it: Events and NodeClaims → facts → the Provisioning condition."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import kopf
import pytest
from finetune_operator import handlers, karpenter
from finetune_operator.config import Settings
from finetune_operator.karpenter import Claim, PodEvent, Provisioning, Seen
from finetune_operator.metrics import OperatorMetrics
from finetune_operator.observed import waiting_pods
from finetune_operator.provisioning import Provisioning as Tracker
from finetune_operator.reconciler import Reconciler
from finetune_operator.status import derive
from prometheus_client import CollectorRegistry

from tests.unit.operator_fixtures import FakeKube
from tests.unit.test_status import CASES, conditions, observe, pod

UNSCHEDULABLE, STUCK = CASES[13], CASES[14]  # unschedulable for a moment / past the stall timeout
LAUNCHED = karpenter.slim_nodeclaim({
    "metadata": {"name": "gpu-x7k2p", "uid": "u", "labels": {karpenter.NODEPOOL_LABEL: "gpu",
                 karpenter.INSTANCE_TYPE_LABEL: "p5.48xlarge", "other": "dropped"}},
    "spec": {"requirements": []},
    "status": {"conditions": [
        {"type": "Launched", "status": "True", "reason": "Launched", "message": ""},
        {"type": "Registered", "status": "Unknown", "reason": "NodeNotFound", "message": "Node not registered with cluster"},
        {"type": "Initialized", "status": "Unknown", "reason": "AwaitingReconciliation", "message": "object is awaiting reconciliation"},
        {"type": "Ready", "status": "Unknown", "reason": "ReconcilingDependents", "message": "…"},
    ]},
})  # fmt: skip


def nodeclaim(
    *true: str, failure: str = "", deleting: bool = False, name: str = "gpu-x7k2p"
) -> dict[str, Any]:
    found = [{"type": kind, "status": "True"} for kind in true]
    if failure:
        found.append({"type": "Launched", "status": "Unknown", "reason": "LaunchFailed", "message": failure})
    meta = {"name": name, "labels": {}, "deletionTimestamp": "2026-11-28T12:00:00Z" if deleting else None}
    return {"metadata": meta, "status": {"conditions": found, "nodeName": "kwok-gpu-1" if true else None}}


def event(pod: str, reason: str, message: str, time: str = "2026-11-28T12:00:00+00:00") -> PodEvent:
    return PodEvent(pod, reason, message, time)


def test_the_nominated_nodeclaim_is_read_from_the_event() -> None:
    assert karpenter.nominated_claim("Pod should schedule on: nodeclaim/gpu-x7k2p") == "gpu-x7k2p"
    assert (
        karpenter.nominated_claim("Pod should schedule on: nodeclaim/gpu-a1, node/kwok-gpu-a1-3") == "gpu-a1"
    )
    assert karpenter.nominated_claim("Pod should schedule on: node/ip-10-0-0-1") is None


def test_the_newest_event_of_each_waiting_pod_wins() -> None:
    events = [
        event(
            "p-1", "FailedScheduling", "Failed to schedule pod, no instance type", "2026-11-28T12:00:01+00:00"
        ),
        event("p-1", "Nominated", "Pod should schedule on: nodeclaim/a", "2026-11-28T12:00:00+00:00"),
        event("p-2", "Nominated", "Pod should schedule on: nodeclaim/b", "2026-11-28T12:00:02+00:00"),
        event("other", "Nominated", "Pod should schedule on: nodeclaim/c"),
        event("p-2", "DisruptionBlocked", "not a provisioning event", "2026-11-28T12:00:03+00:00"),
    ]
    seen = Seen().updated(events, ["p-1", "p-2"])
    assert seen == Seen({"p-2": "b"}, {"p-1": "Failed to schedule pod, no instance type"})
    later = seen.updated([event("p-1", "Nominated", "nodeclaim/d", "2026-11-28T12:00:09+00:00")], ["p-1"])
    assert later == Seen({"p-1": "d", "p-2": "b"}, {})


def test_a_nodeclaim_says_how_far_its_node_is() -> None:
    assert "other" not in LAUNCHED["metadata"]["labels"] and len(LAUNCHED["status"]["conditions"]) == 3
    assert karpenter.claim(LAUNCHED) == Claim(
        "gpu-x7k2p", "Launched", "(instance type p5.48xlarge, NodePool gpu) launched, waiting for its node to "
        "register: NodeNotFound: Node not registered with cluster",
    )  # fmt: skip
    assert karpenter.claim(nodeclaim()).stage == "Launching"
    assert (
        karpenter.claim(nodeclaim("Launched", "Registered")).detail
        == "registered, waiting for its node to initialize"
    )
    done = karpenter.claim(nodeclaim("Launched", "Registered", "Initialized"))
    assert (done.stage, done.detail) == ("Initialized", "initialized as node kwok-gpu-1")
    failed = karpenter.claim(nodeclaim(failure="InsufficientCapacity: no p5 in local-a"))
    assert failed.failed and failed.detail.endswith("LaunchFailed: InsufficientCapacity: no p5 in local-a")
    assert karpenter.claim(nodeclaim("Launched", deleting=True)).stage == "Terminating"


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (Provisioning(), (False, "NotProvisioning", "no node is being provisioned for this job")),
        (Provisioning((karpenter.claim(LAUNCHED),)), (True, "Launched", karpenter.claim(LAUNCHED).describe())),
        (
            Provisioning((karpenter.claim(nodeclaim("Launched", "Registered", name="a")),
                          karpenter.claim(nodeclaim("Launched", name="b")))),
            (True, "Launched", "nodeclaim/a registered, waiting for its node to initialize; "
                               "nodeclaim/b launched, waiting for its node to register"),
        ),
        (Provisioning(failures=("Failed to schedule pod, x",)), (False, "ProvisioningFailed", "Failed to schedule pod, x")),
        (
            Provisioning((karpenter.claim(nodeclaim(failure="quota")),)),
            (False, "ProvisioningFailed", "nodeclaim/gpu-x7k2p launching, waiting for the instance: LaunchFailed: quota"),
        ),
        (Provisioning((karpenter.claim(nodeclaim("Launched", deleting=True)),)), (False, "NotProvisioning", "no node is being provisioned for this job")),
    ],
    ids=["nothing", "one claim", "the least advanced claim names the stage", "no nodepool fits", "launch failed",
         "claim going away"],
)  # fmt: skip
def test_the_provisioning_condition(facts: Provisioning, expected: tuple[bool, str, str]) -> None:
    assert facts.condition() == expected


def test_facts_come_from_the_nominations_of_the_waiting_pods_only() -> None:
    seen = Seen({"p-1": "gpu-x7k2p", "p-2": "gpu-x7k2p", "p-3": "gone"}, {"p-4": "Failed to schedule pod, x"})
    facts = karpenter.provisioning(["p-1", "p-2", "p-3", "p-4"], seen, {"gpu-x7k2p": LAUNCHED}.get)
    assert facts == Provisioning((karpenter.claim(LAUNCHED),), ("Failed to schedule pod, x",))
    assert karpenter.provisioning(["p-9"], seen, {"gpu-x7k2p": LAUNCHED}.get) == Provisioning()


def test_without_karpenter_there_is_no_provisioning_condition() -> None:
    assert "Provisioning" not in conditions(derive(observe(STUCK)))


def test_a_job_whose_node_is_on_its_way_is_provisioning_not_stalled() -> None:
    facts = Provisioning((karpenter.claim(LAUNCHED),))
    status = derive(replace(observe(STUCK), provisioning=facts))
    found = conditions(status)
    assert (status["phase"], found["Stalled"]["status"]) == ("Pending", "False")
    assert (found["Reconciling"]["status"], found["Reconciling"]["reason"]) == ("True", "Provisioning")
    assert found["Provisioning"]["status"] == "True" and found["Provisioning"]["reason"] == "Launched"
    assert found["Provisioning"]["message"] == status["message"] == facts.claims[0].describe()


def test_when_karpenter_cannot_make_a_node_the_job_stalls_with_its_reason() -> None:
    facts = Provisioning(failures=("Failed to schedule pod, no instance type has enough resources",))
    brief = conditions(derive(replace(observe(UNSCHEDULABLE), provisioning=facts)))
    assert brief["Stalled"]["status"] == "False"
    found = conditions(derive(replace(observe(STUCK), provisioning=facts)))
    assert found["Stalled"]["status"] == "True" and found["Stalled"]["reason"] == "Unschedulable"
    assert found["Stalled"]["message"].endswith("; Karpenter: " + facts.failures[0])
    assert (found["Provisioning"]["status"], found["Provisioning"]["reason"]) == (
        "False",
        "ProvisioningFailed",
    )
    assert found["Provisioning"]["message"] == facts.failures[0]


def test_running_pods_need_no_node() -> None:
    found = conditions(derive(replace(observe(CASES[2]), provisioning=Provisioning())))
    assert (found["Provisioning"]["status"], found["Provisioning"]["reason"]) == ("False", "NotProvisioning")


def _named(name: str, found: dict[str, Any]) -> dict[str, Any]:
    return {**found, "metadata": {**found["metadata"], "name": name}}


def test_waiting_pods_are_the_unschedulable_ones_not_being_deleted() -> None:
    gone = _named("c", pod("Pending", unschedulable_for=5))
    gone["metadata"]["deletionTimestamp"] = "2026-11-28T12:00:00Z"
    pods = [_named("a", pod("Pending", unschedulable_for=5)), _named("b", pod("Running")), gone]
    assert waiting_pods(pods) == ["a"]


class EventsKube(FakeKube):
    """Serves Karpenter's Events from a list, counting the reads."""

    def __init__(self, events: list[PodEvent]) -> None:
        super().__init__()
        self.events, self.reads = events, 0

    def karpenter_events(self, namespace: str) -> list[PodEvent]:
        self.reads += 1
        return list(self.events)


def test_events_are_read_while_a_waiting_pod_has_no_live_nodeclaim_and_at_most_once_per_interval() -> None:
    body = {"metadata": {"uid": "u-1", "namespace": "team", "name": "j"}}
    pods = [_named("p-1", pod("Pending", unschedulable_for=5))]
    kube = EventsKube([])
    tracker = Tracker(kube, interval=3600)
    tracker.refresh(body, pods)
    tracker.refresh(body, pods)  # within the interval: not read again
    assert kube.reads == 1 and tracker.facts("u-1", pods) == Provisioning()
    kube.events.append(event("p-1", "Nominated", "Pod should schedule on: nodeclaim/gpu-x7k2p"))
    tracker = Tracker(kube, interval=0)
    tracker.watch({"gpu-x7k2p": [LAUNCHED]})
    tracker.refresh(body, pods)
    tracker.refresh(body, pods)  # the pod's NodeClaim is known and exists: nothing to read
    assert kube.reads == 2 and tracker.facts("u-1", pods).claims == (karpenter.claim(LAUNCHED),)
    tracker.refresh(body, [])  # no waiting pods: nothing to read
    tracker.forget("u-1")
    assert kube.reads == 2 and tracker.facts("u-1", pods) == Provisioning()


def _index_ids(provisioning: Tracker | None) -> set[str]:
    registry = kopf.OperatorRegistry()
    reconciler = Reconciler(EventsKube([]), Settings(), OperatorMetrics(CollectorRegistry()), provisioning)
    handlers.register(registry, handlers.Context(reconciler, lambda: None, FakeKube()))
    return {handler.id for handler in registry._indexing.get_all_handlers()}


def test_nodeclaims_are_watched_only_where_karpenter_runs() -> None:
    assert "nodeclaims" not in _index_ids(None)
    assert "nodeclaims" in _index_ids(Tracker(EventsKube([]), interval=5))
