"""FineTuneJobs in every state, with the status the operator's own `status.derive` writes for it.

Shared by the GitOps health tests (tests/unit/test_gitops_health.py) and the generator of Argo CD's testdata
(`python -m tests.gitops_statuses`, rewrites gitops/argocd/…/testdata/; a test fails when they drift).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from finetune_api import GROUP, KIND, VERSION
from finetune_api.trainer import TerminationMessage
from finetune_operator import status
from finetune_operator.observed import JobFacts, PodFacts

ROOT = Path(__file__).resolve().parent.parent
ARGO_DIR = ROOT / "gitops" / "argocd" / "resource_customizations" / GROUP / KIND
NOW = datetime(2026, 1, 1, tzinfo=UTC)
GENERATION = 2
RESULT = TerminationMessage(status="Succeeded", output="pvc://results/demo", digest="sha256:" + "ab" * 32)
FAILURE = TerminationMessage(
    status="Failed", reason="DataError", message="train.jsonl line 7: no 'completion'"
)

# name -> (job facts, pod facts, run policy: (user_suspended, queued))
_CASES: dict[str, tuple[JobFacts, PodFacts, tuple[bool, bool]]] = {
    "pending": (JobFacts(exists=True), PodFacts(), (False, False)),
    "stalled": (
        JobFacts(exists=True),
        PodFacts(
            unschedulable_since=NOW - timedelta(minutes=10),
            unschedulable_message="0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
        ),
        (False, False),
    ),
    "queued": (JobFacts(exists=True, suspended=True), PodFacts(), (False, True)),
    "running": (JobFacts(exists=True), PodFacts(running=1), (False, False)),
    "suspended": (JobFacts(exists=True, suspended=True), PodFacts(), (True, False)),
    "succeeded": (JobFacts(exists=True, complete=True), PodFacts(succeeded_message=RESULT), (False, False)),
    "result-missing": (JobFacts(exists=True, complete=True), PodFacts(), (False, False)),
    "failed": (
        JobFacts(exists=True, failed=True, failed_reason="PodFailurePolicy"),
        PodFacts(failure=FAILURE, failure_exit_code=2),
        (False, False),
    ),
}


def finetunejob(name: str, job_status: dict[str, Any] | None, generation: int = GENERATION) -> dict[str, Any]:
    """A FineTuneJob as the API server returns it, with `job_status` (None: no status yet)."""
    obj: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": "ml", "generation": generation},
        "spec": {"model": {"preset": "tiny-llama"}, "dataset": {"uri": "configmap://data/train.jsonl"}},
    }
    if job_status is not None:
        obj["status"] = job_status
    return obj


def derived(name: str) -> dict[str, Any]:
    """The status `status.derive` gives case `name` (a running job also has progress, as the poller adds)."""
    job, pods, (user_suspended, queued) = _CASES[name]
    observation = status.Observation(
        generation=GENERATION, job=job, pods=pods, user_suspended=user_suspended, queued=queued,
        workload={"jobName": "demo-train"}, now=NOW, stall_after_seconds=300,
    )  # fmt: skip
    result = status.derive(observation)
    if name == "running":
        result["progress"] = {"step": 42, "totalSteps": 100, "percent": 42}
    return result


def cases() -> dict[str, dict[str, Any]]:
    """Every phase, a stalled Pending job, a status from an older generation, and no status at all."""
    jobs = {name: finetunejob("demo", derived(name)) for name in _CASES}
    jobs["old-generation"] = finetunejob("demo", derived("succeeded"), generation=GENERATION + 1)
    jobs["no-status"] = finetunejob("demo", None)
    return jobs


def render(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


def main() -> None:
    """Rewrite the Argo CD testdata from `cases()`."""
    (ARGO_DIR / "testdata").mkdir(parents=True, exist_ok=True)
    for name, obj in cases().items():
        (ARGO_DIR / "testdata" / f"{name}.yaml").write_text(render(obj))
    print(f"wrote {len(cases())} files to {ARGO_DIR / 'testdata'}", file=sys.stderr)


if __name__ == "__main__":
    main()
