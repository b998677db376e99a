"""What Karpenter is doing for a job's waiting pods (pure: its Events and NodeClaims in, facts out).

With NodePools, Karpenter links a pending pod to the NodeClaim it creates for it only through Events on the pod, from
the component `karpenter`: `Nominated` ("Pod should schedule on: nodeclaim/<name>[, node/<name>]") and, when no
NodePool can make a node for it, `FailedScheduling` ("Failed to schedule pod, …"). The NodeClaim's conditions say
how far its node is: Launched (the instance exists), Registered (its Node joined), Initialized (Ready, with its
resources). The `Provisioning` condition of a FineTuneJob is made from these.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

GROUP, VERSION, PLURAL = "karpenter.sh", "v1", "nodeclaims"
EVENT_SOURCE = "karpenter"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
STAGES = ("Launched", "Registered", "Initialized")
"""NodeClaim conditions in the order its node goes through them."""
_WAITING = {"Launched": "waiting for the instance", "Registered": "waiting for its node to register",
            "Initialized": "waiting for its node to initialize"}  # fmt: skip
_NOMINATED = re.compile(r"\bnodeclaim/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)")
_AWAITING = ("", "AwaitingReconciliation")
"""Reasons of a condition Karpenter has not worked on yet (no news to report)."""


@dataclass(frozen=True)
class PodEvent:
    """One Event Karpenter recorded on a pod."""

    pod: str
    reason: str
    message: str
    time: str
    """When it was last seen (RFC 3339), to order repeated Events."""


@dataclass(frozen=True)
class Seen:
    """What Karpenter's Events said about a job's pods: the NodeClaim each was nominated to, and why it could not
    make a node for the others."""

    nominated: Mapping[str, str] = field(default_factory=dict)
    failed: Mapping[str, str] = field(default_factory=dict)

    def updated(self, events: Iterable[PodEvent], pods: Iterable[str]) -> Seen:
        """With the newest Event of each of `pods`: a nomination replaces an earlier failure and the reverse."""
        nominated, failed, wanted = dict(self.nominated), dict(self.failed), set(pods)
        for event in sorted(events, key=lambda e: e.time):
            if event.pod not in wanted:
                continue
            claim = nominated_claim(event.message) if event.reason == "Nominated" else None
            if claim is not None:
                nominated[event.pod] = claim
                failed.pop(event.pod, None)
            elif event.reason == "FailedScheduling":
                failed[event.pod] = event.message
                nominated.pop(event.pod, None)
        return Seen(nominated, failed)


def nominated_claim(message: str) -> str | None:
    """The NodeClaim a `Nominated` Event names, if any (it may name only an existing node)."""
    found = _NOMINATED.search(message)
    return found.group(1) if found else None


def slim_nodeclaim(obj: dict[str, Any]) -> dict[str, Any]:
    """What `claim` reads of a NodeClaim (the operator keeps every NodeClaim of the cluster in memory)."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    labels = meta.get("labels") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "deletionTimestamp": meta.get("deletionTimestamp"),
            "labels": {k: labels[k] for k in (NODEPOOL_LABEL, INSTANCE_TYPE_LABEL) if k in labels},
        },
        "status": {
            "nodeName": status.get("nodeName"),
            "conditions": [
                {k: c.get(k) for k in ("type", "status", "reason", "message")}
                for c in status.get("conditions") or []
                if c.get("type") in STAGES
            ],
        },
    }


@dataclass(frozen=True)
class Claim:
    """A NodeClaim's progress."""

    name: str
    stage: str
    """The last condition of STAGES that is True (Launching before the first), or Terminating."""
    detail: str
    """What it waits on, in Karpenter's words when it said something (e.g. "NodeNotReady: Node status is NotReady")."""
    failed: bool = False
    """Its launch failed (Karpenter retries, possibly with another NodeClaim)."""

    def describe(self) -> str:
        return f"nodeclaim/{self.name} {self.detail}"


def claim(obj: dict[str, Any]) -> Claim:
    """The progress of a (slim) NodeClaim."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    labels = meta.get("labels") or {}
    made = ", ".join(
        f"{what} {labels[key]}"
        for what, key in (("instance type", INSTANCE_TYPE_LABEL), ("NodePool", NODEPOOL_LABEL))
        if labels.get(key)
    )
    name, where = str(meta.get("name")), f"({made})" if made else ""
    if meta.get("deletionTimestamp"):
        return Claim(name, "Terminating", f"{where} is being deleted".strip())
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    stage = "Launching"
    for kind in STAGES:
        condition = conditions.get(kind) or {}
        if condition.get("status") == "True":
            stage = kind
            continue
        reason, message = condition.get("reason") or "", condition.get("message") or ""
        said = f": {reason}: {message}" if reason not in _AWAITING and message else ""
        failed = kind == "Launched" and said != ""
        return Claim(name, stage, f"{where} {stage.lower()}, {_WAITING[kind]}{said}".strip(), failed)
    node = status.get("nodeName")
    return Claim(name, stage, f"{where} initialized{f' as node {node}' if node else ''}".strip())


@dataclass(frozen=True)
class Provisioning:
    """The NodeClaims Karpenter nominated a job's waiting pods to, and its reason for the pods it could not place."""

    claims: tuple[Claim, ...] = ()
    failures: tuple[str, ...] = ()

    @property
    def live(self) -> list[Claim]:
        """The NodeClaims on their way (not failed, not being deleted)."""
        return [c for c in self.claims if not c.failed and c.stage != "Terminating"]

    @property
    def in_flight(self) -> bool:
        return bool(self.live)

    @property
    def failure(self) -> str:
        """Why nodes are not coming: Karpenter's FailedScheduling message or a NodeClaim's launch failure."""
        return "; ".join([*self.failures, *(c.describe() for c in self.claims if c.failed)])

    def condition(self) -> tuple[bool, str, str]:
        """(status, reason, message) of the `Provisioning` condition."""
        if live := self.live:
            earliest = min(live, key=lambda c: _ORDER.index(c.stage))
            return True, earliest.stage, "; ".join(c.describe() for c in self.claims)
        if self.failure:
            return False, "ProvisioningFailed", self.failure
        return False, "NotProvisioning", "no node is being provisioned for this job"


_ORDER = ("Launching", *STAGES)


def provisioning(
    waiting: Iterable[str], seen: Seen, lookup: Callable[[str], dict[str, Any] | None]
) -> Provisioning:
    """What Karpenter does for the `waiting` pods, from the Events `seen` and the NodeClaims `lookup` finds by name."""
    claims: dict[str, Claim] = {}
    failures: list[str] = []
    for pod in sorted(waiting):
        name = seen.nominated.get(pod)
        if name is not None and name not in claims and (found := lookup(name)) is not None:
            claims[name] = claim(found)
        elif pod in seen.failed and seen.failed[pod] not in failures:
            failures.append(seen.failed[pod])
    return Provisioning(tuple(claims.values()), tuple(failures))
