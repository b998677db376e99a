"""Shared by the operator's unit tests: FineTuneJobs as the API server would hand them to the operator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from finetune_operator.builders.meta import Owner
from finetune_operator.karpenter import PodEvent

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def body(name: str = "demo", namespace: str = "team-a", **spec: Any) -> dict[str, Any]:
    """A created FineTuneJob (uid, generation, creationTimestamp set) with a tiny-llama default spec."""
    full = {"model": {"preset": "tiny-llama"}, "dataset": {"uri": "configmap://data/train.jsonl"}, **spec}
    return {
        "apiVersion": "finetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1,
                     "creationTimestamp": "2026-11-28T07:00:00Z"},
        "spec": full,
    }  # fmt: skip


def owner(name: str = "demo", **spec: Any) -> Owner:
    return Owner.from_body(body(name, **spec))


def example_bodies() -> dict[str, dict[str, Any]]:
    """Every FineTuneJob in examples/, as created in namespace `team-a`."""
    found = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "FineTuneJob":
                meta = {**doc["metadata"], "namespace": "team-a", "uid": "uid-1", "generation": 1}
                found[path.stem] = {**doc, "metadata": meta}
    return found


class FakeKube:
    """`KubeApi` in memory for unit tests of pure logic: records every write, serves no Secrets and nothing else;
    subclasses override what a test needs."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.posted: list[tuple[str, str, str]] = []

    def apply(self, obj: dict[str, Any]) -> None:
        self.created.append(obj)

    def secret_keys(self, namespace: str, name: str) -> set[str] | None:
        return None

    def create_job(self, job: dict[str, Any]) -> bool:
        self.created.append(job)
        return True

    def suspend_job(self, namespace: str, name: str, suspend: bool) -> None:
        pass

    def delete_job(self, namespace: str, name: str) -> None:
        pass

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)

    def post_event(self, owner: dict[str, Any], kind: str, reason: str, message: str) -> None:
        self.posted.append((kind, reason, message))

    def serves(self, group: str, version: str, plural: str) -> bool:
        return False

    def karpenter_events(self, namespace: str) -> list[PodEvent]:
        return []
