"""Before/after evaluation (`spec.evaluation`) as a fraction of training time, for each task on its tiny preset.

Run with `python benchmarks/evaluation_overhead.py [--steps N --repeats R --json FILE]`. Each task trains LoRA
(the default method) on 80 generated rows with `dataset.validationSplit: 0.1` (8 held-out rows), batch 4, for
`--steps` optimizer steps, with `evaluation.enabled` and the task's default metrics, through `recipe.main` on one
CPU thread. The wall and CPU time of the two evaluations (`FineTuneRecipe._score`: forwards, seq2seq's greedy
generations of at most 64 tokens, the gather and the metric libraries, their imports included on the first call)
are divided by those of the training loop (`FineTuneRecipe.train`). Medians over `--repeats` runs. Reported, not
asserted: the fraction depends on the held-out share and, for seq2seq, on how long generations run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "trainer_image")]
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from finetune_api.trainer import TrainerConfig  # noqa: E402
from finetune_trainer import recipe  # noqa: E402
from trainer_overhead import _cpu_name  # noqa: E402

NAMES = ["alice", "bob", "marie", "paul", "anna", "tom", "lena", "max"]
CITIES = ["london", "paris", "berlin", "warsaw", "rome", "madrid", "vienna", "prague"]
ROWS = 80


def _rows(task: str) -> list[dict[str, Any]]:
    pairs = [(NAMES[i % 8], CITIES[(i * 3) % 8], i) for i in range(ROWS)]
    if task == "causal-lm":
        return [{"prompt": f"Where does {n} live?", "completion": f" {n} lives in {c}."} for n, c, _ in pairs]
    if task == "sequence-classification":
        return [
            {"text": f"{n} loved the trip to {c}" if i % 2 else f"{n} hated {c}", "label": i % 2}
            for n, c, i in pairs
        ]
    if task == "token-classification":
        return [{"tokens": [n, "lives", "in", c], "tags": ["B-PER", "O", "O", "B-LOC"]} for n, c, _ in pairs]
    if task == "seq2seq":
        return [{"source": f"{n} lives in {c}", "target": f"{n} wohnt in {c}"} for n, c, _ in pairs]
    return [{"question": f"Where does {n} live?", "context": f"{n} lives in {c}.",
             "answers": {"text": [c], "answer_start": [len(n) + 10]}} for n, c, _ in pairs]  # fmt: skip


TASKS: dict[str, dict[str, Any]] = {
    "causal-lm": {"model": {"preset": "tiny-llama"}},
    "sequence-classification": {
        "model": {"preset": "tiny-bert"},
        "task": {"labels": ["negative", "positive"]},
    },
    "token-classification": {"model": {"preset": "tiny-bert"}, "task": {"labels": ["O", "B-PER", "B-LOC"]}},
    "seq2seq": {"model": {"preset": "tiny-t5"}, "task": {}},
    "question-answering": {"model": {"preset": "tiny-bert"}, "task": {}},
}
"""task.type → the spec fields it needs besides the task type."""


def _config(tmp: Path, task: str, steps: int) -> TrainerConfig:
    (tmp / "data").mkdir(parents=True, exist_ok=True)
    (tmp / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(task)))
    spec = {
        "model": TASKS[task]["model"], "task": {"type": task, **TASKS[task].get("task", {})},
        "dataset": {"uri": "pvc://data/rows.jsonl", "validationSplit": 0.1}, "evaluation": {"enabled": True},
        "training": {"maxSteps": steps, "learningRate": 1e-3, "lrScheduler": "constant", "warmupRatio": 0.0,
                     "perDeviceBatchSize": 4, "maxSeqLength": 64, "loggingSteps": 10, "checkpointSteps": 10 * steps},
    }  # fmt: skip
    return TrainerConfig.model_validate({
        "name": "bench", "spec": spec, "metrics_port": 0,
        "paths": {"output_dir": str(tmp / "out"), "checkpoint_dir": str(tmp / "out" / "ckpt"),
                  "cache_dir": str(ROOT / ".cache" / "trainer-presets"), "data_dir": str(tmp / "data"),
                  "termination_message_path": str(tmp / "termination-log")},
    })  # fmt: skip


@contextlib.contextmanager
def _timed(name: str, spent: dict[str, list[float]]) -> Iterator[None]:
    """Add the wall and CPU seconds of every call of `FineTuneRecipe.<name>` to `spent[name]`."""
    method: Callable[..., Any] = getattr(recipe.FineTuneRecipe, name)
    spent[name] = [0.0, 0.0]

    def timed(self: recipe.FineTuneRecipe, *args: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return method(self, *args)
        finally:
            spent[name][0] += time.perf_counter() - wall
            spent[name][1] += time.process_time() - cpu

    with mock.patch.object(recipe.FineTuneRecipe, name, timed):
        yield


def measure(cfg: TrainerConfig) -> tuple[float, float, float]:
    """(training wall seconds, evaluation / training by wall time, by CPU time) of one run."""
    spent: dict[str, list[float]] = {}
    with _timed("train", spent), _timed("_score", spent), contextlib.redirect_stdout(io.StringIO()):
        assert recipe.main(cfg) == 0
    (train_wall, train_cpu), (eval_wall, eval_cpu) = spent["train"], spent["_score"]
    return train_wall, eval_wall / train_wall, eval_cpu / train_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    result: dict[str, Any] = {
        "machine": f"{_cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"1 thread, load {os.getloadavg()[0]:.1f}",
        "steps": args.steps, "repeats": args.repeats, "held_out_rows": ROWS // 10, "tasks": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for task in TASKS:
            runs = [
                measure(_config(Path(tmp) / f"{task}-{r}", task, args.steps)) for r in range(args.repeats)
            ]
            result["tasks"][task] = {
                "train_seconds": round(statistics.median(r[0] for r in runs), 2),
                "eval_fraction_wall": round(statistics.median(r[1] for r in runs), 3),
                "eval_fraction_cpu": round(statistics.median(r[2] for r in runs), 3),
            }
            print(task, result["tasks"][task], file=sys.stderr)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
