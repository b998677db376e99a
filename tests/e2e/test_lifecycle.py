"""A running FineTuneJob deleted (pods go, the output volume stays) and suspended then resumed (from its checkpoint)."""

from __future__ import annotations

import pytest

from tests.e2e.kindkit import Watch, apply, events, logs, pods, tiny_lora
from tests.integration.helpers import GROUP, PLURAL, VERSION, Kube, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_deleting_a_running_job_removes_its_pods_and_keeps_its_output_volume(
    kube: Kube, namespace: str
) -> None:
    job, data = tiny_lora("deleted", training={"maxSteps": 100000, "loggingSteps": 1})
    apply(kube, namespace, job, data)
    running = Watch(kube, namespace, "deleted").until_step(1)
    pvc = running["status"]["workload"]["pvcName"]

    kube.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "deleted")

    wait_until("the training pods to be deleted", lambda: not pods(kube, namespace, "deleted"), timeout=180)
    claim = kube.core.read_namespaced_persistent_volume_claim(pvc, namespace)
    assert claim.metadata.deletion_timestamp is None, "the output volume is being deleted with its job"
    assert claim.status.phase == "Bound", claim.status


def test_a_suspended_job_resumes_from_its_checkpoint(kube: Kube, namespace: str) -> None:
    job, data = tiny_lora("suspended", training={"maxSteps": 100000, "loggingSteps": 1, "checkpointSteps": 5})
    apply(kube, namespace, job, data)
    watch = Watch(kube, namespace, "suspended")
    watch.until_step(6)  # past the first checkpoint (step 5)

    kube.patch_finetunejob(namespace, "suspended", {"spec": {"runPolicy": {"suspend": True}}})
    suspended = watch.until_phase("Suspended", timeout=300)
    wait_until("the suspended job's pods to go", lambda: not pods(kube, namespace, "suspended"), timeout=180)
    stopped_at = suspended["status"]["progress"]["step"]
    seen_before = len(watch.steps)

    kube.patch_finetunejob(namespace, "suspended", {"spec": {"runPolicy": {"suspend": False}}})
    resumed = watch.until_step(stopped_at + 1)

    assert resumed["status"]["phase"] == "Running"
    starts = [
        e for pod in pods(kube, namespace, "suspended") for e in events(logs(kube, namespace, pod.metadata.name))
        if e["event"] == "start"
    ]  # fmt: skip
    # The new pod loaded a checkpoint (the periodic one at step 5 or the one written on SIGTERM), not step 0.
    assert len(starts) == 1 and starts[0]["resumed_from"] >= 5, starts
    after = watch.steps[seen_before:]
    assert after and min(after) >= starts[0]["resumed_from"], (watch.steps, starts)
