"""FineTuneJobs trained in real pods on kind: the README's tiny LoRA job, a 2-node ZeRO-2 job and a bad dataset."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.e2e.kindkit import Watch, apply, condition, copy_volume, events, logs, pods, tiny_lora
from tests.integration.helpers import Kube

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Long enough that the operator (polling trainer metrics every 2 s on kind) reports progress several times even on
# a fast machine (150 steps took about 4 s here); a slower machine only sees more reports.
STEPS = 1000


def test_tiny_lora_trains_to_succeeded_and_its_adapter_loads_with_peft(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    job, data = tiny_lora("tiny-lora", training={"maxSteps": STEPS, "loggingSteps": 1})
    apply(kube, namespace, job, data)
    watch = Watch(kube, namespace, "tiny-lora")

    done = watch.until_phase("Succeeded", "Failed")

    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert len(watch.steps) >= 2, f"progress seen while Running: {watch.steps}"
    assert watch.steps == sorted(watch.steps), watch.steps
    assert status["progress"]["step"] == STEPS
    result = status["result"]
    output = copy_volume(kube, namespace, status["workload"]["pvcName"], tmp_path / "output")
    adapter = output / result["artifactUri"].removeprefix("/output").lstrip("/")
    manifest = adapter / "manifest.json"
    assert result["digest"] == "sha256:" + hashlib.sha256(manifest.read_bytes()).hexdigest()
    # The adapter loads with PEFT onto the preset's base model, built on the host the way the trainer builds it.
    from finetune_trainer.tiny import ensure_tiny_preset
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(ensure_tiny_preset("tiny://llama", tmp_path / "cache"))
    model = PeftModel.from_pretrained(base, adapter)
    assert any("lora_B" in name for name, _ in model.named_parameters()), "no LoRA weights in the adapter"
    weights = adapter / "adapter_model.safetensors"
    listed = json.loads(manifest.read_text())["digests"]["adapter_model.safetensors"]
    assert listed.endswith(hashlib.sha256(weights.read_bytes()).hexdigest()), listed


def test_two_node_zero2_job_rendezvouses_and_succeeds(kube: Kube, namespace: str) -> None:
    job, data = tiny_lora(
        "two-nodes",
        training={"maxSteps": 20},
        distributed={"nodes": 2, "deepspeed": {"zeroStage": 2}},
    )
    apply(kube, namespace, job, data)

    done = Watch(kube, namespace, "two-nodes").until_phase("Succeeded", "Failed")

    assert done["status"]["phase"] == "Succeeded", done["status"]
    ranks = pods(kube, namespace, "two-nodes")
    assert len(ranks) == 2, [p.metadata.name for p in ranks]
    assert all(pod.status.phase == "Succeeded" for pod in ranks), [
        (p.metadata.name, p.status.phase) for p in ranks
    ]
    # Rank 0 reports the world it trained in: both pods' processes joined one process group.
    starts = [
        e for pod in ranks for e in events(logs(kube, namespace, pod.metadata.name)) if e["event"] == "start"
    ]
    assert [e["world_size"] for e in starts] == [2], starts


def test_bad_dataset_fails_with_the_trainers_reason(kube: Kube, namespace: str) -> None:
    job, data = tiny_lora("bad-data")
    data[0]["data"]["train.jsonl"] = '{"question": "rows without a known shape"}\n'
    apply(kube, namespace, job, data)

    done = Watch(kube, namespace, "bad-data").until_phase("Succeeded", "Failed")

    assert done["status"]["phase"] == "Failed", done["status"]
    failed = condition(done, "Failed")
    assert failed is not None and failed["status"] == "True", done["status"]
    assert failed["reason"] == "DataError", failed
    assert failed["message"].startswith("line 1: "), (
        failed
    )  # where in the file, as `finetune validate --data` says
