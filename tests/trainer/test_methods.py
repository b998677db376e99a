"""causal-lm on tiny-llama with every method: the loss falls, and what was saved loads back and differs from the base.

Losses are pinned where they are deterministic (the first step depends only on the seed, the preset and the data)
and bounded where they depend on the optimiser's path (the last step).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import finetune_api as api
import peft
import pytest
import torch
import transformers
from finetune_trainer import engine
from finetune_trainer import model as model_lib
from finetune_trainer.distributed import World

from tests.invalid_specs import merge, minimal_job
from tests.trainer import avx512bf16
from tests.trainer.trainerkit import INSTRUCTIONS, LLAMA, Run, make_config

FIRST_LOSS = 6.228  # ≈ ln(512): an untrained model is uniform over the 512-token vocabulary


def _inputs() -> dict[str, torch.Tensor]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(LLAMA)
    return dict(tokenizer("What is the capital of France?", return_tensors="pt"))


@pytest.mark.parametrize(
    ("method", "lr", "drop"),
    [
        ({"type": "lora", "lora": {"targetModules": ["all-linear"]}}, 0.02, 0.3),
        ({"type": "dora"}, 0.02, 0.4),
        ({"type": "qlora", "quantization": {"bits": 4, "computeDtype": "float32"}}, 0.02, 0.2),
    ],
    ids=["lora", "dora", "qlora"],
)
def test_adapter_methods_learn_and_load_back(
    train: Callable[..., Run], method: dict[str, object], lr: float, drop: float
) -> None:
    run = train(
        {"model": {"preset": "tiny-llama"}, "method": method, "training": {"learningRate": lr}}, INSTRUCTIONS
    )

    assert run.rc == 0, run.summary
    losses = run.losses
    assert sorted(losses) == list(range(1, 21))
    assert losses[1] == pytest.approx(FIRST_LOSS, abs=0.01)
    assert losses[20] < losses[1] - drop
    assert {"adapter_model.safetensors", "adapter_config.json", "manifest.json"} <= {
        p.name for p in run.output.iterdir()
    }
    config = json.loads((run.output / "adapter_config.json").read_text())
    assert config["use_dora"] is (method["type"] == "dora")

    inputs = _inputs()
    model = peft.PeftModel.from_pretrained(
        transformers.AutoModelForCausalLM.from_pretrained(LLAMA), run.output
    )
    with torch.no_grad():
        adapted = model(**inputs).logits
        with model.disable_adapter():
            base = model(**inputs).logits
        merged = model.merge_and_unload()
        assert torch.allclose(merged(**inputs).logits, adapted, atol=1e-4)
    assert not torch.allclose(adapted, base, atol=1e-3)
    assert (
        merged.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False).shape[1]
        == inputs["input_ids"].shape[1] + 4
    )


def test_qlora_trains_adapters_on_a_4bit_base(tmp_path: Path, train: Callable[..., Run]) -> None:
    import bitsandbytes as bnb

    train({"model": {"preset": "tiny-llama"}, "training": {"maxSteps": 1}}, INSTRUCTIONS)  # builds the preset
    cfg = make_config(
        tmp_path,
        {"model": {"preset": "tiny-llama"}, "method": {"type": "qlora", "quantization": {"bits": 4}}},
        rows=None,
    )
    tokenizer = model_lib.load_tokenizer(LLAMA, trust_remote_code=False)
    placement = model_lib.Placement(torch.device("cpu"), torch.float32)
    net = model_lib.load_model(LLAMA, cfg.spec, placement, tokenizer)

    quantized = [m for m in net.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == 2 * 7  # every linear layer of both blocks; LoRA wraps q/k/v/o
    assert quantized[0].weight.quant_type == "nf4"
    assert all("lora_" in name for name, p in net.named_parameters() if p.requires_grad)


def test_qlora_takes_the_same_path_on_a_cpu_with_avx512bf16(
    train: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    """bitsandbytes repacks 4-bit weights for AVX512-BF16 CPUs unless told not to (issue 7); evaluation included."""
    spec = {"model": {"preset": "tiny-llama"}, "method": {"type": "qlora", "quantization": {"bits": 4}},
            "dataset": {"validationSplit": 0.25}, "training": {"maxSteps": 6, "evalSteps": 3}}  # fmt: skip
    portable = train(spec, INSTRUCTIONS * 2, sub="portable")
    avx512bf16.claim_avx512bf16(monkeypatch.setattr)
    claimed = train(spec, INSTRUCTIONS * 2, sub="avx512bf16")

    assert claimed.rc == 0, claimed.summary
    assert claimed.losses == portable.losses
    assert claimed.summary["metrics"]["eval_loss"] == portable.summary["metrics"]["eval_loss"]


def test_full_fine_tuning_saves_a_whole_model(train: Callable[..., Run]) -> None:
    run = train({"model": {"preset": "tiny-llama"}, "method": {"type": "full"}, "training": {"learningRate": 0.002}},
                INSTRUCTIONS)  # fmt: skip

    assert run.rc == 0, run.summary
    assert run.losses[1] == pytest.approx(FIRST_LOSS, abs=0.01)
    assert run.losses[20] < 4.0
    tuned = transformers.AutoModelForCausalLM.from_pretrained(run.output)
    base = transformers.AutoModelForCausalLM.from_pretrained(LLAMA)
    inputs = _inputs()
    with torch.no_grad():
        assert not torch.allclose(tuned(**inputs).logits, base(**inputs).logits, atol=1e-2)
    manifest = json.loads((run.output / "manifest.json").read_text())
    assert manifest["artifacts"]["kind"] == "model"
    assert manifest["method"] == {"type": "full"}


def test_merge_adapter_writes_a_servable_model(train: Callable[..., Run]) -> None:
    run = train({"model": {"preset": "tiny-llama"}, "output": {"mergeAdapter": True}}, INSTRUCTIONS)

    assert run.rc == 0, run.summary
    merged = transformers.AutoModelForCausalLM.from_pretrained(run.output / "merged")
    adapted = peft.PeftModel.from_pretrained(
        transformers.AutoModelForCausalLM.from_pretrained(LLAMA), run.output
    )
    inputs = _inputs()
    with torch.no_grad():
        assert torch.allclose(merged(**inputs).logits, adapted(**inputs).logits, atol=1e-4)


def test_manifest_and_termination_message_carry_digests(train: Callable[..., Run]) -> None:
    run = train({"model": {"preset": "tiny-llama"}, "training": {"maxSteps": 4}}, INSTRUCTIONS)

    assert run.summary["status"] == "Succeeded"
    assert run.summary["metrics"]["step"] == 4
    assert run.summary["metrics"]["loss"] == pytest.approx(run.losses[4])
    weights = run.output / "adapter_model.safetensors"
    assert (
        run.summary["digests"]["adapter_model.safetensors"]
        == hashlib.sha256(weights.read_bytes()).hexdigest()
    )
    manifest = json.loads((run.output / "manifest.json").read_text())
    assert manifest["digests"] == run.summary["digests"]
    assert manifest["base_model"]["preset"] == "tiny-llama"
    assert manifest["hyperparameters"]["maxSteps"] == 4
    assert not any(name.startswith("checkpoints/") for name in manifest["digests"])


@pytest.mark.parametrize(
    "spec",
    [
        {"method": {"type": "qlora", "quantization": {"bits": 8}}},
        {"method": {"type": "qlora", "quantization": {"bits": 4}}, "training": {"precision": "bf16"}},
        {"training": {"precision": "bf16"}},
        {"training": {"precision": "fp16"}},
        {"training": {"optimizer": "adamw-8bit"}},
        {"training": {"optimizer": "paged-adamw-8bit"}},
    ],
    ids=[
        "qlora-8bit",
        "qlora-bf16-compute",
        "lora-bf16-autocast",
        "lora-fp16-scaled",
        "adamw-8bit",
        "paged-adamw-8bit",
    ],
)
def test_other_quantizations_and_precisions_train(train: Callable[..., Run], spec: dict[str, Any]) -> None:
    run = train({"model": {"preset": "tiny-llama"}, **spec}, INSTRUCTIONS)

    assert run.rc == 0, run.summary
    assert run.losses[1] == pytest.approx(FIRST_LOSS, abs=0.01)
    assert run.losses[20] < run.losses[1] - 0.2


def test_fp16_scales_the_loss_on_cpu_too() -> None:
    spec = api.parse(merge(minimal_job(), {"spec": {"training": {"precision": "fp16"}}})).spec
    cpu = torch.device("cpu")
    placement = model_lib.Placement(cpu, model_lib.resolve_precision(spec.training.precision, cpu))

    built = engine.TorchEngine(torch.nn.Linear(4, 4), spec, placement, World(0, 0, 1), total_steps=10)

    assert built.scaler.is_enabled()  # the default (CUDA) scaler would disable itself here


@pytest.mark.parametrize(
    ("lora", "targets"),
    [
        (None, {"q_proj", "k_proj", "v_proj", "o_proj"}),  # tiny-llama's preset list
        ({"targetModules": ["all-linear"]}, "all-linear"),
        ({"targetModules": ["q_proj"], "r": 4}, {"q_proj"}),
    ],
)
def test_lora_config_takes_the_api_s_effective_settings(lora: dict[str, Any] | None, targets: Any) -> None:
    """The adapter settings come from the API (`MethodSpec.lora_settings`, `FineTuneJobSpec.lora_targets`)."""
    method = {"method": {"type": "lora", **({"lora": lora} if lora else {})}}
    spec = api.parse(merge(minimal_job(), {"spec": method})).spec
    config = model_lib.lora_config(spec)
    defaults = api.model.LoraSpec()
    assert config.target_modules == targets
    assert (config.r, config.lora_alpha, config.lora_dropout) == (
        (lora or {}).get("r", defaults.r),
        defaults.alpha,
        defaults.dropout,
    )
