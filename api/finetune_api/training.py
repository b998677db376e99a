"""`spec.training` and `spec.distributed`: the optimisation loop and how it is spread over processes and nodes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from finetune_api.base import ApiModel, Rule

_OBJECT: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_SCALAR: dict[str, Any] = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
}

RESERVED_DEEPSPEED_KEYS: dict[str, dict[str, Any]] = {
    "train_batch_size": _SCALAR,
    "train_micro_batch_size_per_gpu": _SCALAR,
    "gradient_accumulation_steps": _SCALAR,
    "zero_optimization": _OBJECT,
    "gradient_clipping": {"type": "number"},
    "bf16": _OBJECT,
    "fp16": _OBJECT,
    "optimizer": _OBJECT,
    "scheduler": _OBJECT,
}
"""DeepSpeed config keys that spec.training and the deepspeed fields set, with the schema CEL needs to see them.

An override would silently win over the spec (another optimizer, schedule, clipping or precision than the one
written), so the API refuses them."""


class TrainingSpec(ApiModel):
    """Hyperparameters of the training loop. Defaults suit LoRA on a 7B-class model."""

    epochs: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="Passes over the dataset; 1 when neither this nor maxSteps is set.",
    )
    max_steps: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Optimizer steps to run; mutually exclusive with `epochs`. Resumed runs end at exactly this step.",
    )
    learning_rate: float = Field(default=2e-4, gt=0, le=1, description="Peak learning rate.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant-with-warmup", "polynomial"] = Field(
        default="cosine", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(
        default=0.03,
        ge=0,
        le=0.5,
        description="Fraction of all steps spent warming the learning rate up from 0.",
    )
    weight_decay: float = Field(default=0.0, ge=0, le=1, description="AdamW weight decay.")
    optimizer: Literal["adamw", "adamw-8bit", "paged-adamw-8bit", "sgd"] = Field(
        default="adamw",
        description=(
            "Optimizer. The 8-bit variants (bitsandbytes) save optimizer memory; sgd uses momentum 0.9. "
            "DeepSpeed ZeRO (zeroStage ≥ 1) needs adamw."
        ),
    )
    max_grad_norm: float = Field(
        default=1.0, gt=0, le=1000, description="Gradient clipping threshold (L2 norm)."
    )
    per_device_batch_size: int = Field(
        default=4, ge=1, le=4096, description="Examples per process per micro-step."
    )
    gradient_accumulation_steps: int = Field(
        default=1,
        ge=1,
        le=4096,
        description="Micro-steps per optimizer step; global batch = perDeviceBatchSize × accumulation × processes.",
    )
    max_seq_length: int = Field(
        default=1024, ge=8, le=262_144, description="Tokens per example; longer examples are truncated."
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        default="auto",
        description="Training precision. auto: bf16 on GPUs that support it, else fp16 on GPU, fp32 on CPU.",
    )
    gradient_checkpointing: bool = Field(
        default=False,
        description="Recompute activations in the backward pass: less memory, about 30% slower.",
    )
    packing: bool = Field(
        default=False,
        description=(
            "causal-lm only: fill each sequence of up to maxSeqLength tokens with several whole examples (best fit), "
            "so a micro-batch holds more rows. The examples stay apart: positions restart at each one and none "
            "attends to another."
        ),
    )
    batching: Literal["auto", "padding-free", "length-grouped", "padded"] = Field(
        default="auto",
        description=(
            "How a micro-batch's rows are laid out. padding-free (causal-lm): the rows back to back in one sequence, "
            "positions restarting at each, none attending to another, so no compute goes to padding. "
            "length-grouped: rows of similar length batched together, padded to the longest. padded: rows in "
            "random order, padded to the longest. auto: padding-free for causal-lm when the model's attention "
            "keeps the rows apart (checked before training), else length-grouped; padded for other tasks."
        ),
    )
    seed: int = Field(
        default=42, ge=0, le=2**31 - 1, description="Seed for data order, splits and initialisation."
    )
    logging_steps: int = Field(
        default=10, ge=1, description="Report progress and metrics every this many steps."
    )
    eval_steps: int | None = Field(
        default=None, ge=1, description="Evaluate every this many steps (needs dataset.validationSplit > 0)."
    )
    checkpoint_steps: int = Field(
        default=100, ge=1, description="Save a resumable checkpoint every this many steps (and at the end)."
    )

    rules = (
        Rule(
            field="maxSteps",
            message="set at most one of training.epochs and training.maxSteps",
            check=lambda t: t.epochs is None or t.max_steps is None,
            cel="!has(self.epochs) || !has(self.maxSteps)",
        ),
        Rule(
            field="warmupRatio",
            message="training.lrScheduler constant has no warmup; set warmupRatio: 0, or lrScheduler: "
            "constant-with-warmup to warm up",
            check=lambda t: t.lr_scheduler != "constant" or t.warmup_ratio == 0,
            cel="self.lrScheduler != 'constant' || self.warmupRatio == 0.0",
        ),
        Rule(
            field="batching",
            message="training.packing lays packed rows out padding-free; set training.batching auto or "
            "padding-free, or packing false",
            check=lambda t: not t.packing or t.batching in ("auto", "padding-free"),
            cel="!self.packing || self.batching == 'auto' || self.batching == 'padding-free'",
        ),
    )


class DeepSpeedSpec(ApiModel):
    """DeepSpeed ZeRO settings. The operator generates the DeepSpeed config; `overrides` are merged into it."""

    zero_stage: int = Field(
        default=2,
        ge=0,
        le=3,
        description=(
            "ZeRO stage: 0 off, 1 shards optimizer state, 2 also gradients, 3 also parameters (needed when the "
            "model does not fit on one GPU)."
        ),
    )
    offload_optimizer: Literal["none", "cpu"] = Field(
        default="none",
        description="Keep optimizer state in CPU memory (stage ≥ 1). Saves GPU memory, slower.",
    )
    offload_params: Literal["none", "cpu"] = Field(
        default="none", description="Keep parameters in CPU memory between uses (stage 3 only)."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        # The reserved keys are declared (any value) so that CEL can see them; everything else is kept as given.
        json_schema_extra={
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                key: {
                    **schema,
                    "description": "Reserved: set by spec.training and the deepspeed fields, not allowed here.",
                }
                for key, schema in RESERVED_DEEPSPEED_KEYS.items()
            },
        },
        description=(
            "Extra DeepSpeed config keys merged over the generated config, e.g. {communication_data_type: fp32}. "
            "Batch sizes, zero_optimization, optimizer, scheduler, gradient_clipping, bf16 and fp16 come from "
            "spec.training and the fields above and may not be overridden here."
        ),
    )

    rules = (
        Rule(
            field="offloadParams",
            message="deepspeed.offloadParams cpu needs zeroStage 3",
            check=lambda d: d.offload_params == "none" or d.zero_stage == 3,
            cel="self.offloadParams == 'none' || self.zeroStage == 3",
        ),
        Rule(
            field="offloadOptimizer",
            message="deepspeed.offloadOptimizer cpu needs zeroStage 1, 2 or 3",
            check=lambda d: d.offload_optimizer == "none" or d.zero_stage >= 1,
            cel="self.offloadOptimizer == 'none' || self.zeroStage >= 1",
        ),
        Rule(
            field="overrides",
            message=(
                "deepspeed.overrides may not set "
                + ", ".join(RESERVED_DEEPSPEED_KEYS)
                + "; use spec.training and the deepspeed fields instead"
            ),
            check=lambda d: not set(d.overrides) & set(RESERVED_DEEPSPEED_KEYS),
            cel="!has(self.overrides) || !("
            + " || ".join(f"has(self.overrides.{k})" for k in RESERVED_DEEPSPEED_KEYS)
            + ")",
        ),
    )


class DistributedSpec(ApiModel):
    """How many nodes and processes train together."""

    nodes: int = Field(
        default=1, ge=1, le=256, description="Number of nodes (pods); more than 1 trains multi-node."
    )
    processes_per_node: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Training processes per node, at most the GPUs per node when it has GPUs (resources.gpu.count; "
        "1 when unset for a real preset or a model URI). Defaults to the GPUs per node, or 1 on CPU.",
    )
    deepspeed: DeepSpeedSpec | None = Field(
        default=None, description="Enable DeepSpeed ZeRO. When unset, plain data parallelism (DDP) is used."
    )
