"""`finetune run` (run_local) and the container entry point's torchrun command."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import pytest
import yaml
from finetune_operator import api
from finetune_operator.api.trainer import TerminationMessage, TrainerConfig, TrainerPaths, trainer_config
from finetune_operator.cli import app
from finetune_trainer import launch, local
from rich.console import Console
from typer.testing import CliRunner

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
    message = TerminationMessage.model_validate(result.summary)
    assert message.status == "Succeeded"
    assert message.metrics["step"] == 6
    assert not any(name.startswith(".local") for name in message.digests or {})
    manifest = tmp_path / "out" / "manifest.json"
    assert message.digest == f"sha256:{hashlib.sha256(manifest.read_bytes()).hexdigest()}"
    assert json.loads(manifest.read_text())["job"]["name"] == "tiny-lora"
    assert "6/6" in screen.getvalue()


def test_finetune_run_names_a_generate_name_job_like_the_api_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "DEFAULT_CACHE", PRESETS)
    documents = list(yaml.safe_load_all((ROOT / "examples" / "tiny-lora.yaml").read_text()))
    documents[0]["metadata"] = {"generateName": "tiny-lora-"}
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))

    result = CliRunner().invoke(
        app, ["run", str(manifest), "--output", str(tmp_path / "out"), "--max-steps", "2"]
    )

    assert result.exit_code == 0, result.output
    name = json.loads((tmp_path / "out" / "manifest.json").read_text())["job"]["name"]
    assert re.fullmatch(r"tiny-lora-[bcdfghjklmnpqrstvwxz2456789]{5}", name)
    again = local.build_local_config(manifest, (tmp_path / "out").resolve(), max_steps=None)
    assert again.name == name  # a rerun into the same folder keeps the name (and its checkpoints)


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
    args = launch.torchrun_args(cfg, Path("/etc/finetune/c.json"), {}, visible_gpus=0)

    assert args == ["--nproc-per-node=2", f"--shutdown-timeout={launch.SHUTDOWN_TIMEOUT_S}", "--standalone",
                    "-m", "finetune_trainer", "--config", "/etc/finetune/c.json"]  # fmt: skip


def test_multi_node_launch_uses_the_indexed_job_rank() -> None:
    cfg = _config({"nodes": 2})
    env = {"MASTER_ADDR": "demo-0.demo", "JOB_COMPLETION_INDEX": "1"}
    args = launch.torchrun_args(cfg, Path("c.json"), env, visible_gpus=4)

    assert args[0] == "--nproc-per-node=4"
    assert args[2:6] == ["--nnodes=2", "--node-rank=1", "--master-addr=demo-0.demo", "--master-port=29500"]
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        launch.torchrun_args(cfg, Path("c.json"), {}, visible_gpus=4)
