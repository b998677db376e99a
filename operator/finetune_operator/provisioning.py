"""Karpenter's work for jobs whose pods wait for nodes: the facts behind the `Provisioning` condition.

Used only when the API server serves karpenter.sh/v1 NodeClaims (checked at startup; on other clusters nothing here
runs). The NodeClaims come from a Kopf index (one watch). Karpenter names the NodeClaim a pod waits for only in an
Event on the pod (`karpenter.py`), so the poller reads Karpenter's Events of a job's namespace while its pods are
unschedulable, unless each of them is already nominated to a NodeClaim that exists, and at most once per interval
per job. What was read is kept per job; each is replaced whole, so reconciles on other threads read either version.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from finetune_operator import karpenter, observed
from finetune_operator.kubeapi import KubeApi

Claims = Mapping[str, Iterable[dict[str, Any]]]
"""Slim NodeClaims by name (Kopf's index)."""


class Provisioning:
    """Karpenter's Events per job, and the NodeClaims they name."""

    def __init__(self, kube: KubeApi, interval: float) -> None:
        self.kube, self.interval = kube, interval
        self.claims: Claims = {}
        self._seen: dict[str, karpenter.Seen] = {}
        self._read_at: dict[str, float] = {}

    def watch(self, claims: Claims) -> None:
        """Use Kopf's live index of NodeClaims."""
        self.claims = claims

    def claim(self, name: str) -> dict[str, Any] | None:
        return next(iter(self.claims.get(name, ())), None)

    def refresh(self, body: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        """Read Karpenter's Events on the job's waiting pods when something is not known yet (see the module)."""
        meta, waiting = body["metadata"], observed.waiting_pods(pods)
        seen = self._seen.get(meta["uid"], karpenter.Seen())
        if not waiting or all(self.claim(seen.nominated.get(pod, "")) is not None for pod in waiting):
            return
        now, last = time.monotonic(), self._read_at.get(meta["uid"])
        if last is not None and now - last < self.interval:
            return
        self._read_at[meta["uid"]] = now
        self._seen[meta["uid"]] = seen.updated(self.kube.karpenter_events(meta["namespace"]), waiting)

    def facts(self, uid: str, pods: list[dict[str, Any]]) -> karpenter.Provisioning:
        """What Karpenter does for the job's waiting pods, from what was read last."""
        return karpenter.provisioning(
            observed.waiting_pods(pods), self._seen.get(uid, karpenter.Seen()), self.claim
        )

    def forget(self, uid: str) -> None:
        self._seen.pop(uid, None)
        self._read_at.pop(uid, None)
