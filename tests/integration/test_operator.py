"""The operator, running for real (`finetune operator` in a subprocess), against the real control plane.

KWOK plays the kubelet: the operator's pods go Running on the fake GPU nodes, and the annotations the operator
propagates (kwok.finetune.io/*, see hack/cluster/kwok.yaml) decide when they end, with which exit code and which
termination message, as the trainer would write it. Tests steer a running pod by annotating it.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from finetune_api.trainer import CONFIG_FILE_NAME, METRICS_PORT, TerminationMessage, TrainerConfig
from finetune_operator import names
from finetune_operator.builders import workload
from finetune_operator.builders.meta import Owner
from finetune_trainer import metrics
from kubernetes.client.rest import ApiException

from tests.integration.helpers import (
    GROUP,
    KWOK_EXIT_CODE,
    KWOK_FAIL,
    KWOK_RUN_DURATION,
    PLURAL,
    VERSION,
    Kube,
    wait_until,
)
from tests.integration.operator_process import PROGRESS_INTERVAL_S, OperatorProcess
from tests.integration.operator_world import (
    KWOK_MESSAGE,
    KWOK_POD_IP,
    World,
    condition,
    finetunejob,
)

pytestmark = pytest.mark.integration

SUCCEEDED = TerminationMessage(
    status="Succeeded", output="pvc://results/tiny", digest="sha256:" + "ab" * 32,
    metrics={"loss": 1.25, "eval_loss": 1.5, "train_seconds": 3.0},
)  # fmt: skip


@pytest.fixture(scope="module")
def operator(kube: Kube, crds: list[str]) -> Iterator[OperatorProcess]:
    process = OperatorProcess()
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def world(kube: Kube, namespace: str, operator: OperatorProcess) -> Iterator[World]:
    with World(kube, namespace, operator) as world:
        yield world


def test_job_runs_to_success_with_result_and_events(world: World) -> None:
    world.output_volume("ok")
    created = world.create(finetunejob("ok", annotations={KWOK_RUN_DURATION: "1h"}))
    config = world.wait("the trainer ConfigMap", lambda: world.config_map(names.config_map("ok")))
    trainer = TrainerConfig.model_validate_json(config["data"][CONFIG_FILE_NAME])
    assert (trainer.name, trainer.namespace, trainer.uid) == (
        "ok",
        world.namespace,
        created["metadata"]["uid"],
    )
    assert trainer.paths.output_dir == "/output"
    world.wait_phase("ok", "Running")
    pod = world.pods("ok")[0]
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    world.annotate_pod(pod, {KWOK_MESSAGE: SUCCEEDED.to_json(), KWOK_RUN_DURATION: "0s"})
    status = world.wait_phase("ok", "Succeeded")
    assert status["result"] == {
        "artifactUri": "pvc://results/tiny", "digest": SUCCEEDED.digest,
        "metrics": {"loss": 1.25, "eval_loss": 1.5, "train_seconds": 3.0},
    }  # fmt: skip
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Complete")["status"] == "True"
    assert condition(status, "Provisioning") == {}, "no Karpenter here: no Provisioning condition"
    assert status["startTime"] <= status["completionTime"]
    assert status["workload"] == {"jobName": "ok-train", "configMapName": "ok-config", "pvcName": "ok-output"}
    assert status["observedGeneration"] == created["metadata"]["generation"]
    reasons = world.wait(
        "Events for each phase", lambda: _has(world.event_reasons("ok"), {"Running", "Succeeded"})
    )
    assert "Running" in reasons and "Succeeded" in reasons


def test_a_pod_that_succeeds_without_a_result_is_reported_result_missing(world: World) -> None:
    """Exit 0 without the trainer's termination message (killed after the last step, an image not ours)."""
    world.output_volume("mute")
    world.create(finetunejob("mute", annotations={KWOK_RUN_DURATION: "1h"}))
    world.wait_phase("mute", "Running")
    world.annotate_pod(world.pods("mute")[0], {KWOK_RUN_DURATION: "0s"})
    status = world.wait_phase("mute", "Succeeded")
    assert "result" not in status
    assert condition(status, "Ready")["reason"] == condition(status, "Complete")["reason"] == "ResultMissing"
    assert "wrote no result" in status["message"]
    events = world.wait(
        "a Warning Event ResultMissing",
        lambda: [e for e in world.events("mute") if e[1] == "ResultMissing"] or None,
    )
    assert events == [("Warning", "ResultMissing")]


def _has(found: list[str], wanted: set[str]) -> list[str] | None:
    return found if wanted <= set(found) else None


def test_invalid_config_fails_at_once_with_the_trainers_reason(world: World) -> None:
    world.output_volume("bad")
    message = TerminationMessage(status="Failed", reason="DataError", message="train.jsonl line 3: not JSON")
    annotations = {KWOK_FAIL: "true", KWOK_EXIT_CODE: "2", KWOK_MESSAGE: message.to_json()}
    world.create(finetunejob("bad", annotations=annotations, runPolicy={"backoffLimit": 5}))
    status = world.wait_phase("bad", "Failed")
    failed = condition(status, "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "DataError")
    assert "line 3: not JSON" in failed["message"]
    assert condition(status, "Stalled")["status"] == "True"
    assert condition(status, "Ready")["status"] == "False"
    assert len(world.pods("bad", include_finished=True)) == 1, "exit code 2 must not be retried"


def test_failing_pod_without_message_fails_after_backoff(world: World) -> None:
    world.output_volume("flaky")
    annotations = {KWOK_FAIL: "true", KWOK_EXIT_CODE: "1"}
    world.create(finetunejob("flaky", annotations=annotations, runPolicy={"backoffLimit": 1}))
    status = world.wait_phase("flaky", "Failed", timeout=120)
    assert condition(status, "Failed")["status"] == "True"
    assert len(world.pods("flaky", include_finished=True)) == 2, "one retry with backoffLimit 1"


def test_unschedulable_job_stalls_with_the_schedulers_message(world: World) -> None:
    world.output_volume("nogpu")
    resources = {"gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}}
    world.create(finetunejob("nogpu", resources=resources))
    status = world.wait("Stalled", lambda: _stalled(world.status("nogpu")))
    stalled = condition(status, "Stalled")
    assert status["phase"] == "Pending"
    assert stalled["reason"] == "Unschedulable"
    assert "node(s) didn't match Pod's node affinity/selector" in stalled["message"]
    assert condition(status, "Reconciling")["status"] == "False"
    world.wait("a Warning Event", lambda: "Unschedulable" in world.event_reasons("nogpu"))


def _stalled(status: dict[str, Any]) -> dict[str, Any] | None:
    return status if (condition(status, "Stalled") or {}).get("status") == "True" else None


def test_suspend_deletes_pods_and_resume_runs_again(world: World) -> None:
    world.output_volume("pause")
    world.create(finetunejob("pause", annotations={KWOK_RUN_DURATION: "1h"}))
    world.wait_phase("pause", "Running")
    world.patch("pause", {"spec": {"runPolicy": {"suspend": True}}})
    status = world.wait_phase("pause", "Suspended")
    assert condition(status, "Suspended")["status"] == "True"
    world.wait("pods deleted", lambda: not world.pods("pause"))
    assert world.must_job("pause")["spec"]["suspend"] is True
    world.patch("pause", {"spec": {"runPolicy": {"suspend": False}}})
    world.wait_phase("pause", "Running")
    assert world.must_job("pause")["spec"]["suspend"] is False


def test_resources_changed_while_suspended_apply_on_resume(world: World) -> None:
    world.output_volume("grow")
    world.create(finetunejob("grow", annotations={KWOK_RUN_DURATION: "1h"}, runPolicy={"suspend": True}))
    world.wait_phase("grow", "Suspended")
    first_uid = world.must_job("grow")["metadata"]["uid"]
    world.patch("grow", {"spec": {"resources": {"gpu": {"count": 2}}, "runPolicy": {"suspend": False}}})
    world.wait_phase("grow", "Running")
    job = world.must_job("grow")
    assert job["metadata"]["uid"] != first_uid
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_two_nodes_get_an_indexed_job_a_headless_service_and_rendezvous(world: World) -> None:
    name = "n" * 44 + "-2node"  # the longest name allowed: 50 characters
    assert len(name) == 50
    second = world.other_namespace()
    for namespace in (world.namespace, second):
        world.output_volume(name, namespace=namespace, access_mode="ReadWriteMany")
        body = finetunejob(name, annotations={KWOK_RUN_DURATION: "1h"}, resources={"gpu": {"count": 1}},
                           distributed={"nodes": 2})  # fmt: skip
        world.create(body, namespace=namespace)
    for namespace in (world.namespace, second):
        world.wait_phase(name, "Running", namespace=namespace)
        job = world.must_job(name, namespace=namespace)
        assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == (
            "Indexed", 2, 2,
        )  # fmt: skip
        service = world.kube.core.read_namespaced_service(names.service(name), namespace).to_dict()
        assert service["spec"]["cluster_ip"] == "None"
        pods = world.wait("two pods", functools.partial(_two, world, name, namespace))
        hosts = sorted(p["spec"]["hostname"] for p in pods)
        assert hosts == [names.pod_hostname(name, 0), names.pod_hostname(name, 1)]
        assert all(len(h) <= 63 for h in hosts)
        for pod in pods:
            assert pod["spec"]["subdomain"] == names.service(name)
            env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
            assert env["MASTER_ADDR"]["value"] == f"{hosts[0]}.{names.service(name)}.{namespace}.svc"
            assert env["MASTER_PORT"]["value"] == "29500"
            assert "JOB_COMPLETION_INDEX" in env  # set by the Job controller for Indexed Jobs


def _two(world: World, name: str, namespace: str) -> list[dict[str, Any]] | None:
    pods = world.pods(name, namespace=namespace)
    return pods if len(pods) == 2 else None


def test_deleting_the_job_removes_children_but_keeps_the_output(world: World) -> None:
    world.output_volume("gone")
    world.create(finetunejob("gone", annotations={KWOK_RUN_DURATION: "1h"}))
    world.wait_phase("gone", "Running")
    world.kube.custom.delete_namespaced_custom_object(GROUP, VERSION, world.namespace, PLURAL, "gone")
    world.wait("Job, pods and ConfigMap gone", lambda: world.job("gone") is None and not world.pods("gone")
               and world.config_map(names.config_map("gone")) is None, timeout=90)  # fmt: skip
    pvc = world.kube.core.read_namespaced_persistent_volume_claim(names.output_pvc("gone"), world.namespace)
    assert pvc.metadata.deletion_timestamp is None


def test_restart_between_job_creation_and_status_converges_without_duplicates(world: World) -> None:
    world.output_volume("crash")
    world.operator.kill()
    try:
        created = world.create(finetunejob("crash", annotations={KWOK_RUN_DURATION: "1h"}))
        # What the operator had done when it died: every child created, no status written yet.
        for obj in workload.desired(Owner.from_body(created), world.operator.settings()):
            world.create_raw(obj)
        job_uid = world.must_job("crash")["metadata"]["uid"]
        assert world.status("crash") == {}
    finally:
        world.operator.start()
    world.wait_phase("crash", "Running")
    jobs = world.kube.batch.list_namespaced_job(world.namespace, label_selector="finetune.io/job-name=crash")
    assert [j.metadata.uid for j in jobs.items] == [job_uid]


def test_queue_name_creates_a_suspended_job_for_kueue(world: World) -> None:
    world.output_volume("queued")
    world.create(finetunejob("queued", runPolicy={"queueName": "a100-queue"}))
    status = world.wait_phase("queued", "Queued")
    job = world.must_job("queued")
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "a100-queue"
    assert condition(status, "Admitted")["status"] == "False"
    assert condition(status, "Admitted")["reason"] == "Queued"


def test_immutable_field_change_is_refused_while_running(world: World) -> None:
    world.output_volume("fixed")
    world.create(finetunejob("fixed", annotations={KWOK_RUN_DURATION: "1h"}))
    world.wait_phase("fixed", "Running")
    with pytest.raises(ApiException) as refused:
        world.patch("fixed", {"spec": {"training": {"learningRate": 0.1}}})
    assert refused.value.status == 422
    assert "immutable" in json.loads(refused.value.body)["message"]


def test_operator_metrics_have_bounded_labels(world: World) -> None:
    world.output_volume("counted")
    world.create(finetunejob("counted", annotations={KWOK_RUN_DURATION: "1h"}))
    world.wait_phase("counted", "Running")
    text = world.wait("transition metrics", lambda: _with_transitions(world.operator.metrics()))
    assert 'finetune_operator_phase_transitions_total{from_phase="Pending",to_phase="Running"}' in text
    assert "finetune_operator_reconcile_duration_seconds_count" in text
    assert "counted" not in text  # no job names in labels


def _with_transitions(text: str) -> str | None:
    return text if "finetune_operator_phase_transitions_total{" in text else None


def test_names_with_dots_get_valid_children(world: World) -> None:
    name = f"1st.run-{uuid.uuid4().hex[:4]}"
    world.output_volume(name)
    world.create(finetunejob(name, annotations={KWOK_RUN_DURATION: "1h"}))
    world.wait_phase(name, "Running")
    assert world.must_job(name)["metadata"]["name"] == names.job(name)
    wait_until(
        "status workload", lambda: world.status(name).get("workload", {}).get("jobName") == names.job(name)
    )


def test_progress_comes_from_the_trainers_metrics_at_most_every_interval(world: World) -> None:
    """The trainer's own metrics server (rank 0's Reporter) on 127.0.0.1, which KWOK makes the pod's IP."""
    world.output_volume("watched")
    annotations = {KWOK_RUN_DURATION: "1h", KWOK_POD_IP: "127.0.0.1"}
    with metrics.Reporter(enabled=True, port=METRICS_PORT, total_steps=1000, logging_steps=1000) as reporter:
        world.create(finetunejob("watched", annotations=annotations))
        world.wait_phase("watched", "Running")
        writes: list[dict[str, Any]] = []
        step, deadline = 0, time.monotonic() + 120
        while len(writes) < 3:
            assert time.monotonic() < deadline, f"only {len(writes)} progress writes: {writes}"
            step += 1
            reporter.step(step, step / 100, 2.0 - step / 1000, 1e-4, 0.5, tokens=step * 512)
            progress = world.status("watched").get("progress")
            # A scrape before the first step finds only totalSteps (the other gauges are NaN until measured).
            if (
                progress
                and "step" in progress
                and (not writes or progress["lastUpdated"] != writes[-1]["lastUpdated"])
            ):
                writes.append(progress)
            time.sleep(0.2)  # the fake trainer's pace: a step every 0.2 s
    assert [w["step"] for w in writes] == sorted({w["step"] for w in writes}), writes
    assert all(w["totalSteps"] == 1000 and w["percent"] == w["step"] // 10 for w in writes)
    assert all(w["learningRate"] == 1e-4 and w["loss"] < 2.0 for w in writes)
    assert all("evalLoss" not in w for w in writes)  # never evaluated: the gauge is NaN, not 0
    stamps = [datetime.fromisoformat(w["lastUpdated"].replace("Z", "+00:00")) for w in writes]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= PROGRESS_INTERVAL_S, (
        f"progress written more often than every {PROGRESS_INTERVAL_S}s: {gaps}"
    )


@pytest.mark.parametrize(
    ("reason", "field", "spec"),
    [
        ("InvalidSpec", "spec.dataset.uri", {"dataset": {"uri": "https://10.0.0.5/d.csv"}}),
        ("DoesNotFit", "spec.resources.gpu.minMemoryGiB", {
            "model": {"preset": "llama-3.1-8b-instruct"}, "method": {"type": "full"},
            "resources": {"gpu": {"count": 1, "minMemoryGiB": 24}},
        }),
    ],
    ids=["ssrf-url", "gpu-fit"],
)  # fmt: skip
def test_spec_only_python_can_refuse_fails_at_once_and_creates_nothing(
    world: World, reason: str, field: str, spec: dict[str, Any]
) -> None:
    """Rules the CRD cannot express (an SSRF check, the GPU-fit estimate): Failed with their reason, no children."""
    world.create(finetunejob("refused", **spec))
    status = world.wait_phase("refused", "Failed")
    failed = condition(status, "Failed")
    assert failed["reason"] == reason and field in failed["message"]
    assert condition(status, "Admitted")["status"] == "False"
    assert world.job("refused") is None and world.config_map(names.config_map("refused")) is None
    if reason == "DoesNotFit":
        assert status["estimate"]["fits"] is False and status["estimate"]["capacityGiB"] == 24


def test_a_stand_by_takes_over_when_the_leader_dies(world: World) -> None:
    """Two replicas, one Lease: the stand-by is alive but not ready, and leads once the leader is gone."""
    stand_by = OperatorProcess(log_dir=world.operator.log_dir / "stand-by")
    stand_by.start(ready=False)
    try:
        assert (stand_by.probe("/healthz"), stand_by.probe("/readyz")) == (200, 503)
        world.operator.kill()
        world.wait("the stand-by to lead", lambda: stand_by.probe("/readyz") == 200, timeout=90)
        world.output_volume("takeover")
        world.create(finetunejob("takeover", annotations={KWOK_RUN_DURATION: "1h"}))
        world.wait_phase("takeover", "Running")
    finally:
        stand_by.stop()
        world.operator.start()  # waits for the Lease the stand-by held to expire


def test_active_deadline_fails_the_job_with_deadline_exceeded(world: World) -> None:
    world.output_volume("late")
    world.create(
        finetunejob("late", annotations={KWOK_RUN_DURATION: "1h"}, runPolicy={"activeDeadlineSeconds": 3})
    )
    status = world.wait_phase("late", "Failed", timeout=90)
    assert condition(status, "Failed")["reason"] == "DeadlineExceeded"
