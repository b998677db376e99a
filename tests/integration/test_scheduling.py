"""Batch Jobs on the fake GPU nodes: scheduling by GPU resources/labels and the KWOK pod lifecycle."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.helpers import (
    GPU_NODE_PREFIX,
    KWOK_EXIT_CODE,
    KWOK_FAIL,
    KWOK_RUN_DURATION,
    Kube,
    wait_until,
)

pytestmark = pytest.mark.integration

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def gpu_job(
    name: str,
    gpus: int = 1,
    node_selector: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "tolerations": [GPU_TOLERATION],
        "containers": [
            {
                "name": "train",
                "image": "example.invalid/trainer:test",  # never pulled: there is no kubelet
                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
            }
        ],
    }
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"annotations": annotations or {}}, "spec": pod_spec},
        },
    }


def job_condition(kube: Kube, namespace: str, name: str, wanted: str) -> str | None:
    """The terminal Job condition (Complete/Failed) once one is True; fails if it is not `wanted`."""
    job = kube.batch.read_namespaced_job_status(name, namespace)
    for cond in (job.status and job.status.conditions) or []:
        if cond.status == "True" and cond.type in ("Complete", "Failed"):
            assert cond.type == wanted, f"job {name} ended {cond.type}: {cond.reason} {cond.message}"
            return str(cond.type)
    return None


def job_pods(kube: Kube, namespace: str, name: str) -> list[Any]:
    return list(kube.core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items)


def test_gpu_nodes_advertise_gpus(kube: Kube) -> None:
    nodes = kube.core.list_node(label_selector="nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB").items
    assert nodes, "no fake GPU nodes"
    for node in nodes:
        assert node.status.allocatable["nvidia.com/gpu"] == "8"
        assert node.status.capacity["nvidia.com/gpu"] == "8"
        assert "nvidia.com/gpu.memory" in node.metadata.labels
        assert "node.kubernetes.io/instance-type" in node.metadata.labels
        assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in node.spec.taints)
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True"


def test_gpu_job_runs_on_fake_gpu_node_and_completes(kube: Kube, namespace: str) -> None:
    kube.batch.create_namespaced_job(namespace, gpu_job("gpu-ok", annotations={KWOK_RUN_DURATION: "5s"}))

    def running_pod() -> Any:
        for pod in job_pods(kube, namespace, "gpu-ok"):
            if pod.status.phase == "Running":
                return pod
        return None

    pod = wait_until("job pod Running", running_pod, timeout=60)
    assert pod.spec.node_name.startswith(GPU_NODE_PREFIX)
    wait_until(
        "job gpu-ok Complete", lambda: job_condition(kube, namespace, "gpu-ok", "Complete"), timeout=90
    )
    pods = job_pods(kube, namespace, "gpu-ok")
    assert [p.status.phase for p in pods] == ["Succeeded"]


def _unschedulable(kube: Kube, namespace: str, job: str) -> tuple[Any, Any]:
    """The Job's pod and the FailedScheduling event the scheduler recorded for it."""
    pod = wait_until("job pod created", lambda: next(iter(job_pods(kube, namespace, job)), None))

    def failed_scheduling() -> Any:
        events = kube.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={pod.metadata.name},reason=FailedScheduling"
        ).items
        return events[0] if events else None

    return pod, wait_until("FailedScheduling event", failed_scheduling, timeout=60)


def test_impossible_gpu_product_stays_pending(kube: Kube, namespace: str) -> None:
    selector = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-does-not-exist"}
    kube.batch.create_namespaced_job(namespace, gpu_job("gpu-none", node_selector=selector))
    pod, event = _unschedulable(kube, namespace, "gpu-none")
    assert "didn't match" in event.message or "node affinity" in event.message.lower(), event.message
    current = kube.core.read_namespaced_pod(pod.metadata.name, namespace)
    assert current.status.phase == "Pending"
    assert not current.spec.node_name


def test_too_many_gpus_stays_pending(kube: Kube, namespace: str) -> None:
    kube.batch.create_namespaced_job(namespace, gpu_job("gpu-greedy", gpus=9))
    _, event = _unschedulable(kube, namespace, "gpu-greedy")
    assert "Insufficient nvidia.com/gpu" in event.message, event.message


def test_job_marked_to_fail_ends_failed(kube: Kube, namespace: str) -> None:
    annotations = {KWOK_FAIL: "true", KWOK_EXIT_CODE: "3"}
    kube.batch.create_namespaced_job(namespace, gpu_job("gpu-fail", annotations=annotations))
    wait_until(
        "job gpu-fail Failed", lambda: job_condition(kube, namespace, "gpu-fail", "Failed"), timeout=90
    )
    pods = job_pods(kube, namespace, "gpu-fail")
    assert pods and all(p.status.phase == "Failed" for p in pods)
    terminated = pods[0].status.container_statuses[0].state.terminated
    assert terminated.exit_code == 3
