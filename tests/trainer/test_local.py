"""`finetune run` (run_local) and the container entry point's torchrun command."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from finetune_operator import api
from finetune_operator.api.trainer import ExitCode, TrainerConfig, TrainerPaths, trainer_config
from finetune_trainer import launch, local
from rich.console import Console

from tests.trainer.trainerkit import PRESETS, ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_run_local_trains_the_tiny_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "DEFAULT_CACHE", PRESETS)
    screen = io.StringIO()
    console = Console(file=screen, width=100)

    result = local.run_local(
        ROOT / "examples" / "tiny-lora.yaml", tmp_path / "out", max_steps=6, console=console
    )

    assert result.returncode == 0, result.summary
    assert result.summary["status"] == "Succeeded"
    assert result.summary["metrics"]["step"] == 6
    assert not any(name.startswith(".local") for name in result.summary["digests"])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["job"]["name"] == "tiny-lora"
    assert "6/6" in screen.getvalue()


def test_run_local_refuses_another_job_s_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two jobs, one output folder (issue 7): the second is refused; the first still resumes its own run."""
    monkeypatch.setattr(local, "DEFAULT_CACHE", PRESETS)
    example = ROOT / "examples" / "tiny-lora.yaml"
    other = tmp_path / "other.yaml"
    other.write_text(example.read_text().replace("name: tiny-lora\n", "name: other-lora\n", 1))
    console = Console(file=io.StringIO())

    def run(manifest: Path) -> local.LocalRun:
        return local.run_local(manifest, tmp_path / "out", max_steps=2, console=console)

    first = run(example)
    refused = run(other)
    again = run(example)

    assert first.returncode == 0, first.summary
    assert refused.returncode == ExitCode.INVALID_CONFIG
    assert refused.summary["reason"] == "CheckpointMismatch"
    assert "belongs to job default/tiny-lora " in refused.summary["message"]
    assert "not to this run, job default/other-lora " in refused.summary["message"]
    assert again.returncode == 0, again.summary
    log = (tmp_path / "out" / local.LOCAL_DIR / "trainer.log").read_text()
    assert '"resumed_from": 2' in log
    weights = "adapter_model.safetensors"
    assert again.summary["digests"][weights] == first.summary["digests"][weights]
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["job"]["name"] == "tiny-lora"


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_makes_a_local_trainer_config(example: Path, tmp_path: Path) -> None:
    cfg = local.build_local_config(example, tmp_path, max_steps=3, data_dir=tmp_path)

    assert cfg.max_steps_override == 3
    assert cfg.spec.dataset.uri


def _config(distributed: dict[str, object]) -> TrainerConfig:
    job = api.parse({
        "apiVersion": "finetune.io/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": "demo"},
        "spec": {"model": {"preset": "tiny-llama"}, "dataset": {"uri": "pvc://d/x.jsonl"}, "distributed": distributed},
    })  # fmt: skip
    return trainer_config(job, TrainerPaths())


def test_single_node_launch_is_standalone() -> None:
    cfg = _config({"processesPerNode": 2})
    command = launch.build_torchrun_command(cfg, Path("/etc/finetune/c.json"), {}, visible_gpus=0)

    assert command == [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone",
                       "-m", "finetune_trainer", "--config", "/etc/finetune/c.json"]  # fmt: skip


def test_multi_node_launch_uses_the_indexed_job_rank() -> None:
    cfg = _config({"nodes": 2})
    env = {"MASTER_ADDR": "demo-0.demo", "JOB_COMPLETION_INDEX": "1"}
    command = launch.build_torchrun_command(cfg, Path("c.json"), env, visible_gpus=4)

    assert command[3:8] == ["--nproc-per-node=4", "--nnodes=2", "--node-rank=1", "--master-addr=demo-0.demo",
                            "--master-port=29500"]  # fmt: skip
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        launch.build_torchrun_command(cfg, Path("c.json"), {}, visible_gpus=4)
