"""Extra output formats (`output.formats`): the merged model and its ONNX graph, each checked before it is published.

The recipe's `save` runs `reference` on every rank (a collective under ZeRO-3): the trained model's logits on a
few rows (`probe_batch`). Then `output.save_artifacts` calls `publish` on rank 0, after the adapter (or model) is
saved and before `manifest.json`. Every format is written into a hidden staging folder, loaded back as a server
would load it (transformers for merged/, ONNX Runtime for onnx/), run on the same rows, and its logits compared with
the trained model's (`compare`; tolerances in `TOLERANCES`). Only when every check passes are the folders moved into
place; otherwise `ExportError` says which format disagreed and by how much, and nothing is published (manifest.json,
written last, is not written, so the result is not complete).

The ONNX graph is written by `torch.onnx.export` (its dynamo exporter, through onnxscript) rather than optimum:
no optimum release supports transformers 5 (optimum-onnx 0.1.0 requires transformers < 4.58).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import peft
import torch
import transformers
from finetune_api.job import FineTuneJobSpec
from finetune_api.output import ExportFormat
from finetune_api.presets import TaskType
from finetune_api.trainer import TrainerConfig

from finetune_trainer import model as model_lib
from finetune_trainer import tasks
from finetune_trainer.sft import Features

MERGED_DIR = "merged"
ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"
STAGING = ".export-staging"
"""Hidden, so `output.digests` skips it; removed whether the exports pass or not."""

PROBE_ROWS = 4
PROBE_TOKENS = 32
"""The check runs the first `PROBE_ROWS` held-out rows (training rows when none are held out), each cut to
`PROBE_TOKENS` tokens: enough to exercise every layer, small enough that the logits of a large vocabulary fit."""

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
"""The inputs an exported model takes (the ones of these the tokenizer produced)."""

OUTPUTS: dict[str, tuple[str, ...]] = {"question-answering": ("start_logits", "end_logits")}
"""task.type → the outputs compared (and the ONNX graph's outputs); `logits` for the other tasks."""

TOLERANCES: dict[str, float] = {"fp32": 1e-3, "half": 5e-2, "quantized": 0.25}
"""How far an export's logits may be from the trained model's, relative to the largest trained logit (at least 1),
by how the trained model computed them: in fp32; in bf16/fp16 (about 3 significant digits); or on a 4/8-bit base,
whose rounding the merged model (full-precision base plus the adapter) does not share. A broken export (wrong,
missing or damaged weights) is off by the order of the logits themselves."""

EXACT = 1e-4
"""ONNX against the merged (or full) model it was exported from: both fp32 on CPU, so only kernels differ."""


class ExportError(Exception):
    """An export could not be written, or does not reproduce the trained model; nothing was published."""


@dataclass(frozen=True)
class Reference:
    """The trained model's outputs on the probe rows, which every export must reproduce."""

    batch: dict[str, Any]
    """The rows as the model takes them (tensors on CPU, and `use_cache` for causal-lm)."""
    outputs: dict[str, torch.Tensor]
    """Output name → fp32 tensor on CPU (`OUTPUTS`)."""
    precision: str
    """A key of `TOLERANCES`."""


@dataclass(frozen=True)
class Check:
    """One comparison of an export's outputs with a reference, as manifest.json records it."""

    format: str
    against: str
    max_abs_diff: float
    scale: float
    """max(1, largest absolute reference value): the tolerance is relative to it."""
    tolerance: float

    @property
    def ok(self) -> bool:
        """Within tolerance (and finite)."""
        return self.max_abs_diff <= self.tolerance * self.scale

    def describe(self) -> str:
        """E.g. `onnx vs trained: max |Δlogit| 0.31 > 0.001 x 4.2` (the tolerance times the scale)."""
        sign = "≤" if self.ok else ">"
        return (
            f"{self.format} vs {self.against}: max |Δlogit| {self.max_abs_diff:.3g} {sign} "
            f"{self.tolerance:g} x {self.scale:.3g}"
        )


def precision_of(spec: FineTuneJobSpec, dtype: torch.dtype) -> str:
    """The `TOLERANCES` key of a run that computed in `dtype`."""
    if spec.method.quantization is not None:
        return "quantized"
    return "fp32" if dtype == torch.float32 else "half"


def probe_batch(task: str, examples: list[Features], pad_id: int) -> dict[str, Any]:
    """The first `PROBE_ROWS` of `examples` (repeated when fewer: the ONNX batch axis must be traced at size > 1),
    cut to `PROBE_TOKENS` and right-padded; seq2seq keeps its labels, from which the model builds decoder inputs."""
    keep = (*INPUTS, "labels") if task == "seq2seq" else INPUTS
    rows = (examples * PROBE_ROWS)[:PROBE_ROWS]
    cut = [{k: list(v)[:PROBE_TOKENS] for k, v in row.items() if k in keep} for row in rows]
    batch: dict[str, Any] = tasks.collate(cut, pad_id)
    return {**batch, "use_cache": False} if task == "causal-lm" else batch


def outputs_of(task: str, outputs: Any) -> dict[str, torch.Tensor]:
    """The compared outputs of a forward pass, as fp32 on CPU."""
    return {name: outputs[name].detach().float().cpu() for name in OUTPUTS.get(task, ("logits",))}


def compare(
    fmt: str, against: str, got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], tolerance: float
) -> Check:
    """The largest difference between `got` and `want` over all outputs (infinite when shapes differ or a value is
    not finite)."""
    diff = 0.0
    for name, expected in want.items():
        actual = got[name]
        same = actual.shape == expected.shape and bool(torch.isfinite(actual).all())
        diff = max(diff, float((actual - expected).abs().max()) if same else float("inf"))
    scale = max([1.0, *(float(t.abs().max()) for t in want.values())])
    return Check(fmt, against, diff, scale, tolerance)


@contextlib.contextmanager
def _unsharded() -> Iterator[None]:
    """Load models whole on this process even in a ZeRO-3 run: while the run's `HfDeepSpeedConfig` is registered,
    `from_pretrained` would shard them across ranks, a collective the other ranks (waiting at a barrier) never join.
    transformers keeps that registration in a module global only; it is restored afterwards."""
    from transformers.integrations import deepspeed as hf_deepspeed

    held = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = held


def _auto_class(task: TaskType) -> Any:
    return getattr(transformers, tasks.MODEL_CLASSES[task])


def _load(spec: FineTuneJobSpec, folder: Path, **kwargs: Any) -> Any:
    loaded = _auto_class(spec.task.type).from_pretrained(
        folder, dtype=torch.float32, trust_remote_code=spec.model.trust_remote_code, **kwargs
    )
    return loaded.eval()


def merge(spec: FineTuneJobSpec, base_dir: Path, adapter_dir: Path, tokenizer: Any) -> Any:
    """The unquantized base with the saved adapter merged in, in fp32 (QLoRA merges into full-precision weights)."""
    base = _load(spec, base_dir, **model_lib.head_kwargs(spec, tokenizer))
    return peft.PeftModel.from_pretrained(base, adapter_dir).merge_and_unload().eval()


def run_torch(task: str, model: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """`model`'s compared outputs on `batch` (CPU, no gradients)."""
    with torch.no_grad():
        return outputs_of(task, model(**batch))


class _Graph(torch.nn.Module):  # type: ignore[misc]  # torch is Any to mypy here (follow_imports = skip)
    """The model as the ONNX graph sees it: named token inputs in, a tuple of the task's outputs out."""

    def __init__(self, model: Any, task: str, inputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.task, self.inputs = model, task, inputs

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        extra = {"use_cache": False} if self.task == "causal-lm" else {}
        outputs = self.model(**dict(zip(self.inputs, args, strict=True)), **extra)
        return tuple(outputs[name] for name in OUTPUTS.get(self.task, ("logits",)))


def onnx_inputs(batch: dict[str, Any]) -> tuple[str, ...]:
    """The inputs of `batch` the ONNX graph takes, in its order."""
    return tuple(name for name in INPUTS if name in batch)


def export_onnx(task: str, model: Any, batch: dict[str, Any], dest: Path) -> None:
    """`model` as `dest/model.onnx` (+ `model.onnx.data`, the weights), with dynamic batch and sequence axes."""
    names = onnx_inputs(batch)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in names}
    dest.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(
            _Graph(model, task, names).eval(), tuple(batch[n] for n in names), str(dest / ONNX_FILE),
            input_names=list(names), output_names=list(OUTPUTS.get(task, ("logits",))),
            dynamic_shapes={"args": tuple(dynamic[n] for n in names)}, dynamo=True, external_data=True,
        )  # fmt: skip
    except Exception as exc:
        raise ExportError(f"output.formats onnx: torch.onnx.export failed on this model: {exc}") from exc


def run_onnx(task: str, folder: Path, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The outputs ONNX Runtime (CPU) computes from `folder/model.onnx` on `batch`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    feed = {name: batch[name].numpy() for name in onnx_inputs(batch)}
    results = session.run(list(OUTPUTS.get(task, ("logits",))), feed)
    return {
        name: torch.from_numpy(r).float()
        for name, r in zip(OUTPUTS.get(task, ("logits",)), results, strict=True)
    }


def _write(
    cfg: TrainerConfig, base_dir: Path, staging: Path, tokenizer: Any, reference: Reference
) -> list[Check]:
    """Write and check every requested format into `staging`; returns the checks (all passed)."""
    spec, output_dir = cfg.spec, Path(cfg.paths.output_dir)
    task, formats = spec.task.type, spec.output.export_formats()
    tolerance, checks = TOLERANCES[reference.precision], list[Check]()
    if spec.method.type == "full":
        source = _load(spec, output_dir)  # the saved model, as a server loads it
    else:
        source = merge(spec, base_dir, output_dir, tokenizer)
    if "merged" in formats:
        source.save_pretrained(staging / MERGED_DIR)
        tokenizer.save_pretrained(staging / MERGED_DIR)
        source = _load(spec, staging / MERGED_DIR)  # check what was written, not what is in memory
        checks.append(compare("merged", "trained", run_torch(task, source, reference.batch), reference.outputs,
                              tolerance))  # fmt: skip
    if "onnx" in formats:
        folder = staging / ONNX_DIR
        export_onnx(task, source, reference.batch, folder)
        source.config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        got = run_onnx(task, folder, reference.batch)
        checks.append(compare("onnx", "trained", got, reference.outputs, tolerance))
        against = "merged" if spec.method.type != "full" else "model"
        checks.append(compare("onnx", against, got, run_torch(task, source, reference.batch), EXACT))
    return checks


def _raise_on_failure(checks: list[Check]) -> None:
    failed = [c for c in checks if not c.ok]
    if failed:
        raise ExportError(
            "output.formats: the exported model does not reproduce the trained model's outputs on the same "
            f"rows ({'; '.join(c.describe() for c in failed)}); nothing was published"
        )


def publish(
    cfg: TrainerConfig, base_dir: Path, tokenizer: Any, reference: Reference | None
) -> dict[str, Any]:
    """Rank 0: write, check and publish every format of `output.formats` (and `mergeAdapter`) into the output
    folder. Returns manifest.json's `exports`: format → its folder and its checks ({} when none is asked for)."""
    formats: tuple[ExportFormat, ...] = cfg.spec.output.export_formats()
    if not formats:
        return {}
    if reference is None:
        raise ValueError("publish needs the trained model's reference outputs when output.formats is set")
    output_dir = Path(cfg.paths.output_dir)
    staging = output_dir / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with _unsharded():
            checks = _write(cfg, base_dir, staging, tokenizer, reference)
        _raise_on_failure(checks)
        for fmt in formats:
            shutil.rmtree(output_dir / fmt, ignore_errors=True)  # a retried run's earlier export
            (staging / fmt).replace(output_dir / fmt)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        fmt: {
            "path": fmt,
            "precision": reference.precision,
            "checks": [{**asdict(c), "ok": c.ok} for c in checks if c.format == fmt],
        }
        for fmt in formats
    }
