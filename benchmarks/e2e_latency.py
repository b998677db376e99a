"""The tiny LoRA job on kind, images present: apply → trainer process started, and apply → Succeeded.

    python benchmarks/e2e_latency.py [--runs 3]          # part of make bench; uses or creates the kind cluster

Runs hack/kind/install.sh (the cluster, images and chart; reused when present), then applies examples/tiny-lora.yaml
`--runs` times in a fresh namespace each and splits each run into phases, all on the API server's and the trainer's
clocks (one machine, so one clock):

  operator    apply → the training pod exists (the operator saw the job and created its Job; the Job made the pod)
  scheduling  pod created → PodScheduled (volume provisioning and binding included)
  container   scheduled → container running (sandbox, network, container start)
  startup     container running → the trainer's first event (Python, torch and transformers imports, building
              the tiny preset's weights)
  setup       first event → `start` (tokenizing the data, loading the weights, the engine)
  training    `start` → the last `step`
  saving      last step → `done` (checkpoint, adapter, manifest)
  reporting   `done` → the FineTuneJob reads Succeeded (process exit, pod and Job status, the operator's write)

Pod timestamps have one-second resolution, so `operator`, `scheduling` and `container` are ±1 s each (their sum is
exact to the second).

Targets (issue 10): apply → trainer process started < 10 s, apply → Succeeded < 60 s. Writes
reports/e2e_latency.json; the README beside this script holds the numbers and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.e2e.kindkit import KUBECONFIG, apply, events, logs, pods, tiny_lora  # noqa: E402
from tests.integration.helpers import GROUP, PLURAL, VERSION, Kube  # noqa: E402

PHASES = ("operator", "scheduling", "container", "startup", "setup", "training", "saving", "reporting")


def _ts(value: datetime.datetime) -> float:
    return value.timestamp()


def _pod_condition(pod: Any, kind: str) -> float | None:
    return next((_ts(c.last_transition_time) for c in pod.status.conditions or [] if c.type == kind), None)


def one_run(kube: Kube, run: int) -> dict[str, float]:
    namespace = f"bench-e2e-{run}-{uuid.uuid4().hex[:6]}"
    kube.core.create_namespace({"metadata": {"name": namespace}})
    try:
        while not kube.core.list_namespaced_service_account(namespace).items:
            time.sleep(0.2)
        job, data = tiny_lora("tiny-lora")
        for obj in data:
            kube.core.create_namespaced_config_map(namespace, obj)
        applied = time.time()
        apply(kube, namespace, job)
        while True:
            found = kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "tiny-lora")
            phase = found.get("status", {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                done = time.time()
                break
            time.sleep(0.2)
        if phase != "Succeeded":
            raise SystemExit(f"run {run}: the job ended {phase}: {found['status']}")
        (pod,) = pods(kube, namespace, "tiny-lora")
        trail = events(logs(kube, namespace, pod.metadata.name))
        running = pod.status.container_statuses[0].state.terminated.started_at
        marks = {
            "applied": applied,
            "pod": _ts(pod.metadata.creation_timestamp),
            "scheduled": _pod_condition(pod, "PodScheduled"),
            "running": _ts(running),
            "first_event": trail[0]["time"],
            "start": next(e["time"] for e in trail if e["event"] == "start"),
            "last_step": [e["time"] for e in trail if e["event"] == "step"][-1],
            "done": next(e["time"] for e in trail if e["event"] == "done"),
            "succeeded": done,
        }
    finally:
        kube.core.delete_namespace(namespace)
    order = list(marks)
    result = {phase: marks[order[i + 1]] - marks[order[i]] for i, phase in enumerate(PHASES)}  # type: ignore[operator]
    result["apply_to_trainer_started"] = marks["running"] - applied
    result["apply_to_succeeded"] = done - applied
    return {key: round(value, 2) for key, value in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    subprocess.run([str(ROOT / "hack" / "kind" / "install.sh")], check=True, stdout=subprocess.DEVNULL)
    kube = Kube.connect(KUBECONFIG)
    runs = []
    for run in range(args.runs):
        runs.append(one_run(kube, run))
        print(json.dumps(runs[-1]), flush=True)
    medians = {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {_cpus()} CPUs, {platform.platform()}",
        "date": datetime.date.today().isoformat(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
        "runs": runs,
        "median": medians,
        "targets": {"apply_to_trainer_started": 10.0, "apply_to_succeeded": 60.0},
    }
    out = ROOT / "benchmarks" / "reports" / "e2e_latency.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(medians, indent=2))


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
