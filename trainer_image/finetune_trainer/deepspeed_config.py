"""Generating the DeepSpeed config from `spec.training` and `spec.distributed.deepspeed`.

Called by `engine.build_engine` when `distributed.deepspeed` is set. Batch geometry, clipping, precision, the
optimizer under CPU offload and the schedule come from `spec.training` (the API forbids overriding them:
`RESERVED_DEEPSPEED_KEYS`); `zero_optimization` from the ZeRO fields; `overrides` are merged last, recursively, so a
nested block changes only the keys it names. Pure: no I/O.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from finetune_api.training import DeepSpeedSpec, TrainingSpec


def _offload(device: str, pin_memory: bool) -> dict[str, Any]:
    return {"device": device, "pin_memory": pin_memory}


def build_zero_config(deepspeed: DeepSpeedSpec, pin_memory: bool) -> dict[str, Any]:
    """The `zero_optimization` section."""
    zero: dict[str, Any] = {"stage": deepspeed.zero_stage}
    if deepspeed.offload_optimizer == "cpu":
        zero["offload_optimizer"] = _offload("cpu", pin_memory)
    if deepspeed.offload_params == "cpu":
        zero["offload_param"] = _offload("cpu", pin_memory)
    if deepspeed.zero_stage == 3:
        # Saving adapters or a full model needs whole tensors on rank 0, gathered in 16 bits.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return zero


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in: nested dicts are merged key by key, other values replaced."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def build_deepspeed_config(
    training: TrainingSpec, deepspeed: DeepSpeedSpec, world_size: int, dtype: torch.dtype, on_gpu: bool
) -> dict[str, Any]:
    """The full DeepSpeed config for one run."""
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": training.per_device_batch_size,
        "gradient_accumulation_steps": training.gradient_accumulation_steps,
        "train_batch_size": training.per_device_batch_size
        * training.gradient_accumulation_steps
        * world_size,
        "gradient_clipping": training.max_grad_norm,
        "zero_optimization": build_zero_config(deepspeed, pin_memory=on_gpu),
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16},
        "steps_per_print": 2**31 - 1,  # progress is reported by metrics.py, not by DeepSpeed's own printer
        "wall_clock_breakdown": False,
    }
    if deepspeed.offload_optimizer == "cpu":
        # Offloaded optimizer state is stepped on the CPU by DeepSpeed's fused CPU Adam.
        config["optimizer"] = {
            "type": "AdamW",
            "params": {
                "lr": training.learning_rate,
                "weight_decay": training.weight_decay,
                "betas": [0.9, 0.999],
            },
        }
    return merge(config, deepspeed.overrides)
