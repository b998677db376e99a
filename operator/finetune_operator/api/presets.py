"""The model presets: what `spec.model.preset` may name.

A preset fixes the base checkpoint, its architecture family (which tasks it can do), the default LoRA target
modules and the least GPU memory each method needs. Tiny presets are built offline from a config in code (random
weights) by the trainer, so tests and laptops need no model hub; they also run on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Family = Literal["decoder", "encoder", "encoder-decoder"]
MethodType = Literal["lora", "qlora", "dora", "full"]
TaskType = Literal[
    "causal-lm", "sequence-classification", "token-classification", "seq2seq", "question-answering"
]

FAMILY_TASKS: dict[Family, tuple[TaskType, ...]] = {
    "decoder": ("causal-lm", "sequence-classification"),
    "encoder": ("sequence-classification", "token-classification", "question-answering"),
    "encoder-decoder": ("seq2seq",),
}


@dataclass(frozen=True)
class Preset:
    """A named base model."""

    name: str
    source: str
    """Where the weights come from: an `hf://org/name` URI, or `tiny://…` for presets built offline."""
    family: Family
    parameters: int
    """Parameter count of the base model."""
    target_modules: tuple[str, ...]
    """Default LoRA target modules (names of linear layers)."""
    min_gpu_memory_gib: dict[MethodType, int] = field(default_factory=dict)
    """Least GPU memory, summed over all GPUs of the job, per method; empty for CPU-capable tiny presets."""
    context_length: int = 4096

    @property
    def tiny(self) -> bool:
        """True for presets built offline for tests; they train on CPU."""
        return self.source.startswith("tiny://")

    @property
    def tasks(self) -> tuple[TaskType, ...]:
        """The tasks this preset's architecture can be fine-tuned for."""
        return FAMILY_TASKS[self.family]


_LLAMA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_PHI3_MODULES = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


def _memory(qlora: int, lora: int, full: int) -> dict[MethodType, int]:
    # DoRA keeps a magnitude vector per target module and its backward pass is heavier: about 10% over LoRA.
    return {"qlora": qlora, "lora": lora, "dora": lora + max(2, lora // 10), "full": full}


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "tiny-llama",
            "tiny://llama",
            "decoder",
            120_000,
            ("q_proj", "k_proj", "v_proj", "o_proj"),
            context_length=256,
        ),
        Preset("tiny-t5", "tiny://t5", "encoder-decoder", 150_000, ("q", "k", "v", "o"), context_length=256),
        Preset("tiny-bert", "tiny://bert", "encoder", 110_000, ("query", "key", "value"), context_length=256),
        Preset(
            "phi-3-mini-4k-instruct",
            "hf://microsoft/Phi-3-mini-4k-instruct",
            "decoder",
            3_821_000_000,
            _PHI3_MODULES,
            _memory(8, 16, 80),
            4096,
        ),
        Preset(
            "phi-3-mini-128k-instruct",
            "hf://microsoft/Phi-3-mini-128k-instruct",
            "decoder",
            3_821_000_000,
            _PHI3_MODULES,
            _memory(10, 20, 80),
            131072,
        ),
        Preset(
            "phi-3-medium-4k-instruct",
            "hf://microsoft/Phi-3-medium-4k-instruct",
            "decoder",
            13_960_000_000,
            _PHI3_MODULES,
            _memory(16, 40, 320),
            4096,
        ),
        Preset(
            "phi-3-medium-128k-instruct",
            "hf://microsoft/Phi-3-medium-128k-instruct",
            "decoder",
            13_960_000_000,
            _PHI3_MODULES,
            _memory(20, 44, 320),
            131072,
        ),
        Preset(
            "phi-3.5-mini-instruct",
            "hf://microsoft/Phi-3.5-mini-instruct",
            "decoder",
            3_821_000_000,
            _PHI3_MODULES,
            _memory(10, 20, 80),
            131072,
        ),
        Preset(
            "llama-3.1-8b-instruct",
            "hf://meta-llama/Llama-3.1-8B-Instruct",
            "decoder",
            8_030_000_000,
            _LLAMA_MODULES,
            _memory(12, 24, 160),
            131072,
        ),
        Preset(
            "mistral-7b-instruct-v0.3",
            "hf://mistralai/Mistral-7B-Instruct-v0.3",
            "decoder",
            7_248_000_000,
            _LLAMA_MODULES,
            _memory(10, 22, 140),
            32768,
        ),
        Preset(
            "qwen2.5-7b-instruct",
            "hf://Qwen/Qwen2.5-7B-Instruct",
            "decoder",
            7_616_000_000,
            _LLAMA_MODULES,
            _memory(12, 24, 150),
            32768,
        ),
    )
}

PresetName = Literal[
    "tiny-llama", "tiny-t5", "tiny-bert",
    "phi-3-mini-4k-instruct", "phi-3-mini-128k-instruct", "phi-3-medium-4k-instruct",
    "phi-3-medium-128k-instruct", "phi-3.5-mini-instruct", "llama-3.1-8b-instruct",
    "mistral-7b-instruct-v0.3", "qwen2.5-7b-instruct",
]  # fmt: skip
"""The preset names as a closed set: it becomes the CRD enum. A unit test keeps it equal to PRESETS."""


def presets_of(family: Family) -> list[str]:
    """Names of the presets of one architecture family, in table order."""
    return [p.name for p in PRESETS.values() if p.family == family]


def real_presets() -> list[str]:
    """Names of the presets that need a GPU."""
    return [p.name for p in PRESETS.values() if not p.tiny]
