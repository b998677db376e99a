"""SIGTERM (pod deletion on suspend, preemption, node drain): a checkpoint at the step the ranks agree on, exit 143.

A restart must continue the loss curve of an uninterrupted run from exactly that step: no finished step is lost.
Periodic checkpoints are off (every 1000 steps), so the checkpoint the restart finds can only be SIGTERM's.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from finetune_api.trainer import ExitCode, TerminationMessage, TrainerConfig
from finetune_trainer import checkpoint

from tests.trainer.trainerkit import (
    INSTRUCTIONS,
    Run,
    launch,
    make_config,
    parse_events,
    read_summary,
    start,
    wait_for_step,
    write_config,
)  # fmt: skip

SPEC = {"model": {"preset": "tiny-llama"}, "training": {"maxSteps": 30, "checkpointSteps": 1000}}


def _start_pod(cfg: TrainerConfig, stderr: Path) -> subprocess.Popen[str]:
    """The image's entry point (the launcher, torchrun's agent) in the background: its exit code is the pod's."""
    return start(
        [sys.executable, "-m", "finetune_trainer.launch", "--config", str(write_config(cfg))], stderr
    )


def _stopped_at(events: list[dict[str, Any]], cfg_dir: Path, signalled_after: int, last: int) -> int:
    """The step the run stopped at, checked against its log, its checkpoints and its termination message."""
    stopped = next(e for e in events if e["event"] == "stopped")["step"]
    assert signalled_after <= stopped < last, "the run stopped before the signal, or finished regardless"
    saved = checkpoint.complete_checkpoints(cfg_dir)
    assert [p.name for p in saved] == [f"checkpoint-{stopped}"]
    return int(stopped)


def _assert_continues(resumed: Run, reference: Run, stopped: int, last: int) -> None:
    assert resumed.rc == 0, resumed.summary
    assert resumed.event("start")["resumed_from"] == stopped
    assert sorted(resumed.losses) == list(range(stopped + 1, last + 1))
    for step, loss in resumed.losses.items():
        assert loss == pytest.approx(reference.losses[step], rel=1e-4), f"step {step}"


def test_sigterm_checkpoints_and_a_restart_continues_from_that_step(
    tmp_path: Path, train: Callable[..., Run]
) -> None:
    """As in a pod: SIGTERM goes to the container's main process (the launcher, torchrun's agent) only."""
    reference = train(SPEC, INSTRUCTIONS, sub="reference")
    signal_after = random.randint(2, 20)
    print(f"SIGTERM after step {signal_after}")
    cfg = make_config(tmp_path / "stopped", SPEC, INSTRUCTIONS)
    launcher = _start_pod(cfg, tmp_path / "stderr.log")

    wait_for_step(launcher, signal_after)
    launcher.send_signal(signal.SIGTERM)
    events = parse_events(launcher.communicate(timeout=120)[0])

    assert launcher.returncode == ExitCode.INTERRUPTED, (tmp_path / "stderr.log").read_text()[-3000:]
    stopped = _stopped_at(events, Path(cfg.paths.checkpoint_dir), signal_after, 30)
    message = TerminationMessage.model_validate(read_summary(cfg))
    assert (message.status, message.reason) == ("Failed", "Interrupted")
    assert f"step {stopped} of 30" in (message.message or "")
    assert not (Path(cfg.paths.output_dir) / "manifest.json").exists()

    _assert_continues(train(SPEC, INSTRUCTIONS, sub="stopped"), reference, stopped, 30)


@pytest.mark.slow
def test_two_ranks_stop_at_the_same_step_when_only_one_is_signalled(tmp_path: Path) -> None:
    """Across nodes SIGTERM may reach one pod only: the other ranks learn of it through the per-step all-reduce.

    Runs through the image's entry point (torchrun's agent in the launcher), whose exit code must be the trainer's.
    """
    spec = {**SPEC, "distributed": {"processesPerNode": 2},
            "training": {**SPEC["training"], "maxSteps": 20, "perDeviceBatchSize": 2}}  # fmt: skip
    reference = launch(make_config(tmp_path / "reference", spec, INSTRUCTIONS), nproc=2)
    cfg = make_config(tmp_path / "stopped", spec, INSTRUCTIONS)
    launcher = _start_pod(cfg, tmp_path / "stderr.log")

    signal_after = random.randint(2, 12)
    wait_for_step(launcher, signal_after)
    workers = psutil.Process(launcher.pid).children(recursive=True)
    rank_one = next(p for p in workers if p.environ().get("RANK") == "1")
    rank_one.send_signal(signal.SIGTERM)
    events = parse_events(launcher.communicate(timeout=300)[0])

    assert launcher.returncode == ExitCode.INTERRUPTED, (tmp_path / "stderr.log").read_text()[-3000:]
    stopped = _stopped_at(events, Path(cfg.paths.checkpoint_dir), signal_after, 20)
    assert {p.name for p in (Path(cfg.paths.checkpoint_dir) / f"checkpoint-{stopped}").iterdir()} >= {
        "rng-0.pt",
        "rng-1.pt",
        "state.json",
    }

    _assert_continues(launch(cfg, nproc=2), reference, stopped, 20)


def test_the_launcher_exits_with_the_trainers_code_not_torchruns(tmp_path: Path) -> None:
    rows = [*INSTRUCTIONS, {"prompt": "no answer"}]
    cfg = make_config(tmp_path, {"model": {"preset": "tiny-llama"}}, rows)
    launcher = _start_pod(cfg, tmp_path / "stderr.log")
    launcher.communicate(timeout=300)

    assert launcher.returncode == ExitCode.INVALID_CONFIG  # torchrun itself exits 1 for any failed worker
    assert read_summary(cfg)["message"] == (
        "line 9: field 'completion' missing (the row has 'prompt'); "
        "if another column holds it, name that column in dataset.columns"
    )
