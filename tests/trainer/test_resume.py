"""A run killed with SIGKILL at a random step resumes from its last complete checkpoint and ends where configured.

The resumed run must continue the loss curve of an uninterrupted run step for step: that only holds if the
weights, optimizer, scheduler, RNG state and data position all came back.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from finetune_api.trainer import ExitCode
from finetune_trainer import checkpoint, ownership, recipe

from tests.trainer.trainerkit import (
    INSTRUCTIONS,
    Run,
    make_config,
    parse_events,
    read_summary,
    run_until_killed,
    write_config,
)  # fmt: skip

SPEC = {"model": {"preset": "tiny-llama"}, "training": {"maxSteps": 30, "checkpointSteps": 5}}


def test_sigkill_then_restart_continues_the_loss_curve(
    tmp_path: Path, train: Callable[..., Run], capsys: pytest.CaptureFixture[str]
) -> None:
    reference = train(SPEC, INSTRUCTIONS, sub="reference")
    kill_at = random.randint(6, 24)
    print(f"killing at step {kill_at}")
    cfg = make_config(tmp_path / "killed", SPEC, INSTRUCTIONS)

    killed_at = run_until_killed(write_config(cfg), kill_at)
    saved = checkpoint.complete_checkpoints(Path(cfg.paths.checkpoint_dir))
    assert saved, "no checkpoint was complete before the kill"
    capsys.readouterr()
    rc = recipe.main(cfg)
    resumed = Run(
        rc, parse_events(capsys.readouterr().out), read_summary(cfg), Path(cfg.paths.output_dir), cfg
    )

    assert rc == 0, resumed.summary
    resumed_from = resumed.event("start")["resumed_from"]
    assert resumed_from == int(saved[-1].name.split("-")[1])
    assert resumed_from % 5 == 0 and killed_at - 5 <= resumed_from <= killed_at
    assert sorted(resumed.losses) == list(range(resumed_from + 1, 31))
    assert resumed.summary["metrics"]["step"] == 30
    for step, loss in resumed.losses.items():
        assert loss == pytest.approx(reference.losses[step], rel=1e-4), f"step {step}"


def test_restore_ignores_a_checkpoint_that_was_being_written(train: Callable[..., Run]) -> None:
    first = train({**SPEC, "training": {"maxSteps": 10, "checkpointSteps": 5}}, INSTRUCTIONS)
    root = Path(first.config.paths.checkpoint_dir)
    assert [p.name for p in checkpoint.complete_checkpoints(root)] == ["checkpoint-5", "checkpoint-10"]
    (root / "checkpoint-15.partial").mkdir()  # a save cut short by a kill
    (root / "checkpoint-15.partial" / "rng-0.pt").write_bytes(b"truncated")

    assert checkpoint.complete_checkpoints(root)[-1].name == "checkpoint-10"


def test_resume_can_be_disabled(train: Callable[..., Run]) -> None:
    spec = {**SPEC, "training": {"maxSteps": 6, "checkpointSteps": 3}}
    train(spec, INSTRUCTIONS, sub="same")
    again = train({**spec, "runPolicy": {"resumeFromCheckpoint": False}}, INSTRUCTIONS, sub="same")

    assert again.event("start")["resumed_from"] is None
    assert sorted(again.losses) == list(range(1, 7))


def test_a_restart_after_the_last_step_only_saves_again(train: Callable[..., Run]) -> None:
    spec = {**SPEC, "training": {"maxSteps": 6, "checkpointSteps": 3}}
    first = train(spec, INSTRUCTIONS, sub="same")
    again = train(spec, INSTRUCTIONS, sub="same")

    assert again.rc == 0, again.summary
    assert again.event("start")["resumed_from"] == 6
    assert again.losses == {}
    assert again.summary["metrics"]["step"] == 6
    assert (
        again.summary["digests"]["adapter_model.safetensors"]
        == first.summary["digests"]["adapter_model.safetensors"]
    )


ANOTHER_RUN = {
    "another-job": ({"name": "other"}, {}),
    "recreated-job": ({"uid": "uid-2"}, {}),
    "changed-spec": ({}, {"learningRate": 0.01}),
    "other-max-steps": ({"max_steps_override": 8}, {}),
}
"""What differs in the second run: TrainerConfig fields, spec.training fields."""


@pytest.mark.parametrize(("config", "training"), ANOTHER_RUN.values(), ids=ANOTHER_RUN.keys())
def test_another_run_s_checkpoints_are_refused(
    train: Callable[..., Run], config: dict[str, Any], training: dict[str, Any]
) -> None:
    spec = {**SPEC, "training": {"maxSteps": 6, "checkpointSteps": 3}}
    first = train(spec, INSTRUCTIONS, sub="same", uid="uid-1")
    manifest = (first.output / "manifest.json").read_text()
    other = {**spec, "training": {**spec["training"], **training}}
    second = train(other, INSTRUCTIONS, sub="same", **{"uid": "uid-1", **config})

    assert second.rc == ExitCode.INVALID_CONFIG
    assert second.summary["reason"] == "CheckpointMismatch"
    root = Path(first.config.paths.checkpoint_dir)
    assert second.summary["message"].startswith(
        f"{root / 'checkpoint-3'} belongs to job default/test (uid uid-1, "
    )
    assert (
        f"not to this run, job default/{second.config.name} (uid {second.config.uid}, "
        in second.summary["message"]
    )
    assert [e["event"] for e in second.events] == ["failed"]  # refused before anything was loaded
    assert [p.name for p in checkpoint.complete_checkpoints(root)] == ["checkpoint-3", "checkpoint-6"]
    assert (first.output / "manifest.json").read_text() == manifest


def test_another_job_s_result_is_refused(train: Callable[..., Run]) -> None:
    spec = {**SPEC, "training": {"maxSteps": 3, "checkpointSteps": 3}}
    first = train(spec, INSTRUCTIONS, sub="same")
    shutil.rmtree(first.config.paths.checkpoint_dir)
    manifest = (first.output / "manifest.json").read_text()
    second = train(spec, INSTRUCTIONS, sub="same", name="other")

    assert second.rc == ExitCode.INVALID_CONFIG
    assert second.summary["message"].startswith(
        f"{first.output / 'manifest.json'} belongs to job default/test "
    )
    assert (first.output / "manifest.json").read_text() == manifest


def test_checkpoints_that_record_no_run_are_refused(train: Callable[..., Run]) -> None:
    spec = {**SPEC, "training": {"maxSteps": 3, "checkpointSteps": 3}}
    first = train(spec, INSTRUCTIONS, sub="same")
    for folder in checkpoint.complete_checkpoints(Path(first.config.paths.checkpoint_dir)):
        (folder / ownership.FILE).unlink()  # as an older trainer wrote them
    again = train(spec, INSTRUCTIONS, sub="same")

    assert again.rc == ExitCode.INVALID_CONFIG
    assert "belongs to a run that recorded no identity (an older trainer)" in again.summary["message"]


class _RunsCode:
    """A pickle that would create `marker` when unpickled: what a crafted checkpoint holds."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


@pytest.mark.parametrize("name", ["rng-0.pt", "optimizer.pt"])
def test_a_crafted_checkpoint_file_is_refused_not_run(tmp_path: Path, name: str) -> None:
    marker, crafted = tmp_path / "ran", tmp_path / name
    torch.save({"state": _RunsCode(marker)}, crafted)
    with pytest.raises(
        checkpoint.UnsafeCheckpointError, match=f"checkpoint file {crafted} holds more than tensors"
    ):
        checkpoint.load_tensors(crafted)
    assert not marker.exists()
    torch.load(crafted, weights_only=False)  # what it would have done: the file really runs code
    assert marker.exists()
