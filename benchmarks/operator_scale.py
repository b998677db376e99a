"""The operator at scale on the KWOK control plane: burst and steady creation, memory, API cost per job.

    python benchmarks/operator_scale.py [--nodes 125 --burst 1000 --rate 20 --seconds 60]

Recreates the local cluster (`hack/cluster/up.sh`) with `--nodes` fake 8-GPU nodes and an audit policy
(benchmarks/audit-policy.yaml), runs `finetune operator` as a subprocess, and measures:

(a) a burst of `--burst` FineTuneJobs created at once (16 client threads): time from the first create to the last
    Job's ADDED watch event, and create→Job latency p50/p99 (request sent → Job seen by a watch, same clock);
(b) a steady `--rate` jobs/s for `--seconds`: the same latencies;
(c) the operator's peak RSS (VmHWM) once the burst's jobs are all live;
(d) requests and writes per job lifecycle (created → Running → Succeeded), counted from the API server's audit log
    by user agent (`finetune-operator` for the operator's writes, `kopf/…` for its watches), not by the client.

Each job asks for one GPU, writes to a shared pre-bound claim (no PVC per job: the cluster has no provisioner) and
its fake pod runs for `--run-seconds` before KWOK marks it Succeeded. The fake pods get the IP 127.0.0.1, where no
trainer serves metrics, so the operator's progress scrapes fail fast as they would against a real pod that has not
opened its port yet (KWOK's made-up IPs would instead make each scrape wait for its timeout). The cluster is taken down at the end (the
integration tests start their own). Writes reports/operator_scale.json; the README's table is copied from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator")]

from finetune_api import GROUP, KIND, PLURAL, VERSION  # noqa: E402
from kubernetes import client, config, watch  # noqa: E402

KUBECONFIG = ROOT / ".cache" / "cluster" / "kubeconfig"
AUDIT_LOG = ROOT / ".cache" / "cluster" / "kwok" / "clusters" / "finetune" / "logs" / "audit.log"
HEALTH_PORT = 18181
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def sh(script: str, **env: str) -> None:
    subprocess.run([str(ROOT / "hack" / "cluster" / script)], check=True, env={**os.environ, **env})


class Bench:
    """Clients, the operator process and the Job watch."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        api = config.new_client_from_config(str(KUBECONFIG))
        api.user_agent = "operator-scale-bench"
        self.core, self.custom, self.batch = (
            client.CoreV1Api(api),
            client.CustomObjectsApi(api),
            client.BatchV1Api(api),
        )
        self.sent: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.operator: subprocess.Popen[bytes] | None = None
        self.peak_rss_kib = 0

    def start_operator(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(KUBECONFIG), "FINETUNE_LOG_FORMAT": "plain",
               "FINETUNE_PROPAGATE_ANNOTATION_PREFIXES": "kwok.finetune.io/",
               "FINETUNE_HEALTH_PORT": str(HEALTH_PORT), "FINETUNE_METRICS_PORT": "0"}  # fmt: skip
        log = (ROOT / ".cache" / "operator-scale.log").open("wb")
        self.operator = subprocess.Popen([sys.executable, "-m", "finetune_cli", "operator"], env=env,
                                         stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        threading.Thread(target=self._sample_rss, daemon=True).start()
        deadline = time.monotonic() + 120
        while not _answers(f"http://127.0.0.1:{HEALTH_PORT}/readyz"):
            if self.operator.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the operator did not come up: see .cache/operator-scale.log")
            time.sleep(0.5)

    def _sample_rss(self) -> None:
        assert self.operator is not None
        status = Path(f"/proc/{self.operator.pid}/status")
        while self.operator.poll() is None:
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))
            time.sleep(0.2)

    def watch_jobs(self, namespace: str) -> None:
        def run() -> None:
            for event in watch.Watch().stream(
                self.batch.list_namespaced_job, namespace, timeout_seconds=3600
            ):
                if event["type"] == "ADDED":
                    name = event["object"].metadata.labels["finetune.io/job-name"]
                    with self.lock:
                        self.seen.setdefault(name, time.monotonic())

        threading.Thread(target=run, daemon=True).start()

    def namespace(self, name: str) -> None:
        self.core.create_namespace({"metadata": {"name": name}})
        self.core.create_persistent_volume({
            "metadata": {"name": f"bench-{name}"},
            "spec": {"capacity": {"storage": "1Ti"}, "accessModes": ["ReadWriteMany"], "hostPath": {"path": "/tmp/b"},
                     "claimRef": {"namespace": name, "name": "shared"}},
        })  # fmt: skip
        self.core.create_namespaced_persistent_volume_claim(name, {
            "metadata": {"name": "shared"},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Ti"}}, "storageClassName": ""},
        })  # fmt: skip
        self.watch_jobs(name)

    def create(self, namespace: str, name: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": name, "annotations": {"kwok.finetune.io/run-duration": f"{self.args.run_seconds}s",
                                                       "kwok.finetune.io/pod-ip": "127.0.0.1"}},
            "spec": {"model": {"preset": "tiny-llama"}, "dataset": {"uri": "configmap://data/train.jsonl"},
                     "resources": {"gpu": {"count": 1}}, "output": {"uri": f"pvc://shared/{name}"}},
        }  # fmt: skip
        with self.lock:
            self.sent[name] = time.monotonic()
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def wait(self, names: list[str], what: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(n in self.seen for n in names):
                    return max(self.seen[n] for n in names)
            time.sleep(0.1)
        raise TimeoutError(f"{what}: {sum(n in self.seen for n in names)}/{len(names)} Jobs after {timeout}s")

    def phases(self, namespace: str) -> Counter[str]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        return Counter((i.get("status") or {}).get("phase", "None") for i in items)

    def latencies(self, names: list[str]) -> dict[str, float]:
        values = sorted(self.seen[n] - self.sent[n] for n in names)
        return {"p50_s": round(statistics.median(values), 3),
                "p99_s": round(values[min(len(values) - 1, int(0.99 * len(values)))], 3),
                "max_s": round(values[-1], 3)}  # fmt: skip


COMPONENTS = ("kube-apiserver", "etcd", "kube-scheduler", "kube-controller-manager", "kwok")


def cpu_seconds(operator_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the operator and by each control-plane process."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0].decode()
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = "operator" if int(proc.name) == operator_pid else Path(argv0).name
        if name == "operator" or name in COMPONENTS:
            found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return found


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 1) for name in sorted(after)}


def burst(bench: Bench, count: int) -> dict[str, Any]:
    bench.namespace("burst")
    names = [f"b{i:04d}" for i in range(count)]
    assert bench.operator is not None
    cpu_before = cpu_seconds(bench.operator.pid)
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: bench.create("burst", n), names))
    created = time.monotonic()
    last = bench.wait(names, "burst", timeout=600)
    result = {"jobs": count, "create_calls_s": round(created - started, 2), "drained_s": round(last - started, 2),
              **bench.latencies(names), "cpu_s_until_drained": cpu_used(cpu_before, cpu_seconds(bench.operator.pid))}  # fmt: skip
    deadline = time.monotonic() + 1800
    while (done := bench.phases("burst")).get("Succeeded", 0) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"burst lifecycle: {dict(done)}")
        result["peak_rss_mib_live"] = round(bench.peak_rss_kib / 1024, 1)
        time.sleep(2)
    result["lifecycle_done_s"] = round(time.monotonic() - started, 1)
    result["cpu_s_whole_lifecycle"] = cpu_used(cpu_before, cpu_seconds(bench.operator.pid))
    result["peak_rss_mib"] = round(bench.peak_rss_kib / 1024, 1)
    return result


def steady(bench: Bench, rate: float, seconds: float) -> dict[str, Any]:
    bench.namespace("steady")
    names = [f"s{i:05d}" for i in range(int(rate * seconds))]
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        for index, name in enumerate(names):
            time.sleep(max(0.0, started + index / rate - time.monotonic()))
            pool.submit(bench.create, "steady", name)
    bench.wait(names, "steady", timeout=600)
    return {"jobs": len(names), "rate_per_s": rate, **bench.latencies(names)}


def audit_counts(jobs: int) -> dict[str, Any]:
    """Requests by the operator per job, from the audit log (burst namespace and cluster-wide watches)."""
    by_call: Counter[str] = Counter()
    requests = writes = 0
    for line in AUDIT_LOG.open():
        entry = json.loads(line)
        agent = entry.get("userAgent", "")
        if not (agent.startswith("finetune-operator") or agent.startswith("kopf")):
            continue
        ref = entry.get("objectRef") or {}
        if ref.get("namespace") not in (None, "burst") or ref.get("resource") == "leases":
            continue
        requests += 1
        writes += entry["verb"] in WRITES
        by_call[
            f"{entry['verb']} {ref.get('resource')}{'/' + ref['subresource'] if ref.get('subresource') else ''}"
        ] += 1
    return {"requests_per_job": round(requests / jobs, 2), "writes_per_job": round(writes / jobs, 2),
            "by_call_per_job": {k: round(v / jobs, 2) for k, v in by_call.most_common()}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=125)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--run-seconds", type=int, default=20, help="how long each fake pod runs")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "reports" / "operator_scale.json")
    args = parser.parse_args()
    sh("down.sh")
    sh(
        "up.sh",
        FINETUNE_GPU_NODES=str(args.nodes),
        FINETUNE_AUDIT_POLICY=str(ROOT / "benchmarks" / "audit-policy.yaml"),
    )
    bench = Bench(args)
    subprocess.run(
        ["kubectl", "--kubeconfig", str(KUBECONFIG), "apply", "-f", str(ROOT / "crds")], check=True
    )
    bench.start_operator()
    try:
        report: dict[str, Any] = {"burst": burst(bench, args.burst)}
        report["audit"] = audit_counts(args.burst)
        report["steady"] = steady(bench, args.rate, args.seconds)
        report["peak_rss_mib_overall"] = round(bench.peak_rss_kib / 1024, 1)
    finally:
        if bench.operator is not None:
            bench.operator.terminate()
            bench.operator.wait(30)
        sh("down.sh")
    report["machine"] = {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version(),
                         "nodes": args.nodes, "run_seconds": args.run_seconds}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
