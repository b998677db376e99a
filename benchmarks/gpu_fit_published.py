"""Published memory figures for 7B/8B fine-tuning, with the layout each source describes (for gpu_fit.py).

Transcribed from the sources named in each row (this machine has no network); what a source leaves unsaid is
marked "assumed" in `differences`. Sizes are the sources' own: "GB" in LitGPT and the ZeRO paper are 10^9 bytes;
the Unsloth rows are GPU sizes (an "80 GB" A100 has 80 GiB), compared as GiB.
"""

from __future__ import annotations

from dataclasses import dataclass

from finetune_api.memory import Layout
from finetune_api.presets import PRESETS, Shape, llama_shape

LLAMA31_8B = PRESETS["llama-3.1-8b-instruct"].shape
LLAMA2_7B = llama_shape(4096, 32, 32, 32, 11008, 32000)
"""Llama-2-7b-hf's config.json: 6.74 B parameters."""

UNSLOTH = (
    "Unsloth README, 'Context length benchmarks: Llama 3.1 (8B) max. context length', column 'Hugging Face + FA2' "
    "(github.com/unslothai/unsloth): the longest context that fits in that much VRAM"
)
LITGPT = (
    "LitGPT config_hub/finetune/README.md, column 'Peak memory' (github.com/Lightning-AI/litgpt): measured with "
    "torch.cuda.max_memory_allocated, 1×A10G, Alpaca2k, max seq length 512"
)
ZERO = (
    "Rajbhandari et al. 2020, 'ZeRO: Memory Optimizations Toward Training Trillion Parameter Models', Figure 1: "
    "model states of a 7.5B model with mixed-precision Adam (K=12) on 64 GPUs"
)


@dataclass(frozen=True)
class Figure:
    """One published number and the layout that reproduces its setup as far as the trainer's options go."""

    model: str
    setup: str
    value: float
    unit: str
    """GB (10^9 bytes) or GiB."""
    source: str
    kind: str
    shape: Shape
    parameters: int
    layout: Layout
    differences: str = ""
    counts: str = "allocated"
    """What the figure counts: allocated (torch's allocator; no CUDA context), gpu (all of it), states."""


def _unsloth(context: int, vram: int) -> Figure:
    layout = Layout(
        method="qlora", compute_bytes=2, batch=1, seq=context, checkpointing=True, lora_rank=32,
        lora_targets=None, lora_dropout=0.0,
    )  # fmt: skip
    return Figure(
        "Llama 3.1 8B", f"QLoRA nf4 r=32 all linears, batch 1 × {context:,} tokens", vram, "GiB", UNSLOTH,
        "measured (largest context that fits)", LLAMA31_8B, 8_030_000_000, layout,
        "assumed: gradient checkpointing on and LoRA dropout 0 (Unsloth's defaults); the transformers of late 2024 "
        "kept fp32 logits in the model's output and copied them for the shifted loss, more than the 12 bytes "
        "per logit of the transformers the trainer runs, so long contexts need more there",
        counts="gpu",
    )  # fmt: skip


def _litgpt(model: str, method: str, batch: int, gb: float, shape: Shape, parameters: int) -> Figure:
    layout = Layout(
        method=method, compute_bytes=2, batch=batch, seq=512, lora_rank=32, lora_targets=("q_proj", "v_proj"),
    )  # fmt: skip
    return Figure(
        model, f"{method.upper()} r=32 on q, v, micro-batch {batch} × ≤512 tokens", gb, "GB", LITGPT,
        "measured", shape, parameters, layout,
        "LitGPT's bf16-true keeps adapters and AdamW state in bf16 (the trainer: fp32) and runs its own model "
        "code (chunked head and loss); Alpaca2k rows are mostly shorter than 512 tokens, so the peak batch may "
        "be shorter than the 512 estimated",
    )  # fmt: skip


def _zero(stage: int, gb: float) -> Figure:
    layout = Layout(method="full", compute_bytes=2, batch=1, seq=1, processes_per_node=64, zero_stage=stage)
    return Figure(
        "7.5B (ZeRO paper)", f"full, mixed-precision Adam, ZeRO stage {stage}, 64 GPUs", gb, "GB", ZERO,
        "analytic (the paper's memory model)", LLAMA2_7B, 7_500_000_000, layout, counts="states",
    )  # fmt: skip


PUBLISHED: list[Figure] = [
    *(_unsloth(context, vram) for context, vram in
      ((932, 12), (2551, 16), (5789, 24), (12264, 40), (15502, 48), (28454, 80))),
    _litgpt("Llama 3.1 8B", "lora", 1, 19.73, LLAMA31_8B, 8_030_000_000),
    _litgpt("Llama 3.1 8B", "qlora", 2, 17.41, LLAMA31_8B, 8_030_000_000),
    _litgpt("Llama 2 7B", "lora", 2, 19.77, LLAMA2_7B, 6_738_000_000),
    _litgpt("Llama 2 7B", "qlora", 2, 13.68, LLAMA2_7B, 6_738_000_000),
    _zero(0, 120), _zero(1, 31.4), _zero(2, 16.6), _zero(3, 1.9),
]  # fmt: skip
