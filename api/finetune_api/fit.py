"""The GPU-fit verdict: whether a FineTuneJob's estimated peak (`memory.py`) fits its GPUs, and the cheapest fix.

A GPU's capacity is the larger of `resources.gpu.minMemoryGiB` and the memory of `resources.gpu.product`
(`gpus.py`): the pods only land on nodes that have both. A job that names neither gets an estimate but no verdict.

When the estimate does not fit, each fix is tried alone on the spec as written, in order of what it costs, and the
first that fits is named: gradient checkpointing (slower steps, same result), QLoRA (a 4-bit base), ZeRO-3 (shards
everything over the GPUs the job already has), CPU offload of the optimizer state (slower steps), more GPUs per
node then more nodes (with ZeRO-3), a smaller micro-batch (the same global batch through more accumulation). When
no single change fits, checkpointing and QLoRA together are tried, then with each of the last three on top.
`finetune validate` and the operator refuse such a job with one line naming the capacity field; the operator's
reason is `DoesNotFit`.

Jobs on CPU, and jobs whose model is a `uri`, get no estimate. A uri's shape is unknown: a declared parameter count
would give its weights and optimizer state but not its activations (hidden size, layers, vocabulary), which
dominate at long sequences, so the API has no such field rather than a verdict that could refuse a job that fits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from finetune_api import memory
from finetune_api.gpus import product_memory_gib
from finetune_api.presets import PRESETS

if TYPE_CHECKING:
    from finetune_api.job import FineTuneJobSpec

REASON = "DoesNotFit"
"""The Failed condition's reason for a job whose estimate exceeds its GPUs' memory."""
MAX_GPUS_PER_NODE = 16
MAX_NODES = 256
"""The most `resources.gpu.count` and `distributed.nodes` allow, which bounds the "more GPUs" fix."""


@dataclass(frozen=True)
class Verdict:
    """The estimate of a job, and what it is checked against."""

    estimate: memory.Estimate
    capacity_gib: float | None
    capacity_field: str | None
    """`resources.gpu.minMemoryGiB` or `resources.gpu.product`: where the capacity came from."""
    fix: str | None = None
    """The cheapest change that makes it fit, when it does not."""

    @property
    def fits(self) -> bool | None:
        """Whether the estimate fits; None without a known capacity."""
        return None if self.capacity_gib is None else self.estimate.gib <= self.capacity_gib

    def problem(self) -> str | None:
        """One line naming the field and the fix, when it does not fit."""
        if self.fits is not False:
            return None
        return (
            f"spec.{self.capacity_field}: the job needs about {self.estimate.gib:.1f} GiB per GPU "
            f"({self.estimate.breakdown()} GiB) but one GPU has {self.capacity_gib:g} GiB; {self.fix}"
        )

    def status(self) -> dict[str, Any]:
        """`status.estimate` (camelCase)."""
        found: dict[str, Any] = {"gpuMemoryGiB": round(self.estimate.gib, 1)}
        if self.capacity_gib is not None:
            found.update(capacityGiB=round(self.capacity_gib, 1), fits=self.fits)
        return found


def _capacity(spec: FineTuneJobSpec) -> tuple[float | None, str | None]:
    gpu = spec.resources.gpu
    known = [
        (gib, field)
        for gib, field in (
            (gpu.min_memory_gib if gpu else None, "resources.gpu.minMemoryGiB"),
            (product_memory_gib(gpu.product if gpu else None), "resources.gpu.product"),
        )
        if gib is not None
    ]
    return max(known, key=lambda known_gib: known_gib[0]) if known else (None, None)


Change = tuple[str, memory.Layout]
"""What to change in the spec, and the layout that gives."""


def _adamw(layout: memory.Layout) -> str:
    return "" if layout.optimizer == "adamw" else " and training.optimizer: adamw"


CHECKPOINTING = "set training.gradientCheckpointing: true"
QLORA = "set method.type: qlora with quantization: {bits: 4}"


def _checkpointing(layout: memory.Layout) -> memory.Layout:
    return replace(layout, checkpointing=True)


def _qlora(layout: memory.Layout) -> memory.Layout:
    return (
        layout
        if layout.method == "qlora"
        else replace(layout, method="qlora", quant_bits=4, double_quant=True)
    )


def _steps(layout: memory.Layout) -> Iterator[Change]:
    """The single changes that need no more GPUs, cheapest first."""
    if not layout.checkpointing:
        yield CHECKPOINTING, _checkpointing(layout)
    if layout.method != "qlora":
        yield QLORA, _qlora(layout)
    if layout.ranks > 1 and layout.zero_stage != 3:
        zero3 = replace(layout, zero_stage=3, optimizer="adamw")
        yield f"set distributed.deepspeed.zeroStage: 3{_adamw(layout)}", zero3
    if not layout.offload_optimizer:
        stage = layout.zero_stage or 2
        offload = replace(layout, zero_stage=stage, offload_optimizer=True, optimizer="adamw")
        yield (
            f"set distributed.deepspeed.offloadOptimizer: cpu with zeroStage {stage}{_adamw(layout)}",
            offload,
        )


def _scaling(layout: memory.Layout) -> Iterator[Change]:
    """More GPUs per node, then more nodes (with ZeRO-3), then smaller micro-batches."""
    zero3 = replace(layout, zero_stage=3, optimizer="adamw")
    with_zero3 = "" if layout.zero_stage == 3 else f" with distributed.deepspeed.zeroStage: 3{_adamw(layout)}"
    for count in range(layout.gpus_per_node + 1, MAX_GPUS_PER_NODE + 1):
        more = replace(zero3, gpus_per_node=count, processes_per_node=count)
        yield f"raise resources.gpu.count to {count}{with_zero3}", more
    for nodes in range(layout.nodes + 1, MAX_NODES + 1):
        yield f"raise distributed.nodes to {nodes}{with_zero3}", replace(zero3, nodes=nodes)
    batch = layout.batch // 2
    while batch >= 1:
        smaller = replace(layout, batch=batch)
        yield (
            f"lower training.perDeviceBatchSize to {batch} (more gradientAccumulationSteps keep the batch)",
            smaller,
        )
        batch //= 2


def _cheapest_fix(spec: FineTuneJobSpec, layout: memory.Layout, capacity_gib: float) -> str:
    """The first single change that fits; else the cheap changes together, plus the least scaling that fits."""
    preset = PRESETS[spec.model.preset or ""]

    def gib(changed: memory.Layout) -> float:
        return memory.estimate_layout(preset.shape, preset.parameters, changed).gib

    for change, changed in (*_steps(layout), *_scaling(layout)):
        if gib(changed) <= capacity_gib:
            return f"cheapest fix: {change} (about {gib(changed):.1f} GiB)"
    applied, combined = [], layout
    for change, free in ((CHECKPOINTING, _checkpointing), (QLORA, _qlora)):  # need neither GPUs nor DeepSpeed
        if free(combined) != combined:
            applied.append(change)
            combined = free(combined)
    if applied and gib(combined) <= capacity_gib:
        return f"cheapest fix: {' and '.join(applied)} (about {gib(combined):.1f} GiB)"
    for change, changed in _scaling(combined):
        if gib(changed) <= capacity_gib:
            return f"cheapest fix: {' and '.join([*applied, change])} (about {gib(changed):.1f} GiB)"
    return "no change of the spec fits; use GPUs with more memory (resources.gpu.product or minMemoryGiB)"


def verdict(spec: FineTuneJobSpec) -> Verdict | None:
    """The estimate and verdict of `spec`; None when there is no estimate (CPU jobs, `uri` models)."""
    layout, estimate = memory.layout_of(spec), memory.estimate(spec)
    if layout is None or estimate is None:
        return None
    capacity, field = _capacity(spec)
    found = Verdict(estimate, capacity, field)
    if found.fits is False and capacity is not None:
        found = replace(found, fix=_cheapest_fix(spec, layout, capacity))
    return found


def problem(spec: FineTuneJobSpec) -> str | None:
    """Why `spec` cannot fit its GPUs (one line naming the field and the fix), or None."""
    found = verdict(spec)
    return None if found is None else found.problem()
