"""The trainer against TRL's SFTTrainer on the same LoRA work (CPU): real tokens/s, padding, peak memory, loss.

`make bench-trl` runs it (TRL is the `bench` extra, never needed to train). The model, tokenizer and rows are
`bench_lm.py`'s: SmolLM2-135M's shape, docstring rows with a long tail. Every side trains LoRA r=16, alpha 32,
dropout 0 on q/k/v/o, batch 4, sequence 512, fp32, AdamW at 1e-4 constant, clipping at 1.0, the loss on the
completion only, with 2 threads, for `--steps` optimizer steps:

- ours, each `training.batching` mode: `recipe.main` as the pods run it;
- TRL default and TRL `padding_free=True`: `SFTTrainer` on the rows our encoding made (so both sides train the same
  token ids), fed in the order of our padded and padding-free runs, so those four sides see the same micro-batches
  (length-grouped orders its own). Gradient checkpointing off (TRL's default turns it on; ours does not).

Each side runs in its own process (its peak RSS is its own), the sides alternate (reversed every other repeat), and
the rate of a side is the real (non-pad) tokens of the steps after `--warmup` over their wall time, also over their
CPU time, median over repeats. /proc/loadavg is read before and after every run: the machine may be shared.
`--profile` adds one run per padding-free side whose last step runs under torch's profiler (top ops by self time).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "trainer_image"), str(ROOT / "benchmarks")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import bench_lm  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from finetune_api.trainer import TrainerConfig  # noqa: E402
from finetune_trainer import batching, data, metrics, recipe, tasks  # noqa: E402

SIDES = ("ours padding-free", "ours length-grouped", "ours padded", "trl default", "trl padding_free")
BATCH, SEQ, LR, THREADS, SEED = 4, 512, 1e-4, 2, 0
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
Stamp = tuple[float, float, int]
"""(wall, cpu, real tokens so far) as each optimizer step ends."""


def _config(work: Path, steps: int, batching_mode: str) -> TrainerConfig:
    out = Path(
        tempfile.mkdtemp(prefix="out-", dir=work)
    )  # a run's own folders: a finished run's would stop it
    spec = {
        "model": {"uri": "pvc://work/model"},
        "dataset": {"uri": "pvc://work/rows.jsonl"},
        "task": {"lossOn": "completion"},
        "method": {"lora": {"r": 16, "alpha": 32, "dropout": 0.0, "targetModules": TARGETS}},
        "training": {"maxSteps": steps, "learningRate": LR, "lrScheduler": "constant", "warmupRatio": 0.0,
                     "perDeviceBatchSize": BATCH, "maxSeqLength": SEQ, "precision": "fp32", "loggingSteps": 1,
                     "checkpointSteps": 10 * steps, "batching": batching_mode, "seed": SEED},
    }  # fmt: skip
    return TrainerConfig.model_validate({
        "name": "bench", "spec": spec, "metrics_port": 0,
        "paths": {"output_dir": str(out), "checkpoint_dir": str(out / "ckpt"), "cache_dir": str(out / "cache"),
                  "data_dir": str(work), "termination_message_path": str(out / "termination-log")},
    })  # fmt: skip


def encoded(cfg: TrainerConfig) -> tuple[Any, list[tasks.Features]]:
    """The tokenizer and the training rows exactly as `recipe` encodes them, in its padded/padding-free order."""
    from finetune_trainer import model as model_lib

    spec = cfg.spec
    tokenizer = model_lib.load_tokenizer(Path(cfg.paths.data_dir) / "model", trust_remote_code=False)
    splits = data.load_splits(Path(cfg.paths.data_dir) / "rows.jsonl", spec.dataset, spec.task, SEED)
    rows = tasks.encode_all(splits.train, tokenizer, spec.task, spec.dataset.columns, SEQ).examples
    order = batching.epoch_order([len(r["input_ids"]) for r in rows], SEED, 1, BATCH, grouped=False)
    return tokenizer, [rows[i] for i in order]


class Clock:
    """Stamps each step's end; with `profile`, the last step runs under torch's profiler."""

    def __init__(self, steps: int, profile: bool):
        self.stamps: list[Stamp] = []
        self.steps, self.profiler = steps, torch.profiler.profile() if profile else None

    def tick(self, tokens: int) -> None:
        self.stamps.append((time.perf_counter(), time.process_time(), tokens))
        if self.profiler is not None and len(self.stamps) == self.steps - 1:
            self.profiler.start()
        if self.profiler is not None and len(self.stamps) == self.steps:
            self.profiler.stop()

    def top_ops(self) -> list[dict[str, Any]]:
        if self.profiler is None:
            return []
        ops = sorted(self.profiler.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in ops)
        return [{"op": e.key, "self_cpu_ms": round(e.self_cpu_time_total / 1000, 1),
                 "self_cpu_share": round(e.self_cpu_time_total / total, 3), "calls": e.count} for e in ops[:12]]  # fmt: skip


def run_ours(cfg: TrainerConfig, clock: Clock) -> tuple[list[float], float]:
    """`recipe.main`; (loss per step, pad fraction)."""
    losses: list[float] = []
    positions = [0, 0]  # real tokens, positions of the micro-batches
    report, collate = metrics.Reporter.step, batching.Layout.collate

    def stamped(self: metrics.Reporter, step: int, epoch: float, loss: float, *rest: Any) -> None:
        losses.append(loss)
        clock.tick(int(rest[-1]))
        report(self, step, epoch, loss, *rest)

    def counted(self: batching.Layout, examples: list[tasks.Features], pad_id: int) -> batching.Batch:
        batch = collate(self, examples, pad_id)
        positions[0] += batching.real_tokens(batch)
        positions[1] += int(batch["input_ids"].numel())
        return batch

    log = io.StringIO()
    with (mock.patch.object(metrics.Reporter, "step", stamped), mock.patch.object(batching.Layout, "collate", counted),
          contextlib.redirect_stdout(log)):  # fmt: skip
        code = recipe.main(cfg)
    if code != 0:
        raise RuntimeError(f"recipe.main exited {code}: {log.getvalue()[-2000:]}")
    return losses, 1 - positions[0] / positions[1]


def run_trl(cfg: TrainerConfig, clock: Clock, padding_free: bool) -> tuple[list[float], float]:
    """`SFTTrainer` on our encoded rows in our order (a sequential sampler); (loss per step, pad fraction)."""
    import datasets
    import peft
    import trl

    tokenizer, rows = encoded(cfg)
    rows = rows[: BATCH * clock.steps]
    batches = [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]
    real = [sum(len(r["input_ids"]) for r in b) for b in batches]
    padded = [BATCH * max(len(r["input_ids"]) for r in b) for b in batches]
    table = datasets.Dataset.from_list(
        [
            {"input_ids": r["input_ids"], "completion_mask": [int(t != tasks.IGNORE) for t in r["labels"]]}
            for r in rows
        ]
    )

    class InOrder(trl.SFTTrainer):  # type: ignore[misc]
        def _get_train_sampler(self, *args: Any) -> Any:
            return torch.utils.data.SequentialSampler(self.train_dataset)

    class Stamps(transformers.TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            clock.tick(sum(real[: len(clock.stamps) + 1]))

    args = trl.SFTConfig(
        output_dir=str(Path(cfg.paths.output_dir) / "trl"), per_device_train_batch_size=BATCH, max_steps=clock.steps,
        learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        optim="adamw_torch", logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=SEED,
        gradient_checkpointing=False, bf16=False, fp16=False, padding_free=padding_free, max_length=None,
        completion_only_loss=True, dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    model = transformers.AutoModelForCausalLM.from_pretrained(
        Path(cfg.paths.data_dir) / "model", dtype=torch.float32
    )
    lora = peft.LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM"
    )
    trainer = InOrder(model=model, args=args, train_dataset=table, processing_class=tokenizer, peft_config=lora,
                      callbacks=[Stamps()])  # fmt: skip
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return losses, 0.0 if padding_free else 1 - sum(real) / sum(padded)


def child(side: str, work: Path, steps: int, profile: bool) -> dict[str, Any]:
    """One side in this process: its stamps, losses, pad fraction, peak RSS and (with `profile`) top ops."""
    torch.set_num_threads(THREADS)
    transformers.logging.set_verbosity_error()
    clock = Clock(steps, profile)
    mode = side.split(" ", 1)[1]
    cfg = _config(work, steps, mode if side.startswith("ours") else "padded")
    if side.startswith("ours"):
        losses, pad = run_ours(cfg, clock)
    else:
        losses, pad = run_trl(cfg, clock, padding_free=mode == "padding_free")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "stamps": clock.stamps,
        "losses": losses,
        "pad_fraction": pad,
        "peak_rss_mib": peak,
        "ops": clock.top_ops(),
    }


def rate(result: dict[str, Any], warmup: int) -> tuple[float, float, int]:
    """(real tokens per wall second, per CPU second, tokens) over the steps after `warmup`."""
    (wall0, cpu0, tok0), (wall1, cpu1, tok1) = result["stamps"][warmup - 1], result["stamps"][-1]
    return (tok1 - tok0) / (wall1 - wall0), (tok1 - tok0) / (cpu1 - cpu0), tok1 - tok0


def _load() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _spawn(side: str, work: Path, steps: int, profile: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--side", side, "--work", str(work), "--steps", str(steps)]
    before = _load()
    done = subprocess.run(
        [*command, *(["--profile"] if profile else [])], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{side} failed:\n{done.stderr[-4000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load_before": before, "load_after": _load()}


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    import peft
    import trl

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "trl": trl.__version__}  # fmt: skip


def summary(runs: dict[str, list[dict[str, Any]]], warmup: int) -> dict[str, Any]:
    """Medians per side, and each side's rates relative to TRL padding_free's."""
    sides: dict[str, Any] = {}
    for side, results in runs.items():
        rates = [rate(r, warmup) for r in results]
        sides[side] = {
            "real_tokens_per_s": round(statistics.median(r[0] for r in rates), 2),
            "real_tokens_per_cpu_s": round(statistics.median(r[1] for r in rates), 2),
            "measured_tokens": rates[0][2],
            "pad_fraction": round(statistics.median(r["pad_fraction"] for r in results), 3),
            "peak_rss_mib": round(max(r["peak_rss_mib"] for r in results), 1),
            "losses": [round(x, 4) for x in results[0]["losses"]],
            "per_repeat_tokens_per_s": [round(r[0], 2) for r in rates],
            "load_before_after": [[r["load_before"][0], r["load_after"][0]] for r in results],
            "step_seconds": [
                [round(b[0] - a[0], 2) for a, b in itertools.pairwise(r["stamps"])] for r in results
            ],
        }
    anchor = sides["trl padding_free"]
    for values in sides.values():
        values["vs_trl_padding_free"] = round(values["real_tokens_per_s"] / anchor["real_tokens_per_s"], 3)
        values["vs_trl_padding_free_cpu"] = round(
            values["real_tokens_per_cpu_s"] / anchor["real_tokens_per_cpu_s"], 3
        )
    return sides


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument(
        "--warmup", type=int, default=2, help="steps not timed (the first is always excluded)"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES), help="the sides to run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(child(args.side, args.work, args.steps, args.profile)))
        return 0
    folder, rows = bench_lm.build(ROOT / ".cache" / "bench-models")
    sides = [side for side in SIDES if side in args.sides]
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "model").symlink_to(folder)
        (work / "rows.jsonl").symlink_to(rows)
        for repeat in range(args.repeats):
            for side in sides if repeat % 2 == 0 else reversed(sides):
                runs[side].append(_spawn(side, work, args.steps, profile=False))
                print(f"repeat {repeat} {side}: {rate(runs[side][-1], args.warmup)[0]:.1f} real tokens/s, load "
                      f"{runs[side][-1]['load_before'][0]} → {runs[side][-1]['load_after'][0]}", file=sys.stderr)  # fmt: skip
        profiles = {
            s: _spawn(s, work, args.warmup + 1, True)["ops"] for s in sides if args.profile and "free" in s
        }
    result = {
        "machine": f"{_cpu_name()}, {os.cpu_count()} cores, {THREADS} threads", "versions": _versions(),
        "workload": {"model": "SmolLM2-135M shape (bench_lm.py)", "lora": TARGETS, "batch": BATCH, "seq": SEQ,
                     "precision": "fp32", "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats},
        "sides": summary(runs, args.warmup), "profile_one_step": profiles,
        "minutes": round((time.time() - started) / 60, 1),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
