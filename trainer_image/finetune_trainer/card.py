"""The model card (`README.md`) written with every result, in place of peft's empty template.

Hugging Face's layout: YAML metadata (`base_model`, `library_name`, `license` inherited from the base's own card when
it states one, `pipeline_tag`, tags), then what a reader needs: the base and how it is named, the method and its
settings, the data, the training figures, evaluation before and after, and how to load the result (PEFT, the merged
model, ONNX, vLLM's `--lora-modules`). Only facts the run knows are written; nothing is a placeholder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from finetune_api.evaluation import before_after_table
from finetune_api.job import FineTuneJobSpec
from finetune_api.presets import TaskType

from finetune_trainer import tasks
from finetune_trainer.export import MERGED_DIR, ONNX_DIR
from finetune_trainer.provenance import BaseReference

CARD = "README.md"
PIPELINE_TAGS: dict[TaskType, str] = {
    "causal-lm": "text-generation",
    "sequence-classification": "text-classification",
    "token-classification": "token-classification",
    "seq2seq": "text2text-generation",
    "question-answering": "question-answering",
}
"""task.type → the Hub's pipeline tag."""


def base_license(base_dir: Path) -> str | None:
    """The `license` the base model's own README.md states in its YAML metadata, if any."""
    card = base_dir / CARD
    if not card.is_file():
        return None
    text = card.read_text(errors="replace")
    if not text.startswith("---"):
        return None
    try:
        meta = yaml.safe_load(text.split("---", 2)[1])
    except yaml.YAMLError:
        return None
    found = meta.get("license") if isinstance(meta, dict) else None
    return str(found) if found else None


def _metadata(spec: FineTuneJobSpec, reference: BaseReference, license_: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"base_model": reference.name}
    if spec.method.type != "full":
        meta["library_name"] = "peft"
    if license_:
        meta["license"] = license_
    meta["pipeline_tag"] = PIPELINE_TAGS[spec.task.type]
    meta["tags"] = ["finetune-operator", spec.method.type, spec.task.type]
    return meta


def _method(spec: FineTuneJobSpec) -> list[str]:
    method = spec.method
    lines = [f"- method: `{method.type}`"]
    if method.type != "full":
        lora = method.lora_settings
        targets = ", ".join(spec.lora_targets) if spec.lora_targets is not None else "all-linear"
        lines.append(
            f"- LoRA: r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, rsLoRA={lora.use_rslora}, "
            f"target modules: {targets}"
        )
    if method.quantization is not None:
        quant = method.quantization
        lines.append(
            f"- base quantized to {quant.bits} bits ({quant.quant_type}, double={quant.double_quant})"
        )
    training = spec.training
    length = f"{training.epochs} epoch(s)" if training.epochs is not None else f"{training.max_steps} steps"
    lines.append(
        f"- {length}, learning rate {training.learning_rate} ({training.lr_scheduler}), optimizer"
        f" {training.optimizer}, batch {training.per_device_batch_size} per device ×"
        f" {training.gradient_accumulation_steps} accumulation, max length {training.max_seq_length}, precision"
        f" {training.precision}, seed {training.seed}"
    )
    return lines


def _data(data: dict[str, Any]) -> list[str]:
    dataset = data.get("dataset") or {}
    lines = [f"- dataset: `{dataset.get('uri')}`, {data.get('rows')} rows, digest `{dataset.get('digest')}`"]
    if data.get("shape"):
        lines.append(f"- row shape: {data['shape']} ({data.get('shape_from')})")
    if data.get("truncated"):
        lines.append(f"- {data['truncated']} row(s) cut to {data.get('max_seq_length')} tokens")
    return lines


def _results(metrics: dict[str, Any]) -> list[str]:
    shown = {name: metrics.get(name) for name in ("step", "tokens", "loss", "eval_loss")}
    lines = [
        f"- {name}: {f'{value:.4g}' if isinstance(value, float) else value}"
        for name, value in shown.items()
        if value is not None
    ]
    table = before_after_table(metrics)
    return lines + (["", "```", *table, "```"] if table else [])


def _loading(spec: FineTuneJobSpec, reference: BaseReference, output_dir: Path) -> list[str]:
    auto = tasks.MODEL_CLASSES[spec.task.type]
    revision = f', revision="{reference.revision}"' if reference.revision else ""
    base = reference.name if "://" not in reference.name else f"<the folder {reference.name} was fetched to>"
    if spec.method.type == "full":
        lines = ["```python", f"from transformers import {auto}", f'model = {auto}.from_pretrained("<this folder>")',
                 "```"]  # fmt: skip
    else:
        lines = [
            "With PEFT, on the base named in `adapter_config.json` (a Hugging Face id loads as it is; a pvc://, s3:// "
            "or oci:// base is first fetched to a folder, whose path you pass instead):",
            "",
            "```python",
            "from peft import PeftModel",
            f"from transformers import {auto}",
            f'base = {auto}.from_pretrained("{base}"{revision})',
            'model = PeftModel.from_pretrained(base, "<this folder>")',
            "```",
        ]
    if (output_dir / MERGED_DIR).is_dir():
        lines += [
            "",
            f'Merged into the base (no PEFT needed): `{auto}.from_pretrained("<this folder>/{MERGED_DIR}")`.',
        ]
    if (output_dir / ONNX_DIR).is_dir():
        lines += ["", f'ONNX Runtime: `onnxruntime.InferenceSession("<this folder>/{ONNX_DIR}/model.onnx")`.']
    if spec.task.type == "causal-lm" and spec.method.type != "full":
        lines += [
            "",
            f"vLLM: `vllm serve {base} --enable-lora --lora-modules adapter=<this folder>`.",
        ]
    return lines


def write_card(
    spec: FineTuneJobSpec,
    reference: BaseReference,
    base_dir: Path,
    output_dir: Path,
    metrics: dict[str, Any],
    data: dict[str, Any],
) -> None:
    """Write `output_dir/README.md` (after the adapter or model and the exports, before the manifest)."""
    kind = "model" if spec.method.type == "full" else "adapter"
    sections = [
        f"# {spec.task.type} {kind} of {reference.name}",
        "",
        f"Fine-tuned by finetune-operator from `{reference.name}`"
        + (f" at revision `{reference.revision}`" if reference.revision else "")
        + ". `manifest.json` beside this card lists every file's sha256, the base's weight digests and the data's.",
        "",
        "## Method",
        "",
        *_method(spec),
        "",
        "## Data",
        "",
        *_data(data),
        "",
        "## Results",
        "",
        *_results(metrics),
        "",
        "## How to load",
        "",
        *_loading(spec, reference, output_dir),
    ]
    meta = yaml.safe_dump(_metadata(spec, reference, base_license(base_dir)), sort_keys=False)
    (output_dir / CARD).write_text(f"---\n{meta}---\n\n" + "\n".join(sections) + "\n")
