"""`spec.model` and `spec.method`: which base model is fine-tuned, and how (LoRA, QLoRA, DoRA or full)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from finetune_api.base import ApiModel, Rule
from finetune_api.common import SecretRef, stays_inside
from finetune_api.presets import MethodType, PresetName
from finetune_api.uris import MODEL_SCHEMES, check_uri


class ModelSpec(ApiModel):
    """The base model to fine-tune: a named preset or a URI. Exactly one of `preset` and `uri` is set."""

    preset: PresetName | None = Field(
        default=None,
        description=(
            "Name of a built-in preset. Tiny presets (tiny-llama, tiny-t5, tiny-bert) are built offline with "
            "random weights and run on CPU, for tests and demos; the others are real checkpoints with known default "
            "LoRA target modules and GPU memory needs. Mutually exclusive with `uri`."
        ),
    )
    uri: str | None = Field(
        default=None,
        max_length=2048,
        json_schema_extra={"pattern": "^(hf|pvc|s3|oci)://"},
        description=(
            "Location of a Hugging Face-format checkpoint: hf://org/name[@revision], pvc://claim/path, "
            "s3://bucket/prefix (the folder save_pretrained wrote) or oci://registry/repository[:tag|@sha256:…] (an "
            "ORAS artifact, one layer per file). Mutually exclusive with `preset`."
        ),
    )
    trust_remote_code: bool = Field(
        default=False,
        description=(
            "Allow the checkpoint to run its own Python code when loaded. Only enable for checkpoints you trust; "
            "refused (reason NotAllowed) unless the installation allows it (the chart's trainer.allowTrustRemoteCode)."
        ),
    )
    access_secret_ref: SecretRef | None = Field(
        default=None,
        description=(
            "Secret with credentials to fetch the model: HF_TOKEN for hf://; AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (optionally AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_REGION) for s3://; a "
            "kubernetes.io/dockerconfigjson Secret for oci://."
        ),
    )

    @field_validator("uri")
    @classmethod
    def _uri_scheme(cls, uri: str | None) -> str | None:
        return None if uri is None else check_uri(uri, MODEL_SCHEMES)

    rules = (
        stays_inside("uri", "uri"),
        Rule(
            field="preset",
            message="set exactly one of model.preset and model.uri",
            check=lambda m: (m.preset is None) != (m.uri is None),
            cel="has(self.preset) != has(self.uri)",
        ),
    )


class LoraSpec(ApiModel):
    """Low-rank adapter settings, used by the lora, qlora and dora methods."""

    r: int = Field(
        default=16, ge=1, le=1024, description="Rank of the adapter matrices. Higher fits more, costs more."
    )
    alpha: int = Field(
        default=32,
        ge=1,
        le=4096,
        description="Scaling numerator: the update is scaled by alpha/r (alpha/sqrt(r) with useRslora).",
    )
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout applied to the adapter input.")
    target_modules: list[str] | None = Field(
        default=None,
        max_length=64,
        description=(
            "Names (or name suffixes) of the linear layers to adapt, e.g. [q_proj, v_proj]; `all-linear` adapts "
            "every linear layer but the output head. When unset, the preset's default list is used; a model given "
            "by `uri` then uses all-linear."
        ),
    )
    modules_to_save: list[str] | None = Field(
        default=None,
        max_length=64,
        description="Modules trained in full and saved with the adapter, e.g. a classification head `score`.",
    )
    use_rslora: bool = Field(
        default=False,
        description="Rank-stabilised LoRA: scale by alpha/sqrt(r), which keeps high ranks stable.",
    )

    rules = (
        Rule(
            field="targetModules",
            message="lora.targetModules is empty; list layer names, use [all-linear], or remove it for the "
            "preset's defaults",
            check=lambda lora: lora.target_modules != [],
            cel="!has(self.targetModules) || self.targetModules.size() > 0",
        ),
        Rule(
            field="targetModules",
            message="lora.targetModules all-linear already adapts every linear layer and cannot be combined with "
            "names; use [all-linear] alone or list the names only",
            check=lambda lora: (
                lora.target_modules is None
                or "all-linear" not in lora.target_modules
                or lora.target_modules == ["all-linear"]
            ),
            cel="!has(self.targetModules) || !('all-linear' in self.targetModules) "
            "|| self.targetModules.size() == 1",
        ),
    )


class QuantizationSpec(ApiModel):
    """How the frozen base model is quantized for QLoRA (bitsandbytes)."""

    bits: Literal[4, 8] = Field(default=4, description="Bits per base weight: 4 (QLoRA proper) or 8.")
    quant_type: Literal["nf4", "fp4"] = Field(
        default="nf4",
        description="4-bit data type: nf4 (normal float, best for normally distributed weights) or fp4.",
    )
    double_quant: bool = Field(
        default=True,
        description="Also quantize the quantization constants, saving about 0.4 bits per parameter.",
    )
    compute_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        default="bfloat16", description="Data type the de-quantized weights are computed in."
    )

    rules = (
        Rule(
            field="quantType",
            message="quantType fp4 and nf4 are 4-bit types; with bits 8 leave quantType as nf4",
            check=lambda q: q.bits == 4 or q.quant_type == "nf4",
            cel="self.bits == 4 || self.quantType == 'nf4'",
        ),
    )


class MethodSpec(ApiModel):
    """The fine-tuning method: which weights are trained and how the base model is held in memory."""

    type: MethodType = Field(
        default="lora",
        description=(
            "lora: train low-rank adapters on a frozen base. qlora: the same on a 4/8-bit quantized base (least "
            "memory; needs `quantization`). dora: weight-decomposed LoRA (magnitude + direction), often closer to "
            "full fine-tuning. full: train every weight (most memory; no `lora` block)."
        ),
    )
    lora: LoraSpec | None = Field(
        default=None, description="Adapter settings for lora, qlora and dora; defaults apply when unset."
    )
    quantization: QuantizationSpec | None = Field(
        default=None, description="Base-model quantization; required for qlora, forbidden otherwise."
    )

    @property
    def lora_settings(self) -> LoraSpec:
        """`lora`, or the defaults when it is unset (what lora, qlora and dora train with)."""
        return self.lora if self.lora is not None else LoraSpec()

    rules = (
        Rule(
            field="quantization",
            message="method.quantization is required when method.type is qlora; add `quantization: {bits: 4}`",
            check=lambda m: m.type != "qlora" or m.quantization is not None,
            cel="self.type != 'qlora' || has(self.quantization)",
        ),
        Rule(
            field="quantization",
            message="method.quantization is only for qlora; remove it or set method.type to qlora",
            check=lambda m: m.type == "qlora" or m.quantization is None,
            cel="self.type == 'qlora' || !has(self.quantization)",
        ),
        Rule(
            field="lora",
            message="method.lora does not apply to full fine-tuning; remove it or pick lora, qlora or dora",
            check=lambda m: m.type != "full" or m.lora is None,
            cel="self.type != 'full' || !has(self.lora)",
        ),
    )
