"""Shared by the operator's unit tests: FineTuneJobs as the API server would hand them to the operator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from finetune_operator.builders.meta import Owner

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
