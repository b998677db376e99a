"""Fixtures for the trainer suite: a shared preset cache, datasets, and running the recipe in or out of process.

Every test here really trains a tiny model on CPU, so all of them carry the `trainer` marker (added below). The
tiny presets are built once into `.cache/trainer-presets` at the repository root (ignored by git) and reused by
later sessions; DeepSpeed's compiled C++ ops are cached in `.cache/torch_extensions` for the same reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from finetune_operator.api.trainer import TrainerConfig

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
PRESETS = CACHE / "trainer-presets"
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(CACHE / "torch_extensions"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in this suite may download
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread: these models are tiny, and on a shared 2-core machine a second spinning OpenMP thread
# makes each step about 8x slower rather than faster.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.trainer)


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
        return {e["step"]: e["loss"] for e in self.events if e["event"] == "step"}

    def event(self, name: str) -> dict[str, Any]:
        return next(e for e in self.events if e["event"] == name)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_config(
    tmp: Path, spec: dict[str, Any], rows: list[dict[str, Any]] | None, name: str = "data.jsonl"
) -> TrainerConfig:
    """A TrainerConfig whose dataset `pvc://data/<name>` is `rows` written under `tmp/data`."""
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if rows is not None:
        write_rows(data_dir / name, rows)
    training = {
        "maxSteps": 20,
        "learningRate": 0.02,
        "perDeviceBatchSize": 4,
        "loggingSteps": 1,
        "checkpointSteps": 1000,
        "maxSeqLength": 64,
        "warmupRatio": 0.0,
        "lrScheduler": "constant",
    }
    full = {
        "dataset": {"uri": f"pvc://data/{name}"},
        **spec,
        "training": {**training, **spec.get("training", {})},
    }
    return TrainerConfig.model_validate(
        {
            "name": "test",
            "spec": full,
            "metrics_port": 0,
            "paths": {
                "output_dir": str(tmp / "out"),
                "checkpoint_dir": str(tmp / "out" / "checkpoints"),
                "cache_dir": str(PRESETS),
                "data_dir": str(data_dir),
                "termination_message_path": str(tmp / "termination-log"),
            },
        }
    )


def _parse_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"event"')]


def _summary(cfg: TrainerConfig) -> dict[str, Any]:
    path = Path(cfg.paths.termination_message_path)
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture
def train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Run the recipe in this process (fast: no interpreter start, torch already imported)."""
    from finetune_trainer import recipe

    def run(spec: dict[str, Any], rows: list[dict[str, Any]] | None, sub: str = "run") -> Run:
        cfg = make_config(tmp_path / sub, spec, rows)
        capsys.readouterr()
        rc = recipe.main(cfg)
        out = capsys.readouterr().out
        return Run(rc, _parse_events(out), _summary(cfg), Path(cfg.paths.output_dir), cfg)

    return run


def launch(cfg: TrainerConfig, nproc: int = 1, timeout: float = 600) -> Run:
    """Run the trainer as the pods do: `torchrun … -m finetune_trainer --config FILE`."""
    config_file = Path(cfg.paths.output_dir).parent / "trainer-config.json"
    config_file.write_text(cfg.model_dump_json(by_alias=True))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "finetune_trainer",
        "--config",
        str(config_file),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT / "trainer_image")]),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if done.returncode != 0:
        print(done.stdout[-5000:], done.stderr[-5000:])
    return Run(done.returncode, _parse_events(done.stdout), _summary(cfg), Path(cfg.paths.output_dir), cfg)


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
