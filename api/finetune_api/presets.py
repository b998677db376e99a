"""The model presets: what `spec.model.preset` may name.

A preset fixes the base checkpoint, its architecture family (which tasks it can do), the default LoRA target
modules and the model's shape (`Shape`: what the GPU memory estimate in `memory.py` needs). Tiny presets are built
offline from a config in code (random weights) by the trainer, so tests and laptops need no model hub; they also run
on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
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
class Linear:
    """A linear layer of a transformer block, by its module name (what LoRA targets match)."""

    name: str
    inputs: int
    outputs: int


@dataclass(frozen=True)
class Shape:
    """The dimensions of a model that its memory depends on, as its `config.json` gives them."""

    hidden: int
    layers: int
    """Transformer blocks (encoder and decoder together for encoder-decoder models)."""
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    linears: tuple[Linear, ...]
    """The linear layers of one block."""
    gated_mlp: bool = True
    """SwiGLU-style MLP (gate × up): three intermediate-wide tensors kept for the backward pass instead of one."""
    tied_embeddings: bool = False
    eager_attention: bool = False
    """Attention that materializes its scores (BERT, as transformers runs it in training) instead of SDPA's kernels."""

    @property
    def kv_width(self) -> int:
        """Width of the keys (and of the values): grouped-query attention makes it narrower than `hidden`."""
        return self.hidden // self.heads * self.kv_heads

    @property
    def embedding_parameters(self) -> int:
        """Input embeddings plus the output head (none when it is tied to the embeddings)."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def block_parameters(self) -> int:
        """Weights of one block's linear layers."""
        return sum(linear.inputs * linear.outputs for linear in self.linears)


def llama_shape(
    hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, vocab: int, *, tied: bool = False
) -> Shape:
    """A Llama-style decoder (Llama, Mistral, Qwen2): separate q/k/v/o and gate/up/down projections."""
    kv = hidden // heads * kv_heads
    linears = (
        Linear("q_proj", hidden, hidden), Linear("k_proj", hidden, kv), Linear("v_proj", hidden, kv),
        Linear("o_proj", hidden, hidden), Linear("gate_proj", hidden, intermediate),
        Linear("up_proj", hidden, intermediate), Linear("down_proj", intermediate, hidden),
    )  # fmt: skip
    return Shape(hidden, layers, heads, kv_heads, intermediate, vocab, linears, tied_embeddings=tied)


def phi3_shape(hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, vocab: int) -> Shape:
    """A Phi-3 decoder: fused qkv_proj and gate_up_proj."""
    kv = hidden // heads * kv_heads
    linears = (
        Linear("qkv_proj", hidden, hidden + 2 * kv), Linear("o_proj", hidden, hidden),
        Linear("gate_up_proj", hidden, 2 * intermediate), Linear("down_proj", intermediate, hidden),
    )  # fmt: skip
    return Shape(hidden, layers, heads, kv_heads, intermediate, vocab, linears)


_TINY_HIDDEN = 64
"""Hidden size of the tiny presets (`finetune_trainer.tiny.HIDDEN`)."""


def _encoder_shape(
    names: tuple[str, str, str, str, str, str], layers: int, vocab: int, *, eager: bool
) -> Shape:
    """The tiny encoder (BERT) and encoder-decoder (T5) presets: plain attention and a non-gated MLP.

    T5's decoder blocks also have cross-attention and relative position biases; they are left out (the tiny presets
    run on CPU only).
    """
    h, i = _TINY_HIDDEN, 2 * _TINY_HIDDEN
    q, k, v, o, up, down = names
    linears = (
        Linear(q, h, h), Linear(k, h, h), Linear(v, h, h), Linear(o, h, h), Linear(up, h, i), Linear(down, i, h),
    )  # fmt: skip
    return Shape(
        h, layers, 4, 4, i, vocab, linears, gated_mlp=False, tied_embeddings=True, eager_attention=eager
    )


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
    shape: Shape
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
# Shapes from each checkpoint's config.json (hidden_size, num_hidden_layers, num_attention_heads,
# num_key_value_heads, intermediate_size, vocab_size).
_PHI3_MINI = phi3_shape(3072, 32, 32, 32, 8192, 32064)
_PHI3_MEDIUM = phi3_shape(5120, 40, 40, 10, 17920, 32064)


def _phi3(name: str, source: str, parameters: int, shape: Shape, context: int) -> Preset:
    return Preset(name, f"hf://microsoft/{source}", "decoder", parameters, _PHI3_MODULES, shape, context)


def _llama(name: str, source: str, parameters: int, shape: Shape, context: int) -> Preset:
    return Preset(name, f"hf://{source}", "decoder", parameters, _LLAMA_MODULES, shape, context)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "tiny-llama",
            "tiny://llama",
            "decoder",
            139_584,
            ("q_proj", "k_proj", "v_proj", "o_proj"),
            llama_shape(_TINY_HIDDEN, 2, 4, 2, 2 * _TINY_HIDDEN, 512),
            context_length=256,
        ),
        Preset(
            "tiny-t5",
            "tiny://t5",
            "encoder-decoder",
            197_440,
            ("q", "k", "v", "o"),
            _encoder_shape(("q", "k", "v", "o", "wi", "wo"), 4, 512, eager=False),
            context_length=256,
        ),
        Preset(
            "tiny-bert",
            "tiny://bert",
            "encoder",
            119_040,
            ("query", "key", "value"),
            _encoder_shape(("query", "key", "value", "dense", "dense", "dense"), 2, 489, eager=True),
            context_length=256,
        ),
        _phi3("phi-3-mini-4k-instruct", "Phi-3-mini-4k-instruct", 3_821_000_000, _PHI3_MINI, 4096),
        _phi3("phi-3-mini-128k-instruct", "Phi-3-mini-128k-instruct", 3_821_000_000, _PHI3_MINI, 131072),
        _phi3("phi-3-medium-4k-instruct", "Phi-3-medium-4k-instruct", 13_960_000_000, _PHI3_MEDIUM, 4096),
        _phi3(
            "phi-3-medium-128k-instruct", "Phi-3-medium-128k-instruct", 13_960_000_000, _PHI3_MEDIUM, 131072
        ),
        _phi3("phi-3.5-mini-instruct", "Phi-3.5-mini-instruct", 3_821_000_000, _PHI3_MINI, 131072),
        _llama(
            "llama-3.1-8b-instruct",
            "meta-llama/Llama-3.1-8B-Instruct",
            8_030_000_000,
            llama_shape(4096, 32, 32, 8, 14336, 128256),
            131072,
        ),
        _llama(
            "mistral-7b-instruct-v0.3",
            "mistralai/Mistral-7B-Instruct-v0.3",
            7_248_000_000,
            llama_shape(4096, 32, 32, 8, 14336, 32768),
            32768,
        ),
        _llama(
            "qwen2.5-7b-instruct",
            "Qwen/Qwen2.5-7B-Instruct",
            7_616_000_000,
            llama_shape(3584, 28, 28, 4, 18944, 152064),
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
