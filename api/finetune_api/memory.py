"""The GPU-fit estimate: the peak memory per GPU of a FineTuneJob, from its spec and its preset's `Shape`.

Pure arithmetic (no torch), modelling what the trainer does (`finetune_trainer.model`, `.engine`). Ψ is the
parameter count, Ψt the trainable parameters, N the data-parallel ranks (processes per node times nodes), c the
bytes of the compute dtype (2 for bf16/fp16, 4 for fp32).

Model states:

- weights: lora and dora keep the frozen base in the compute dtype (cΨ) and the adapters in fp32 (peft's default);
  qlora stores the blocks' linear weights in 4 bits plus the block-wise quantization constants (QLoRA paper,
  Dettmers et al. 2023, §3: one fp32 absmax per 64 weights, 0.5 bit per weight, or 0.127 bit with double
  quantization), or in 8 bits, and upcasts embeddings, head and norms to fp32 (`prepare_model_for_kbit_training`);
  full keeps fp32 weights, with autocast's 16-bit copies of the matmul weights alive through the backward pass.
- gradients: one per trainable weight, in its dtype; DDP adds a bucket copy of them.
- optimizer: AdamW's two fp32 moments (8 bytes per trainable weight), 2 bytes for the 8-bit variants, 4 for SGD.
- DeepSpeed, after the ZeRO paper (Rajbhandari et al. 2020, §5 and Figure 1): the model runs in the compute dtype
  (cΨ weights, cΨt gradients) and the optimizer keeps an fp32 master copy, K = 12 bytes per trainable weight for
  AdamW; stage 1 divides the optimizer state by N, stage 2 also the gradients, stage 3 also every weight (frozen
  ones too). offloadOptimizer moves the optimizer state (and from stage 2 the gradients) to CPU memory,
  offloadParams stage 3's weight shards. ZeRO's gradient reduce bucket (DeepSpeed's default 5e8 elements, allocated
  whole even for a small model) and stage 3's gathered layer are buffers. Without ZeRO-3 a full fine-tune first
  loads the fp32 model onto the GPU (`loading`).

Activations, for a micro-batch of b sequences of s tokens (s = min(maxSeqLength, the model's context)), counted as
Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", §4.1) count them (a GPT
layer keeps sbh(34 + 5as/h) bytes), applied to the tensors this stack keeps per layer and token:

- SDPA keeps q, k, v and its output but no s-by-s score matrix (memory-efficient and flash kernels, Dao et al.
  2022); attention that materializes its scores (the tiny BERT preset) keeps Korthikanti's 5as²b term, as
  (4 + 4 + 1 + c) bytes per score, since autocast runs the softmax and the dropout in fp32;
- the MLP keeps its activation's input and, when gated, both factors of the product; RMSNorm an fp32 copy of its
  input; trainable linears their input; each LoRA target the dropout copy and mask of its input (DoRA also two
  output-wide tensors). With QLoRA the quantized linears return fp32 (their input's dtype), so these are 4 bytes;
- gradient checkpointing keeps each layer's input instead (Korthikanti's 2sbh per layer with full recomputation),
  and the peak is then the loss's backward or the one layer recomputed after it, whichever is larger;
- the loss keeps the logits upcast to fp32, their log-softmax and its gradient (`LOSS_BYTES_PER_LOGIT` per token
  and vocabulary entry), and a batch with padding its boolean attention mask (bs² bytes).

Plus `CUDA_OVERHEAD` for the CUDA context and the caching allocator's slack. The comparison with measured and
published figures is in benchmarks/README.md (`benchmarks/gpu_fit.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from finetune_api.model import LoraSpec
from finetune_api.presets import PRESETS, MethodType, Shape

if TYPE_CHECKING:
    from finetune_api.job import FineTuneJobSpec

GIB = 1024**3
CUDA_OVERHEAD = 1 * GIB
"""CUDA context, cuBLAS workspaces and the caching allocator's slack: a flat allowance per GPU."""
LOSS_BYTES_PER_LOGIT = 12
"""Cross-entropy over the vocabulary at its peak, the start of its backward pass: the log-softmax kept in fp32, its
gradient and the gradient of the logits (4 + 4 + 4). Measured on CPU for 16-bit and fp32 logits by
benchmarks/gpu_fit.py (its `loss` rows)."""
_LORA = LoraSpec()
"""The API's LoRA defaults, those of a Layout built without a spec."""
DEEPSPEED_BUCKET = 500_000_000
"""DeepSpeed's default reduce_bucket_size, in elements (1 GB in bf16)."""
ZERO3_PREFETCH = 50_000_000
"""DeepSpeed's default stage3_prefetch_bucket_size, in elements."""
OPTIMIZER_BYTES = {"adamw": 8, "adamw-8bit": 2, "paged-adamw-8bit": 2, "sgd": 4}
"""Optimizer state per trainable weight: AdamW's two fp32 moments, bitsandbytes' 8-bit moments, SGD's momentum."""


@dataclass(frozen=True)
class Layout:
    """How a job trains, reduced to what its memory depends on."""

    method: MethodType
    compute_bytes: int
    """2 for bf16/fp16 (and `auto` on a GPU), 4 for fp32."""
    batch: int
    seq: int
    gpus_per_node: int = 1
    nodes: int = 1
    processes_per_node: int = 1
    quant_bits: int = 4
    double_quant: bool = True
    optimizer: str = "adamw"
    zero_stage: int | None = None
    """None without DeepSpeed."""
    offload_optimizer: bool = False
    offload_params: bool = False
    checkpointing: bool = False
    vocab_loss: bool = True
    """The loss runs over the vocabulary (causal-lm, seq2seq), not over a few labels."""
    lora_rank: int = _LORA.r
    lora_targets: tuple[str, ...] | None = None
    """Names of the adapted linears; None for all-linear."""
    lora_dropout: float = _LORA.dropout

    @property
    def ranks(self) -> int:
        """Data-parallel degree: one process per GPU."""
        return self.processes_per_node * self.nodes


@dataclass(frozen=True)
class Estimate:
    """Peak memory of one GPU, in bytes, by component."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    buffers: float
    overhead: float
    loading: float = 0.0
    """Peak while loading: a full fine-tune's fp32 model, on the GPU before DeepSpeed casts it (else 0)."""

    @property
    def training(self) -> float:
        """The sum of the components: the peak of a training step."""
        return (
            self.weights + self.gradients + self.optimizer + self.activations + self.buffers + self.overhead
        )

    @property
    def total(self) -> float:
        """The peak of the run: training, or loading when that is higher."""
        return max(self.training, self.loading + self.overhead)

    @property
    def gib(self) -> float:
        """`total` in GiB."""
        return self.total / GIB

    def breakdown(self) -> str:
        """The components in GiB, for messages."""
        parts = {
            "weights": self.weights, "gradients": self.gradients, "optimizer": self.optimizer,
            "activations": self.activations, "buffers": self.buffers, "overhead": self.overhead,
        }  # fmt: skip
        text = ", ".join(f"{name} {value / GIB:.1f}" for name, value in parts.items())
        return text + (
            f"; loading the fp32 model {self.loading / GIB:.1f}" if self.total > self.training else ""
        )


def _targets(shape: Shape, layout: Layout) -> list[tuple[int, int]]:
    """(inputs, outputs) of the linears of one block that LoRA adapts."""
    return [
        (lin.inputs, lin.outputs)
        for lin in shape.linears
        if layout.lora_targets is None or lin.name in layout.lora_targets
    ]


def trainable_parameters(shape: Shape, parameters: int, layout: Layout) -> int:
    """Ψt: every weight for full fine-tuning, else the adapters (r(in + out) per target, DoRA's magnitudes)."""
    if layout.method == "full":
        return parameters
    dora = layout.method == "dora"
    per_block = sum(layout.lora_rank * (i + o) + (o if dora else 0) for i, o in _targets(shape, layout))
    return shape.layers * per_block


def _quantized_bytes(shape: Shape, parameters: int, layout: Layout) -> float:
    """The frozen base under QLoRA: block weights in 4 (or 8) bits with their constants, the rest upcast to fp32."""
    blocks = max(parameters - shape.embedding_parameters, 0)
    if layout.quant_bits == 8:
        per_weight = 1.0
    else:  # 4 bits, plus an absmax per 64 weights: fp32, or 8-bit with an fp32 constant per 256 of them
        per_weight = 0.5 + (1 / 64 + 4 / (64 * 256) if layout.double_quant else 4 / 64)
    rest = shape.embedding_parameters * (layout.compute_bytes if layout.zero_stage is not None else 4)
    return blocks * per_weight + rest


def _frozen_bytes(shape: Shape, parameters: int, layout: Layout) -> float:
    if layout.method == "full":
        return 0.0
    if layout.method == "qlora":
        return _quantized_bytes(shape, parameters, layout)
    return parameters * layout.compute_bytes


def _torch_states(shape: Shape, parameters: int, layout: Layout) -> tuple[float, float, float, float]:
    """(weights, gradients, optimizer, buffers) without DeepSpeed: one process, or DDP replicas."""
    trainable = trainable_parameters(shape, parameters, layout)
    weights = _frozen_bytes(shape, parameters, layout) + 4 * trainable
    buffers = 4.0 * trainable if layout.ranks > 1 else 0.0  # DDP's gradient buckets
    if layout.method == "full" and layout.compute_bytes < 4:  # autocast's copies of the matmul weights
        buffers += layout.compute_bytes * (parameters - shape.vocab * shape.hidden)
    return weights, 4.0 * trainable, OPTIMIZER_BYTES[layout.optimizer] * trainable, buffers


def _zero_states(shape: Shape, parameters: int, layout: Layout) -> tuple[float, float, float, float]:
    """(weights, gradients, optimizer, buffers) under DeepSpeed, partitioned as the ZeRO stage says."""
    stage, n, c = layout.zero_stage or 0, layout.ranks, layout.compute_bytes
    trainable = trainable_parameters(shape, parameters, layout)
    master = 4 if stage >= 1 or c < 4 else 0
    weights = _frozen_bytes(shape, parameters, layout) + c * trainable
    gradients = float(c * trainable)
    optimizer = float((OPTIMIZER_BYTES[layout.optimizer] + master) * trainable)
    if stage >= 1:
        optimizer = 0.0 if layout.offload_optimizer else optimizer / n
    if stage >= 2:
        gradients = 0.0 if layout.offload_optimizer else gradients / n
    if stage == 3:
        weights = 0.0 if layout.offload_params else weights / n
    # ZeRO allocates its gradient reduce bucket whole, whatever the model's size; plain DeepSpeed flattens the
    # gradients a bucket at a time.
    buffers = float(c * (DEEPSPEED_BUCKET if stage >= 1 else min(DEEPSPEED_BUCKET, trainable)))
    if stage == 3:  # the layer (or the output head) gathered for compute, plus the prefetched parameters
        largest = max(shape.block_parameters, 0 if shape.tied_embeddings else shape.vocab * shape.hidden)
        buffers += c * (min(largest, parameters) + min(ZERO3_PREFETCH, parameters))
    return weights, gradients, optimizer, buffers


def _layer_bytes_per_token(shape: Shape, layout: Layout) -> int:
    """Activations one layer keeps for the backward pass, per token (see the module docstring)."""
    a, h, i = layout.compute_bytes, shape.hidden, shape.intermediate
    # bitsandbytes hands a quantized linear's output back in its input's dtype: fp32 with QLoRA's fp32 embeddings
    t = _residual_bytes(layout) if layout.method == "qlora" else a
    kept = t * (2 * h + 2 * shape.kv_width)  # SDPA: q, k, v and the attention output
    kept += t * (3 * i if shape.gated_mlp else i)  # the MLP activation's input, and both factors when gated
    kept += 2 * 4 * h  # two norms, each with an fp32 copy of its input
    if (
        shape.eager_attention
    ):  # the scores: softmax and dropout output in fp32, the dropout mask, a 16-bit copy
        kept += shape.heads * layout.seq * (4 + 4 + 1 + a)
    if layout.method == "full":
        kept += a * (3 * h + i) + 2 * a * h  # the trainable linears' inputs, the norms' normalized inputs
        return kept
    mask = 1 if layout.lora_dropout > 0 else 0
    for inputs, outputs in _targets(shape, layout):
        kept += (a + mask) * inputs + (2 * a * outputs if layout.method == "dora" else 0)
    return kept


def _residual_bytes(layout: Layout) -> int:
    """The residual stream's dtype: fp32 when the embeddings are (full fine-tuning and QLoRA without DeepSpeed)."""
    fp32_embeddings = layout.zero_stage is None and layout.method in ("full", "qlora")
    return 4 if fp32_embeddings else layout.compute_bytes


def activation_bytes(shape: Shape, layout: Layout) -> float:
    """Activations of one micro-batch at their peak, in the loss's backward pass (or a layer's recompute)."""
    tokens, layer = layout.batch * layout.seq, _layer_bytes_per_token(shape, layout)
    residual = _residual_bytes(layout)
    loss = LOSS_BYTES_PER_LOGIT * shape.vocab if layout.vocab_loss else 0
    if layout.checkpointing:  # the layers' inputs, then the loss's backward or (later) one layer's recompute
        kept, peak = shape.layers * residual * shape.hidden, max(loss, layer)
    else:  # every layer's activations while the loss's backward runs
        kept, peak = shape.layers * layer, loss
    # the embeddings' output, and the final norm's fp32 copy and normalized output
    outside = residual * shape.hidden + 4 * shape.hidden + 2 * layout.compute_bytes * shape.hidden
    padding_mask = layout.batch * layout.seq * layout.seq if layout.batch > 1 else 0
    return tokens * (kept + outside + peak) + padding_mask


def _transient_bytes(shape: Shape, layout: Layout) -> float:
    """QLoRA dequantizes one weight at a time; DoRA builds weight-sized temporaries for its norms."""
    largest = max(lin.inputs * lin.outputs for lin in shape.linears)
    if layout.method == "qlora":
        return float(layout.compute_bytes * largest)
    if layout.method == "dora":
        return float(2 * 4 * largest)
    return 0.0


def estimate_layout(shape: Shape, parameters: int, layout: Layout) -> Estimate:
    """The estimate for a model of this shape trained as `layout` says."""
    states = _torch_states if layout.zero_stage is None else _zero_states
    weights, gradients, optimizer, buffers = states(shape, parameters, layout)
    full_load = layout.method == "full" and layout.zero_stage is not None and layout.zero_stage < 3
    return Estimate(
        weights=weights,
        gradients=gradients,
        optimizer=optimizer,
        activations=activation_bytes(shape, layout),
        buffers=buffers + _transient_bytes(shape, layout),
        overhead=CUDA_OVERHEAD,
        loading=4.0 * parameters if full_load else 0.0,
    )


def layout_of(spec: FineTuneJobSpec) -> Layout | None:
    """The spec's layout, or None when it trains on CPU or its model has no preset (no known shape)."""
    preset = PRESETS.get(spec.model.preset or "")
    if preset is None or spec.gpus_per_node == 0:
        return None
    training, ds, method = spec.training, spec.distributed.deepspeed, spec.method
    quant, lora = method.quantization, method.lora_settings
    return Layout(
        method=method.type,
        compute_bytes=4 if training.precision == "fp32" else 2,
        batch=training.per_device_batch_size,
        seq=min(training.max_seq_length, preset.context_length),
        gpus_per_node=spec.gpus_per_node,
        nodes=spec.distributed.nodes,
        processes_per_node=spec.processes_per_node,
        quant_bits=quant.bits if quant is not None else 4,
        double_quant=quant.double_quant if quant is not None else True,
        optimizer=training.optimizer,
        zero_stage=ds.zero_stage if ds is not None else None,
        offload_optimizer=ds is not None and ds.offload_optimizer == "cpu",
        offload_params=ds is not None and ds.offload_params == "cpu",
        checkpointing=training.gradient_checkpointing,
        vocab_loss=spec.task.type in ("causal-lm", "seq2seq"),
        lora_rank=lora.r,
        lora_targets=spec.lora_targets,
        lora_dropout=lora.dropout,
    )


def estimate(spec: FineTuneJobSpec) -> Estimate | None:
    """Peak memory per GPU of `spec`; None when it trains on CPU or its model is a `uri` (shape unknown)."""
    layout = layout_of(spec)
    if layout is None:
        return None
    preset = PRESETS[spec.model.preset or ""]
    return estimate_layout(preset.shape, preset.parameters, layout)
