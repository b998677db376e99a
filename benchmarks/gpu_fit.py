"""The GPU-fit estimate (`finetune_api.memory`) against measured and published memory.

    python benchmarks/gpu_fit.py [--steps 3] [--json benchmarks/reports/gpu_fit.json]

Three parts, each row with the estimate, the reference and the error (estimate / reference - 1):

1. loss: the bytes per logit of the loss path the trainer's models run (transformers' `ForCausalLMLoss` on 16-bit
   and fp32 logits), which is `memory.LOSS_BYTES_PER_LOGIT`.
2. tiny: the trainer's own `FineTuneRecipe.setup` and `._train_step` (no checkpoint, no evaluation) on the tiny
   presets on CPU, with rows long enough that every batch is `maxSeqLength` tokens; the DeepSpeed cases under
   torchrun with 2 processes (rank 0 reported). The peak is the most bytes live in tensors at once: torch's
   profiler counts each CPU allocation made while it records (the "Total Allocated" of its memory events); weights
   that safetensors maps from disk bypass the allocator, so the model's storages the profiler did not see
   allocated are added. The estimate is compared without `CUDA_OVERHEAD` (no CUDA context on CPU).
3. published: memory that others measured or stated for 7B/8B models (`gpu_fit_published.py`, each row citing its
   source; transcribed, as this machine has no network), estimated with the layout the source describes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "trainer_image"), str(ROOT / "benchmarks")]
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from finetune_api import memory  # noqa: E402
from finetune_api.job import FineTuneJobSpec  # noqa: E402
from finetune_api.presets import PRESETS  # noqa: E402
from gpu_fit_published import PUBLISHED  # noqa: E402

MIB = 1024**2
BATCH, SEQ = 4, 256

TINY_CASES: list[dict[str, Any]] = [
    {"name": "tiny-llama lora fp32", "method": {"type": "lora"}, "precision": "fp32"},
    {"name": "tiny-llama lora bf16", "method": {"type": "lora"}},
    {"name": "tiny-llama lora bf16 checkpointing", "method": {"type": "lora"}, "checkpointing": True},
    {"name": "tiny-llama lora bf16 all-linear dropout 0", "method": {"type": "lora", "lora": {
        "targetModules": ["all-linear"], "dropout": 0.0}}},
    {"name": "tiny-llama qlora bf16", "method": {"type": "qlora", "quantization": {"bits": 4}}},
    {"name": "tiny-llama dora bf16", "method": {"type": "dora"}},
    {"name": "tiny-llama full bf16", "method": {"type": "full"}},
    {"name": "tiny-llama full fp32 checkpointing", "method": {"type": "full"}, "precision": "fp32",
     "checkpointing": True},
    {"name": "tiny-llama full fp32 DDP ×2", "method": {"type": "full"}, "precision": "fp32", "nproc": 2},
    {"name": "tiny-llama full fp32 DeepSpeed without ZeRO ×2", "method": {"type": "full"}, "precision": "fp32",
     "nproc": 2, "zero": 0},
    {"name": "tiny-llama full fp32 ZeRO-2 ×2", "method": {"type": "full"}, "precision": "fp32", "nproc": 2,
     "zero": 2},
    {"name": "tiny-llama full fp32 ZeRO-3 ×2", "method": {"type": "full"}, "precision": "fp32", "nproc": 2,
     "zero": 3},
    {"name": "tiny-t5 lora bf16 (seq2seq)", "preset": "tiny-t5", "task": {"type": "seq2seq"}},
    {"name": "tiny-bert lora bf16 (classification)", "preset": "tiny-bert",
     "task": {"type": "sequence-classification", "labels": ["a", "b"]}},
]  # fmt: skip
"""Trainer runs on CPU: LoRA r=16 on the preset's targets unless the method says otherwise, batch 4 × 256 tokens."""


def tiny_spec(case: dict[str, Any], steps: int) -> dict[str, Any]:
    """The FineTuneJob spec of a tiny case."""
    training = {
        "maxSteps": steps, "perDeviceBatchSize": BATCH, "maxSeqLength": SEQ,
        "precision": case.get("precision", "bf16"), "gradientCheckpointing": case.get("checkpointing", False),
    }  # fmt: skip
    spec: dict[str, Any] = {
        "model": {"preset": case.get("preset", "tiny-llama")}, "method": case.get("method", {"type": "lora"}),
        "task": case.get("task", {"type": "causal-lm"}), "dataset": {"uri": "pvc://data/rows.jsonl"},
        "training": training, "distributed": {"processesPerNode": case.get("nproc", 1)},
        "resources": {"gpu": {"count": case.get("nproc", 1)}},
    }  # fmt: skip
    if "zero" in case:
        spec["distributed"]["deepspeed"] = {"zeroStage": case["zero"]}
    return spec


def _rows(task: str) -> list[dict[str, Any]]:
    from finetune_trainer.tiny import corpus

    text = " ".join(corpus())[:4000]  # several hundred tokens: every row is cut to maxSeqLength
    row = {
        "seq2seq": {"source": text, "target": text},
        "sequence-classification": {"text": text, "label": "a"},
    }
    return [row.get(task, {"text": text})] * 64


def _untracked_storage_bytes(module: Any, live: set[int]) -> int:
    """Bytes of the module's parameters and buffers whose storage the profiler did not see allocated."""
    seen: dict[int, int] = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(size for pointer, size in seen.items() if pointer not in live)


def _profile_peak(trace: Path) -> tuple[int, set[int]]:
    """The most bytes allocated at once while recording, and the addresses still allocated at the end."""
    events = [e["args"] for e in json.loads(trace.read_text())["traceEvents"] if e.get("name") == "[memory]"]
    live: set[int] = set()
    for event in events:
        (live.add if event["Bytes"] > 0 else live.discard)(event["Addr"])
    return max((e["Total Allocated"] for e in events), default=0), live


def worker(case: dict[str, Any], steps: int, out: Path) -> None:
    """Set up and train one tiny case in this process (one rank under torchrun) and write its peak."""
    from finetune_api.trainer import TrainerConfig
    from finetune_trainer import recipe
    from torch.profiler import ProfilerActivity, profile

    tmp = out.parent
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    task = case.get("task", {"type": "causal-lm"})["type"]
    (data / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(task)))
    cfg = TrainerConfig.model_validate({
        "name": "bench", "spec": tiny_spec(case, steps), "metrics_port": 0,
        "paths": {"output_dir": str(tmp / "out"), "checkpoint_dir": str(tmp / "out" / "ckpt"),
                  "cache_dir": str(ROOT / ".cache" / "trainer-presets"), "data_dir": str(data),
                  "termination_message_path": str(tmp / "termination-log")},
    })  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        run = recipe.FineTuneRecipe(cfg)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            run.setup()
            batches = run._micro_batches(0, 0)
            for _ in range(steps):
                run._train_step([next(batches)])
        run.cleanup()
    rank = int(os.environ.get("RANK", "0"))
    trace = tmp / f"trace-{rank}.json"
    prof.export_chrome_trace(str(trace))
    tracked, live = _profile_peak(trace)
    mapped = _untracked_storage_bytes(run.engine.module, live)
    result = {"rank": rank, "tracked_peak": tracked, "mapped_weights": mapped, "peak": tracked + mapped}
    (tmp / f"result-{rank}.json").write_text(json.dumps(result))


def measure_tiny(case: dict[str, Any], steps: int) -> dict[str, Any]:
    """Run one tiny case in a fresh process (torchrun for several) and compare its peak with the estimate."""
    nproc = case.get("nproc", 1)
    with tempfile.TemporaryDirectory(prefix="gpu-fit-") as tmp:
        args = [__file__, "--worker", json.dumps(case), "--steps", str(steps), "--out", f"{tmp}/result.json"]
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
        ]
        command = [*launcher, *args] if nproc > 1 else [sys.executable, *args]
        subprocess.run(command, check=True, capture_output=True, text=True)
        measured = json.loads(Path(tmp, "result-0.json").read_text())
    spec = FineTuneJobSpec.model_validate(tiny_spec(case, steps))
    preset = PRESETS[spec.model.preset or ""]
    layout = memory.layout_of(spec)
    assert layout is not None
    est = memory.estimate_layout(preset.shape, preset.parameters, layout)
    estimate = est.total - est.overhead
    return {
        "case": case["name"], "measured_mib": round(measured["peak"] / MIB, 2),
        "mapped_weights_mib": round(measured["mapped_weights"] / MIB, 2),
        "estimate_mib": round(estimate / MIB, 2), "error": round(estimate / measured["peak"] - 1, 3),
        "estimate_breakdown_mib": {k: round(getattr(est, k) / MIB, 2) for k in
                                   ("weights", "gradients", "optimizer", "activations", "buffers", "loading")},
    }  # fmt: skip


def measure_loss() -> list[dict[str, Any]]:
    """Peak bytes per logit of hidden @ W.T → ForCausalLMLoss → backward, the logits freed after the forward."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers.loss.loss_utils import ForCausalLMLoss

    rows = []
    batch, seq, hidden, vocab = 2, 256, 64, 32000
    for dtype in (torch.bfloat16, torch.float32):
        states = torch.randn(batch, seq, hidden, dtype=dtype, requires_grad=True)
        head = torch.randn(vocab, hidden, dtype=dtype)
        labels = torch.randint(0, vocab, (batch, seq))

        with tempfile.TemporaryDirectory() as tmp:
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                ForCausalLMLoss(states @ head.T, labels, vocab_size=vocab).backward()
            prof.export_chrome_trace(f"{tmp}/trace.json")
            peak, _ = _profile_peak(Path(tmp, "trace.json"))
        gradient = states.numel() * states.element_size()  # the hidden states' gradient is not the loss's
        measured = (peak - gradient) / (batch * seq * vocab)
        rows.append({
            "logits": str(dtype).removeprefix("torch."), "measured_bytes_per_logit": round(measured, 2),
            "estimate_bytes_per_logit": memory.LOSS_BYTES_PER_LOGIT,
            "error": round(memory.LOSS_BYTES_PER_LOGIT / measured - 1, 3),
        })  # fmt: skip
    return rows


def published_rows() -> list[dict[str, Any]]:
    """Each published figure next to the estimate of the layout its source describes, in the source's unit."""
    rows = []
    for figure in PUBLISHED:
        est = memory.estimate_layout(figure.shape, figure.parameters, figure.layout)
        counted = {
            "gpu": est.total, "allocated": est.total - est.overhead,
            "states": est.weights + est.gradients + est.optimizer,
        }[figure.counts]  # fmt: skip
        estimate = counted / (1e9 if figure.unit == "GB" else memory.GIB)
        rows.append({
            "model": figure.model, "setup": figure.setup, "published": figure.value, "unit": figure.unit,
            "estimate": round(estimate, 2), "error": round(estimate / figure.value - 1, 3), "kind": figure.kind,
            "counts": figure.counts, "source": figure.source, "differences": figure.differences,
        })  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker), args.steps, args.out)
        return 0
    import torch
    import transformers

    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"transformers {transformers.__version__}",
        "loss": measure_loss(),
        "tiny": [measure_tiny(case, args.steps) for case in TINY_CASES],
        "published": published_rows(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
