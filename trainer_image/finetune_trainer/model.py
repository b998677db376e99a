"""Loading the base model with the right head and wrapping it for the method: LoRA, DoRA, QLoRA or full.

Called by the recipe's `_setup_model` with the local directory from `storage.resolve_model`. The head comes from
the task (`tasks.MODEL_CLASSES`); LoRA-family methods wrap the model with peft (`use_dora` for DoRA); QLoRA loads
the frozen base in 4 or 8 bits through bitsandbytes and runs `prepare_model_for_kbit_training` first. Under
DeepSpeed ZeRO-3 the caller must have created `HfDeepSpeedConfig` before this runs, so `from_pretrained` shards the
weights as it loads them; QLoRA then stores the 4-bit weights in the compute dtype (`bnb_4bit_quant_storage`) and
uses no `device_map`, as ZeRO-3 requires. 4-bit weights keep bitsandbytes' portable layout on every CPU. A causal LM
with SDPA attention runs padding-free batches row by row (`varlen`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peft
import torch
import transformers
from finetune_api.job import FineTuneJobSpec

from finetune_trainer import tasks, varlen

DTYPES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32,
}  # fmt: skip
"""Precision names (spec.training.precision, quantization.compute_dtype) → torch dtypes."""


@dataclass(frozen=True)
class Placement:
    """Where and how the model runs in this process."""

    device: torch.device
    dtype: torch.dtype
    """Compute dtype: autocast target, and the storage dtype of a frozen base model."""
    zero3: bool = False
    """DeepSpeed ZeRO-3 shards parameters; no device moves and no device_map."""


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """`auto` is bf16 on GPUs that support it, else fp16 on GPU and fp32 on CPU; other values are taken as is."""
    if precision != "auto":
        return DTYPES[precision]
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_tokenizer(path: Path, trust_remote_code: bool) -> Any:
    """The checkpoint's tokenizer; one without a pad token pads with its end-of-sequence token."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _quantization_config(spec: FineTuneJobSpec, placement: Placement) -> Any:
    quant = spec.method.quantization
    if quant is None:
        return None
    compute = DTYPES[quant.compute_dtype]
    return transformers.BitsAndBytesConfig(
        load_in_4bit=quant.bits == 4,
        load_in_8bit=quant.bits == 8,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_quant_storage=compute if placement.zero3 else torch.uint8,
        # Task heads are new and trained in full (peft's modules_to_save); a 4-bit head could not be.
        llm_int8_skip_modules=list(tasks.HEAD_MODULES),
    )


def head_kwargs(spec: FineTuneJobSpec, tokenizer: Any) -> dict[str, Any]:
    """`from_pretrained` arguments that size a classification head and name its labels."""
    labels = spec.task.labels
    if labels is None:
        return {}
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
        "pad_token_id": tokenizer.pad_token_id,
    }


def load_base(path: Path, spec: FineTuneJobSpec, placement: Placement, tokenizer: Any) -> Any:
    """The pretrained model with the task's head, quantized for QLoRA, on `placement.device` (unless ZeRO-3)."""
    auto_class = getattr(transformers, tasks.MODEL_CLASSES[spec.task.type])
    quantization = _quantization_config(spec, placement)
    adapters = spec.method.type != "full"
    kwargs: dict[str, Any] = {
        # A frozen base can live in the compute dtype; full fine-tuning keeps fp32 master weights.
        "dtype": placement.dtype if adapters else torch.float32,
        "trust_remote_code": spec.model.trust_remote_code,
        **head_kwargs(spec, tokenizer),
    }
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        if not placement.zero3:
            kwargs["device_map"] = {"": placement.device}
    model = auto_class.from_pretrained(path, **kwargs)
    if quantization is None and not placement.zero3:
        model.to(placement.device)
    if quantization is not None:
        _keep_portable_4bit_layout(model)
    if spec.task.type == "causal-lm":
        varlen.use_per_row_sdpa(model)
    return model


def _keep_portable_4bit_layout(model: Any) -> None:
    """Keep every 4-bit weight in bitsandbytes' portable layout, whatever the CPU.

    On a CPU with AVX512-BF16, `Linear4bit` (which asks `has_avx512bf16()` when it is built) repacks its weight into
    a CPU-specific layout at its first forward in eval mode without gradients (evaluation, or a layer whose input
    needs none), and unpacks it again to save. Under ZeRO-3 DeepSpeed swaps the repacked tensor for its shards, so
    the unpacking fails at the first checkpoint; without ZeRO-3 the numbers would still depend on the host. Turning
    the switch off makes the path the same on every CPU (GPUs never take it).
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def lora_config(spec: FineTuneJobSpec) -> peft.LoraConfig:
    """The peft config for lora, qlora and dora; target modules default to the preset's list, else all-linear."""
    lora, targets = spec.method.lora_settings, spec.lora_targets
    return peft.LoraConfig(
        task_type=getattr(peft.TaskType, tasks.PEFT_TASK_TYPES[spec.task.type]),
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        # peft spells "every linear layer" as the bare string.
        target_modules="all-linear" if targets is None else list(targets),
        modules_to_save=lora.modules_to_save,
        use_rslora=lora.use_rslora,
        use_dora=spec.method.type == "dora",
    )


def load_model(path: Path, spec: FineTuneJobSpec, placement: Placement, tokenizer: Any) -> Any:
    """The model ready to train: the base, plus adapters unless the method is `full`."""
    model = load_base(path, spec, placement, tokenizer)
    # from_pretrained returns the model in eval mode: its dropout would stay off, and transformers skips gradient
    # checkpointing in layers that are not training.
    model.train()
    checkpointing = spec.training.gradient_checkpointing
    if spec.method.type == "qlora":
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    elif checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if spec.method.type != "full":
            model.enable_input_require_grads()  # frozen embeddings would otherwise cut the graph
    if spec.method.type == "full":
        model.requires_grad_(True)
        return model
    return peft.get_peft_model(model, lora_config(spec))


def trainable_parameters(model: Any) -> dict[str, torch.nn.Parameter]:
    """Name → parameter for every parameter the optimizer updates."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}
