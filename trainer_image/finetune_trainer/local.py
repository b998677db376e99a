"""`finetune run FILE`: train a FineTuneJob manifest on this machine, with a progress bar.

Called by the operator's CLI (`finetune_operator.cli`), which passes the manifest path and flags. The manifest is
validated with the API models, turned into a `TrainerConfig` with local folders, and trained by the same
`python -m finetune_trainer` the pods run (under torchrun when `nproc` > 1). Its JSON log lines drive a rich
progress bar. The run's own files (config, log, termination message, materialised data) go to `<output>/.local/`,
which digests skip; the log's tail is shown if the run fails.

Local stand-ins for cluster storage: a `configmap://name/key` dataset is read from a ConfigMap document named `name`
in the same file (as in `examples/tiny-lora.yaml`); `pvc://claim/path` is read as `<data_dir>/path`, where
`data_dir` defaults to the manifest's folder. A manifest with `metadata.generateName` is named as the API server
would name it, with a suffix derived from the output folder, so that a rerun into the same folder keeps the name.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from finetune_operator import api
from finetune_operator.api.trainer import CONFIG_FILE_NAME, TrainerConfig, TrainerPaths, trainer_config
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

DEFAULT_CACHE = Path(os.environ.get("FINETUNE_CACHE", Path.home() / ".cache" / "finetune"))
"""Built tiny presets and downloads, shared by local runs (override with $FINETUNE_CACHE)."""

LOCAL_DIR = ".local"
"""Folder under the output for the run's own files; hidden, so `output.digests` leaves it out."""

_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The characters the API server appends to a generateName prefix (no vowels, no look-alikes)."""


@dataclass
class LocalRun:
    """The outcome of `run_local`."""

    returncode: int
    summary: dict[str, Any] = field(default_factory=dict)
    """The termination message: status, output, metrics and digests, or the failure reason."""
    output_dir: Path = Path()


def _materialise_configmap(documents: list[dict[str, Any]], uri: str, data_dir: Path) -> None:
    name, _, key = uri.removeprefix("configmap://").partition("/")
    for doc in documents:
        if doc.get("kind") == "ConfigMap" and doc.get("metadata", {}).get("name") == name:
            if key not in doc.get("data", {}):
                raise ValueError(f"ConfigMap {name!r} in the manifest has no key {key!r}")
            data_dir.mkdir(parents=True, exist_ok=True)
            (data_dir / key).write_text(doc["data"][key])
            return
    raise ValueError(f"{uri}: put a ConfigMap named {name!r} in the same file to run it locally")


def local_name(job: api.FineTuneJob, output_dir: Path) -> str:
    """The job's name; for a generateName manifest, the prefix and 5 characters derived from `output_dir`."""
    if job.metadata.name:
        return job.metadata.name
    digest = hashlib.sha256(str(output_dir).encode()).digest()
    suffix = "".join(_NAME_SUFFIX_ALPHABET[b % len(_NAME_SUFFIX_ALPHABET)] for b in digest[:5])
    return f"{job.metadata.generate_name}{suffix}"


def build_local_config(
    manifest: Path, output_dir: Path, max_steps: int | None, data_dir: Path | None = None
) -> TrainerConfig:
    """The TrainerConfig for running `manifest` here; materialises configmap:// data under `output_dir`."""
    documents = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    jobs = [d for d in documents if d.get("kind") == api.KIND]
    if len(jobs) != 1:
        raise ValueError(f"{manifest} must hold exactly one {api.KIND}, found {len(jobs)}")
    job = api.parse(jobs[0])
    if job.spec.dataset.uri.startswith("configmap://"):
        data_dir = output_dir / LOCAL_DIR / "data"
        _materialise_configmap(documents, job.spec.dataset.uri, data_dir)
    paths = TrainerPaths(
        output_dir=str(output_dir), checkpoint_dir=str(output_dir / "checkpoints"), cache_dir=str(DEFAULT_CACHE),
        data_dir=str(data_dir or manifest.parent), termination_message_path=str(output_dir / LOCAL_DIR / "termination-log"),
    )  # fmt: skip
    named = job.metadata.model_copy(update={"name": local_name(job, output_dir)})
    cfg = trainer_config(job.model_copy(update={"metadata": named}), paths)
    return cfg.model_copy(update={"max_steps_override": max_steps, "metrics_port": 0})


def _command(config_file: Path, nproc: int) -> list[str]:
    trainer = ["-m", "finetune_trainer", "--config", str(config_file)]
    if nproc == 1:
        return [sys.executable, *trainer]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        *trainer,
    ]


def _follow(process: subprocess.Popen[str], log: Any, console: Console) -> None:
    """Draw the progress bar from the trainer's JSON lines; copy everything to the log file."""
    assert process.stdout is not None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("loading", total=None, loss="-")
        for line in process.stdout:
            log.write(line)
            if not line.startswith('{"event"'):
                continue
            event = json.loads(line)
            if event["event"] == "start":
                progress.update(bar, description="training", total=event["total_steps"],
                                completed=event["resumed_from"] or 0)  # fmt: skip
            elif event["event"] == "step":
                progress.update(bar, completed=event["step"], loss=f"{event['loss']:.4f}")
            elif event["event"] == "eval":
                progress.console.print(f"step {event['step']}: eval loss {event['eval_loss']:.4f}")


def run_local(
    manifest: Path,
    output_dir: Path,
    max_steps: int | None = None,
    nproc: int = 1,
    console: Console | None = None,
) -> LocalRun:
    """Train `manifest` here into `output_dir`; returns the exit code and the run summary."""
    console = console or Console(stderr=True)
    output_dir = output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    cfg = build_local_config(manifest.resolve(), output_dir, max_steps)
    config_file = output_dir / LOCAL_DIR / CONFIG_FILE_NAME
    config_file.parent.mkdir(exist_ok=True)
    config_file.write_text(cfg.model_dump_json(by_alias=True, indent=2))
    termination = Path(cfg.paths.termination_message_path)
    termination.unlink(missing_ok=True)
    env = {**os.environ, "TERMINATION_MESSAGE_PATH": str(termination), "PYTHONUNBUFFERED": "1"}
    with (output_dir / LOCAL_DIR / "trainer.log").open("w") as log:
        process = subprocess.Popen(_command(config_file, nproc), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, env=env)  # fmt: skip
        _follow(process, log, console)
        returncode = process.wait()
    summary = json.loads(termination.read_text()) if termination.exists() else {}
    if returncode != 0:
        tail = deque((output_dir / LOCAL_DIR / "trainer.log").read_text().splitlines(), maxlen=30)
        console.print("\n".join(tail), markup=False, highlight=False)
    return LocalRun(returncode, summary, output_dir)
