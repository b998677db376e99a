"""QLoRA vs LoRA on one NVIDIA GPU: peak memory and tokens/s on a ~1.1B-parameter random-init Llama.

Run on a GPU machine: `python benchmarks/qlora_vs_lora_gpu.py [--steps 30 --batch 4 --seq 1024 --json out.json]`.
Nothing is downloaded: the model is built from a config in code (TinyLlama-1.1B's shape) with random weights and
fed random token ids, which cost the same FLOPs and memory as real text. Each method runs in a fresh subprocess so
one's allocations cannot inflate the other's peak. LoRA keeps the frozen base in bf16; QLoRA stores it as 4-bit
nf4 with double quantization (bitsandbytes) and computes in bf16; both train r=16 adapters on every linear layer
with the model built through `finetune_trainer.model`, the code path the trainer uses.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "trainer_image")]

SHAPE = {
    "vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
    "num_attention_heads": 32, "num_key_value_heads": 4, "max_position_embeddings": 4096,
}  # fmt: skip
"""TinyLlama-1.1B's architecture: 1.1B parameters."""


def _save_random_model(directory: Path) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    with torch.device("cuda"):
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SHAPE)).to(torch.bfloat16)
    model.save_pretrained(directory)
    del model
    torch.cuda.empty_cache()


def measure(method: str, model_dir: Path, steps: int, batch: int, seq: int) -> dict[str, Any]:
    """Train `steps` steps with `method` and return peak memory and throughput (runs in its own process)."""
    import torch
    from finetune_api.job import FineTuneJobSpec
    from finetune_trainer import model as model_lib

    method_spec: dict[str, Any] = {
        "type": method,
        "lora": {"r": 16, "alpha": 32, "targetModules": ["all-linear"]},
    }
    if method == "qlora":
        method_spec["quantization"] = {
            "bits": 4,
            "quantType": "nf4",
            "doubleQuant": True,
            "computeDtype": "bfloat16",
        }
    spec = FineTuneJobSpec.model_validate({
        "model": {"uri": "pvc://bench/model"}, "method": method_spec, "dataset": {"uri": "pvc://bench/data.jsonl"},
        "training": {"gradientCheckpointing": True},
    })  # fmt: skip
    placement = model_lib.Placement(torch.device("cuda"), torch.bfloat16)
    torch.cuda.reset_peak_memory_stats()
    net = model_lib.load_model(model_dir, spec, placement, tokenizer=None)
    loaded = torch.cuda.max_memory_allocated()
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, SHAPE["vocab_size"], (batch, seq), device="cuda")
    warmup = 3
    for step in range(steps + warmup):
        if step == warmup:
            torch.cuda.synchronize()
            started = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = net(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    return {
        "method": method,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "weights_memory_gib": round(loaded / 2**30, 2),
        "tokens_per_second": round(steps * batch * seq / elapsed, 1),
        "seconds_per_step": round(elapsed / steps, 4),
        "final_loss": round(float(loss), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], Path(args.child[1]), args.steps, args.batch, args.seq)))
        return 0
    import torch

    if not torch.cuda.is_available():
        print("needs an NVIDIA GPU", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                               "shape": SHAPE, "steps": args.steps, "batch": args.batch, "seq": args.seq}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        _save_random_model(Path(tmp))
        for method in ("lora", "qlora"):
            command = [sys.executable, __file__, "--steps", str(args.steps), "--batch", str(args.batch),
                       "--seq", str(args.seq), "--child", method, tmp]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results[method] = json.loads(done.stdout.strip().splitlines()[-1])
    results["memory_saved"] = round(
        1 - results["qlora"]["peak_memory_gib"] / results["lora"]["peak_memory_gib"], 3
    )
    results["qlora_speed_ratio"] = round(
        results["qlora"]["tokens_per_second"] / results["lora"]["tokens_per_second"], 3
    )
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
