"""Overhead of the trainer's recipe over a bare PEFT training loop: same tiny model, data, steps and math.

Run with `make bench` (or `python benchmarks/trainer_overhead.py [--steps N --repeats R]`). Both sides train LoRA on
tiny-llama for the same number of optimizer steps on the same tokenized rows, with AdamW, gradient clipping and a
constant schedule, on one CPU thread. Each side's rate is measured between its step `--warmup` and its last step,
so model loading, tokenization and the final save are excluded. The sides alternate `--repeats` times and the
medians are compared; the recipe passes when its steps/s is at least 0.95 of the bare loop's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "trainer_image")]
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from finetune_operator.api.trainer import TrainerConfig  # noqa: E402
from finetune_trainer import model as model_lib  # noqa: E402
from finetune_trainer import recipe, tasks, tiny  # noqa: E402

THRESHOLD = 0.95
ROWS = [
    {"prompt": f"Question {i}: what is {i} plus {i + 1}?", "completion": f" The answer is {2 * i + 1}."}
    for i in range(64)
]


def _config(tmp: Path, steps: int, warmup: int) -> TrainerConfig:
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    spec = {
        "model": {"preset": "tiny-llama"},
        "dataset": {"uri": "pvc://data/rows.jsonl"},
        "training": {"maxSteps": steps, "learningRate": 1e-3, "lrScheduler": "constant", "warmupRatio": 0.0,
                     "perDeviceBatchSize": 8, "maxSeqLength": 64, "loggingSteps": warmup,
                     "checkpointSteps": 10 * steps},
    }  # fmt: skip
    return TrainerConfig.model_validate({
        "name": "bench", "spec": spec, "metrics_port": 0,
        "paths": {"output_dir": str(tmp / "out"), "checkpoint_dir": str(tmp / "out" / "ckpt"),
                  "cache_dir": str(ROOT / ".cache" / "trainer-presets"), "data_dir": str(data),
                  "termination_message_path": str(tmp / "termination-log")},
    })  # fmt: skip


def run_recipe(cfg: TrainerConfig, warmup: int) -> float:
    """Steps/s of `recipe.main` between step `warmup` and the last step, read from its JSON log lines."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert recipe.main(cfg) == 0
    steps = {
        e["step"]: e["time"] for e in map(json.loads, out.getvalue().splitlines()) if e["event"] == "step"
    }
    last = max(steps)
    return (last - warmup) / (steps[last] - steps[warmup])


def run_bare(cfg: TrainerConfig, warmup: int) -> float:
    """Steps/s of the loop from the peft README: DataLoader, forward, backward, clip, step, zero_grad."""
    torch.manual_seed(cfg.spec.training.seed)
    base_dir = tiny.build_tiny_preset("tiny://llama", Path(cfg.paths.cache_dir))
    tokenizer = transformers.AutoTokenizer.from_pretrained(base_dir)
    features = tasks.encode_all(ROWS, tokenizer, cfg.spec.task, cfg.spec.dataset.columns, 64)
    model = transformers.AutoModelForCausalLM.from_pretrained(base_dir)
    model = peft.get_peft_model(model, model_lib.lora_config(cfg.spec))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    loader = torch.utils.data.DataLoader(
        features, batch_size=8, shuffle=True, drop_last=True,
        collate_fn=lambda rows: tasks.collate(rows, tokenizer.pad_token_id),
    )  # fmt: skip
    total = cfg.spec.training.max_steps or 0
    step, started = 0, 0.0
    while step < total:
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if step == warmup:
                started = time.time()
            if step == total:
                break
    return (total - warmup) / (time.time() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    bare: list[float] = []
    ours: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            cfg = _config(Path(tmp) / f"r{repeat}", args.steps, args.warmup)
            bare.append(run_bare(cfg, args.warmup))
            ours.append(run_recipe(cfg, args.warmup))
            print(
                f"repeat {repeat}: bare {bare[-1]:.1f} steps/s, recipe {ours[-1]:.1f} steps/s",
                file=sys.stderr,
            )
    result: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
        "bare_steps_per_s": round(statistics.median(bare), 2), "recipe_steps_per_s": round(statistics.median(ours), 2),
    }  # fmt: skip
    result["ratio"] = round(result["recipe_steps_per_s"] / result["bare_steps_per_s"], 3)
    result["pass"] = result["ratio"] >= THRESHOLD
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
