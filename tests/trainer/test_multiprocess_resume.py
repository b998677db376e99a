"""Multi-process runs as pods start them: two "nodes" through the image's launcher, and a DeepSpeed restart.

Both are slow (two torchrun launches each), so they carry `slow` as well as `trainer`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from finetune_trainer import checkpoint

from tests.trainer.trainerkit import (
    INSTRUCTIONS,
    ROOT,
    SUBPROCESS_ENV,
    launch,
    make_config,
    parse_events,
    read_summary,
    trainer_command,
    write_config,
)  # fmt: skip

pytestmark = pytest.mark.slow


def test_two_nodes_rendezvous_through_the_launcher(tmp_path: Path) -> None:
    spec = {"model": {"preset": "tiny-llama"}, "distributed": {"nodes": 2, "processesPerNode": 1},
            "training": {"maxSteps": 4, "perDeviceBatchSize": 2}}  # fmt: skip
    config_file = write_config(make_config(tmp_path, spec, INSTRUCTIONS))
    env = {**os.environ, **SUBPROCESS_ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29531"}
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "finetune_trainer.launch", "--config", str(config_file)],
            env={**env, "JOB_COMPLETION_INDEX": str(index)},
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        for index in (0, 1)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]

    assert [node.returncode for node in nodes] == [0, 0]
    events = parse_events(outputs[0])
    assert next(e for e in events if e["event"] == "start")["world_size"] == 2
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3, 4]
    assert parse_events(outputs[1]) == []  # only global rank 0 logs
    assert json.loads((tmp_path / "termination-log").read_text())["metrics"]["step"] == 4


def test_deepspeed_run_killed_and_restarted_ends_on_the_same_curve(tmp_path: Path) -> None:
    spec = {"model": {"preset": "tiny-llama"}, "distributed": {"deepspeed": {"zeroStage": 2}},
            "training": {"maxSteps": 20, "perDeviceBatchSize": 2, "checkpointSteps": 3}}  # fmt: skip
    reference = launch(make_config(tmp_path / "reference", spec, INSTRUCTIONS), nproc=2)
    cfg = make_config(tmp_path / "killed", spec, INSTRUCTIONS)
    # A pod kill: SIGKILL to torchrun and both ranks at once (torchrun puts its workers in their own sessions, so a
    # process-group kill would miss them), once step 7 is logged (checkpoint 6 is complete).
    group = subprocess.Popen(
        trainer_command(write_config(cfg), 2), env={**os.environ, **SUBPROCESS_ENV}, cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert group.stdout is not None
    for line in group.stdout:
        if line.startswith('{"event": "step"') and json.loads(line)["step"] >= 7:
            agent = psutil.Process(group.pid)
            for process in [*agent.children(recursive=True), agent]:
                process.send_signal(signal.SIGKILL)
            break
    group.wait(timeout=60)
    last = checkpoint.complete_checkpoints(Path(cfg.paths.checkpoint_dir))[-1]
    saved = int(last.name.split("-")[1])
    assert 6 <= saved < 20, "the ranks ran on past the kill"  # steps take ~0.1 s; the kill lands a few later

    resumed = launch(cfg, nproc=2)

    assert resumed.rc == 0, read_summary(cfg)
    assert resumed.event("start")["resumed_from"] == saved
    assert sorted(resumed.losses) == list(range(saved + 1, 21))
    for step, loss in resumed.losses.items():
        assert loss == pytest.approx(reference.losses[step], rel=1e-4), f"step {step}"
