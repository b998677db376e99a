"""What the invalid cases are made of: the smallest valid job, a deep merge, and the case record."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

DELETE = object()
"""Patch value that removes a key."""


def minimal_job(name: str = "t") -> dict[str, Any]:
    """The smallest valid FineTuneJob."""
    return {
        "apiVersion": "finetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {"model": {"preset": "tiny-llama"}, "dataset": {"uri": "configmap://data/train.jsonl"}},
    }


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `base` with `patch` merged in (dicts recursively; DELETE removes)."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class InvalidSpec:
    id: str
    manifest: dict[str, Any]
    field: str
    """Substring the error must contain: the dotted path of the offending field."""
    server_enforced: bool = True
    """True when the CRD alone (schema + CEL) rejects it; False for webhook-only rules (SSRF, URI shapes, memory)."""
    gpu_fit: bool = False
    """Parses, and is refused by the GPU-fit verdict (`api.fit`, reason DoesNotFit) instead."""


def case(
    id: str, field: str, spec: dict[str, Any], server: bool = True, gpu_fit: bool = False
) -> InvalidSpec:
    return InvalidSpec(id, merge(minimal_job(), {"spec": spec}), field, server, gpu_fit)


BERT = {"preset": "tiny-bert"}
LLAMA8B = {"preset": "llama-3.1-8b-instruct"}
NER = {"type": "token-classification", "labels": ["O", "B-PER", "I-PER"]}
