"""Overhead of the trainer's recipe over a bare PEFT training loop: same tiny model, data, steps and math.

Run with `make bench` (or `python benchmarks/trainer_overhead.py [--steps N --repeats R]`). Both sides train LoRA on
tiny-llama for the same number of optimizer steps on the same tokenized rows, with AdamW, gradient clipping and a
constant schedule, on one CPU thread. Each side stamps the clocks as every step ends (the recipe through a patched
`Reporter.step`); steps before `--warmup` are dropped, so model loading, tokenization and the final save are
excluded. The rate is 1 / the median step time, which ignores steps another process stole the CPU from (this
runs on shared CI machines); steps per CPU-second are reported too. The sides alternate `--repeats` times and the
medians are compared; the recipe passes when its steps/s is at least 0.95 of the bare loop's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "trainer_image")]
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from finetune_api.trainer import TrainerConfig  # noqa: E402
from finetune_trainer import data, metrics, recipe, tasks, tiny  # noqa: E402
from finetune_trainer import model as model_lib  # noqa: E402

THRESHOLD = 0.95
ROWS = [
    {"prompt": f"Question {i}: what is {i} plus {i + 1}?", "completion": f" The answer is {2 * i + 1}."}
    for i in range(64)
]


def _config(tmp: Path, steps: int) -> TrainerConfig:
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    spec = {
        "model": {"preset": "tiny-llama"},
        "dataset": {"uri": "pvc://data/rows.jsonl"},
        "training": {"maxSteps": steps, "learningRate": 1e-3, "lrScheduler": "constant", "warmupRatio": 0.0,
                     "perDeviceBatchSize": 8, "maxSeqLength": 64, "loggingSteps": 10,
                     "checkpointSteps": 10 * steps},
    }  # fmt: skip
    return TrainerConfig.model_validate({
        "name": "bench", "spec": spec, "metrics_port": 0,
        "paths": {"output_dir": str(tmp / "out"), "checkpoint_dir": str(tmp / "out" / "ckpt"),
                  "cache_dir": str(ROOT / ".cache" / "trainer-presets"), "data_dir": str(data),
                  "termination_message_path": str(tmp / "termination-log")},
    })  # fmt: skip


Stamps = list[tuple[float, float]]
"""(wall, cpu) clock readings taken as each optimizer step ends."""


def run_recipe(cfg: TrainerConfig) -> Stamps:
    """Train with `recipe.main`, stamping the clocks as each step is reported."""
    stamps: Stamps = []
    report = metrics.Reporter.step

    def stamped(self: metrics.Reporter, *args: Any, **kwargs: Any) -> None:
        stamps.append((time.perf_counter(), time.process_time()))
        report(self, *args, **kwargs)

    with mock.patch.object(metrics.Reporter, "step", stamped), contextlib.redirect_stdout(io.StringIO()):
        assert recipe.main(cfg) == 0
    return stamps


def run_bare(cfg: TrainerConfig) -> Stamps:
    """Train with the loop from the peft README: DataLoader, forward, backward, clip, step, schedule, zero_grad."""
    torch.manual_seed(cfg.spec.training.seed)
    base_dir = tiny.ensure_tiny_preset("tiny://llama", Path(cfg.paths.cache_dir))
    tokenizer = transformers.AutoTokenizer.from_pretrained(base_dir)
    rows = data.read_records(Path(cfg.paths.data_dir) / "rows.jsonl", "jsonl")
    features = tasks.encode_all(rows, tokenizer, cfg.spec.task, cfg.spec.dataset.columns, 64).examples
    model = transformers.AutoModelForCausalLM.from_pretrained(base_dir)
    model = peft.get_peft_model(model, model_lib.lora_config(cfg.spec))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    scheduler = transformers.get_scheduler("constant", optimizer=optimizer)
    loader = torch.utils.data.DataLoader(
        features, batch_size=8, shuffle=True, drop_last=True,
        collate_fn=lambda rows: tasks.collate(rows, tokenizer.pad_token_id),
    )  # fmt: skip
    stamps: Stamps = []
    while len(stamps) < (cfg.spec.training.max_steps or 0):
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            stamps.append((time.perf_counter(), time.process_time()))
            if len(stamps) == cfg.spec.training.max_steps:
                break
    return stamps


def rates(stamps: Stamps, warmup: int) -> tuple[float, float]:
    """(steps per second from the median wall time of a step, steps per CPU-second) after `warmup` steps.

    On a shared machine the median step ignores the steps another process stole time from, and CPU time ignores
    waiting altogether; both compare the work each loop does per step.
    """
    window = stamps[warmup - 1 :]
    walls = [b[0] - a[0] for a, b in itertools.pairwise(window)]
    cpu = window[-1][1] - window[0][1]
    return 1 / statistics.median(walls), (len(window) - 1) / cpu


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    bare: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            cfg = _config(Path(tmp) / f"r{repeat}", args.steps)
            bare.append(rates(run_bare(cfg), args.warmup))
            ours.append(rates(run_recipe(cfg), args.warmup))
            print(f"repeat {repeat}: bare {bare[-1][0]:.1f} steps/s ({bare[-1][1]:.1f}/CPU-s), "
                  f"recipe {ours[-1][0]:.1f} steps/s ({ours[-1][1]:.1f}/CPU-s)", file=sys.stderr)  # fmt: skip
    result: dict[str, Any] = {
        "machine": f"{_cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread",
        "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
        "bare_steps_per_s": round(statistics.median(b[0] for b in bare), 2),
        "recipe_steps_per_s": round(statistics.median(o[0] for o in ours), 2),
        "bare_steps_per_cpu_s": round(statistics.median(b[1] for b in bare), 2),
        "recipe_steps_per_cpu_s": round(statistics.median(o[1] for o in ours), 2),
    }  # fmt: skip
    result["ratio"] = round(result["recipe_steps_per_s"] / result["bare_steps_per_s"], 3)
    result["cpu_ratio"] = round(result["recipe_steps_per_cpu_s"] / result["bare_steps_per_cpu_s"], 3)
    result["pass"] = result["ratio"] >= THRESHOLD
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
