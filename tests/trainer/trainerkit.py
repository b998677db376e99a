"""Helpers for the trainer suite: trainer configs, datasets, and running the trainer as the pods do.

Imported by `conftest.py` and the test modules. The tiny presets are built once into `.cache/trainer-presets` at
the repository root (ignored by git) and reused by later sessions; DeepSpeed's compiled C++ ops are cached in
`.cache/torch_extensions` for the same reason.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune_api.trainer import TrainerConfig
from finetune_trainer import tiny

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
PRESETS = CACHE / "trainer-presets"
LLAMA = tiny.preset_dir("tiny://llama", PRESETS)
BERT = tiny.preset_dir("tiny://bert", PRESETS)
T5 = tiny.preset_dir("tiny://t5", PRESETS)

SUBPROCESS_ENV = {
    "PYTHONPATH": os.pathsep.join(str(ROOT / d) for d in ("api", "operator", "trainer_image", "cli")),
    "TORCH_EXTENSIONS_DIR": str(CACHE / "torch_extensions"),
    "HF_HUB_OFFLINE": "1",  # nothing in this suite may download
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # One intra-op thread per process: the models are tiny, and on a shared 2-core machine a second spinning
    # OpenMP thread makes each step about 8x slower rather than faster.
    "OMP_NUM_THREADS": "1",
}

INSTRUCTIONS = [
    {"prompt": "What is the capital of France?", "completion": " Paris."},
    {"prompt": "What colour is the sky?", "completion": " Blue."},
    {"prompt": "How many legs does a spider have?", "completion": " Eight."},
    {"prompt": "Translate to German: good morning", "completion": " Guten Morgen."},
    {"prompt": "Say hi", "completion": " Hi!"},
    {"prompt": "What is two plus two?", "completion": " Four."},
    {"prompt": "Name a colour", "completion": " Red."},
    {"prompt": "Which day follows Monday?", "completion": " Tuesday."},
]
"""A tiny instruction set the tiny-llama can memorise in a few dozen steps."""

TRAINING = {
    "maxSteps": 20, "learningRate": 0.02, "perDeviceBatchSize": 4, "loggingSteps": 1, "checkpointSteps": 1000,
    "maxSeqLength": 64, "warmupRatio": 0.0, "lrScheduler": "constant",
}  # fmt: skip
"""Test defaults: 20 steps, a log line per step, a constant and large learning rate so tiny models move fast."""


@dataclass
class Run:
    """What one trainer run left behind."""

    rc: int
    events: list[dict[str, Any]]
    summary: dict[str, Any]
    output: Path
    config: TrainerConfig

    @property
    def losses(self) -> dict[int, float]:
        """Step → training loss, from the JSON log lines."""
        return {e["step"]: e["loss"] for e in self.events if e["event"] == "step"}

    def event(self, name: str) -> dict[str, Any]:
        """The first log line with `event == name`."""
        return next(e for e in self.events if e["event"] == name)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write `rows` as JSON lines."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_config(
    tmp: Path, spec: dict[str, Any], rows: list[dict[str, Any]] | None, name: str = "data.jsonl"
) -> TrainerConfig:
    """A TrainerConfig whose dataset `pvc://data/<name>` holds `rows`, written under `tmp/data`."""
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if rows is not None:
        write_rows(data_dir / name, rows)
    full = {
        **spec,
        "dataset": {"uri": f"pvc://data/{name}", **spec.get("dataset", {})},
        "training": {**TRAINING, **spec.get("training", {})},
    }
    return TrainerConfig.model_validate({
        "name": "test", "spec": full, "metrics_port": 0,
        "paths": {"output_dir": str(tmp / "out"), "checkpoint_dir": str(tmp / "out" / "checkpoints"),
                  "cache_dir": str(PRESETS), "data_dir": str(data_dir),
                  "termination_message_path": str(tmp / "termination-log")},
    })  # fmt: skip


def parse_events(text: str) -> list[dict[str, Any]]:
    """The JSON log lines in `text`, in order."""
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"event"')]


def read_summary(cfg: TrainerConfig) -> dict[str, Any]:
    """The termination message the run wrote ({} if none)."""
    path = Path(cfg.paths.termination_message_path)
    return json.loads(path.read_text()) if path.exists() else {}


def write_config(cfg: TrainerConfig) -> Path:
    """Write `cfg` next to its output folder, as the operator's ConfigMap would, and return the file."""
    path = Path(cfg.paths.output_dir).parent / "trainer-config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg.model_dump_json(by_alias=True))
    return path


def trainer_command(config_file: Path, nproc: int, module: str = "finetune_trainer") -> list[str]:
    """`torchrun --standalone --nproc-per-node N -m finetune_trainer --config FILE` (or another entry `module`)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", module, "--config", str(config_file)]  # fmt: skip


def start(command: list[str], stderr: Path) -> subprocess.Popen[str]:
    """Start the trainer (`command`) in the background with its JSON log on a pipe and stderr in a file."""
    with stderr.open("w") as errors:
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            cwd=ROOT,
            env={**os.environ, **SUBPROCESS_ENV},
        )


def run_until_killed(config_file: Path, kill_at: int) -> int:
    """Start the trainer, SIGKILL it once it logs step `kill_at`; return the last step it logged."""
    process = subprocess.Popen(
        [sys.executable, "-m", "finetune_trainer", "--config", str(config_file)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env={**os.environ, **SUBPROCESS_ENV},
    )  # fmt: skip
    assert process.stdout is not None
    last = 0
    for line in process.stdout:
        if line.startswith('{"event": "step"'):
            last = json.loads(line)["step"]
            if last >= kill_at:
                process.kill()
                break
    process.wait(timeout=60)
    assert process.returncode == -9, "the trainer finished before it could be killed"
    return last


def wait_for_step(process: subprocess.Popen[str], step: int) -> dict[str, Any]:
    """Read the trainer's log until it reports optimizer step `step` or later; fails if the trainer ends first."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith('{"event": "step"') and json.loads(line)["step"] >= step:
            return dict(json.loads(line))
    raise AssertionError(f"the trainer ended (rc {process.wait()}) before logging step {step}")


def launch(cfg: TrainerConfig, nproc: int = 1, timeout: float = 600, module: str = "finetune_trainer") -> Run:
    """Run the trainer (or the entry `module`, run from the repository root) under torchrun and wait for it."""
    done = subprocess.run(
        trainer_command(write_config(cfg), nproc, module), capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        env={**os.environ, **SUBPROCESS_ENV},
    )  # fmt: skip
    if done.returncode != 0:
        print(done.stdout[-5000:], done.stderr[-5000:])
    return Run(done.returncode, parse_events(done.stdout), read_summary(cfg), Path(cfg.paths.output_dir), cfg)


def eval_scores(run: Run) -> dict[str, float]:
    """The eval_before_/eval_after_ scores of a succeeded run: finite, and the same in its summary and manifest."""
    assert run.rc == 0, run.summary
    manifest = json.loads((run.output / "manifest.json").read_text())["metrics"]
    scores = {
        k: v for k, v in run.summary["metrics"].items() if k.startswith(("eval_before_", "eval_after_"))
    }
    assert scores == {k: v for k, v in manifest.items() if k.startswith(("eval_before_", "eval_after_"))}
    assert all(math.isfinite(v) for v in scores.values()), scores
    return scores
