"""`finetune run` (run_local) and the container entry point's torchrun command."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import finetune_api as api
import pytest
import yaml
from finetune_api.trainer import (
    ExitCode,
    TrainerConfig,
    TrainerPaths,
    trainer_config,
)
from finetune_cli.main import app
from finetune_trainer import data, launch, local, storage
from rich.console import Console
from typer.testing import CliRunner

from tests.trainer.trainerkit import PRESETS, ROOT, parse_events

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_run_local_trains_the_tiny_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "DEFAULT_CACHE", PRESETS)
    screen = io.StringIO()
    console = Console(file=screen, width=100)

    result = local.run_local(
        ROOT / "examples" / "tiny-lora.yaml", tmp_path / "out", max_steps=6, console=console
    )

    assert result.returncode == 0, result.summary
    assert result.summary is not None
    message = result.summary
    assert message.status == "Succeeded"
    assert message.metrics["step"] == 6
    assert not any(name.startswith(".local") for name in message.digests or {})
    manifest = tmp_path / "out" / "manifest.json"
    assert message.digest == f"sha256:{hashlib.sha256(manifest.read_bytes()).hexdigest()}"
    assert json.loads(manifest.read_text())["job"]["name"] == "tiny-lora"
    assert "6/6" in screen.getvalue()
    # loggingSteps is 10: the bar still gets a line every step, and the summary starts from step 1.
    log = parse_events((tmp_path / "out" / ".local" / "trainer.log").read_text())
    moves = [(e["event"], e["step"]) for e in log if e["event"] in ("progress", "step")]
    assert moves == [*(("progress", step) for step in range(1, 6)), ("step", 6)]
    first_step = next(e for e in log if e["event"] == "progress")
    assert result.first_loss == first_step["loss"]
    assert result.tokens_per_second is not None
    assert result.tokens_per_second > 0
    digest = hashlib.sha256((tmp_path / "out" / "manifest.json").read_bytes()).hexdigest()
    first, where, sha = local.describe(result)
    assert first.startswith("trained tiny-lora: 6 steps in ")
    assert f"loss {first_step['loss']:.4f} → {result.summary.metrics['loss']:.4f}" in first
    assert first.endswith(" tokens/s")
    assert where == f"adapter: {tmp_path / 'out'}"
    assert sha.startswith(f"digest: sha256:{digest} ")


def _stand_in(uri: str, root: Path) -> None:
    """Create what a pvc:// URI names under `root`: a file, or a folder shaped like a checkpoint."""
    path = root / uri.removeprefix("pvc://")
    if path.suffix:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        return
    path.mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (path / name).write_text("{}")


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
    assert refused.summary.reason == "CheckpointMismatch"
    assert "belongs to job default/tiny-lora " in (refused.summary.message or "")
    assert "not to this run, job default/other-lora " in (refused.summary.message or "")
    assert again.returncode == 0, again.summary
    log = (tmp_path / "out" / local.LOCAL_DIR / "trainer.log").read_text()
    assert '"resumed_from": 2' in log
    weights = "adapter_model.safetensors"
    assert (again.summary.digests or {})[weights] == (first.summary.digests or {})[weights]
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["job"]["name"] == "tiny-lora"


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
    again = local.stage_local_config(manifest, (tmp_path / "out").resolve(), max_steps=None)
    assert again.name == name  # a rerun into the same folder keeps the name (and its checkpoints)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_makes_a_local_trainer_config(example: Path, tmp_path: Path) -> None:
    job = api.parse(next(d for d in yaml.safe_load_all(example.read_text()) if d["kind"] == api.KIND))
    for uri in (job.spec.dataset.uri, job.spec.model.uri or ""):
        if uri.startswith("pvc://"):
            _stand_in(uri, tmp_path / "data")
    local_files = {"dataset": tmp_path / "data.jsonl"} if job.spec.dataset.uri.startswith("s3://") else {}
    (tmp_path / "data.jsonl").write_text("{}")

    cfg = local.stage_local_config(example, tmp_path / "out", 3, data_dir=tmp_path / "data", **local_files)

    assert cfg.max_steps_override == 3
    assert cfg.name == job.metadata.name
    paths = TrainerPaths(data_dir=cfg.paths.data_dir)  # the trainer finds the staged volumes as in a pod
    for dataset in (cfg.spec.dataset, data.evaluation_dataset(cfg.spec.dataset, cfg.spec.evaluation)):
        if dataset is not None and dataset.uri.startswith(("pvc://", "configmap://")):
            assert storage.resolve_dataset(dataset, paths).is_file()
    if (cfg.spec.model.uri or "").startswith("pvc://"):
        assert (storage.resolve_model(cfg.spec.model, paths) / "config.json").is_file()


def test_a_configmap_dataset_and_a_pvc_model_are_both_found(tmp_path: Path) -> None:
    documents = yaml.safe_load_all((ROOT / "examples" / "tiny-lora.yaml").read_text())
    job, configmap = (d for d in documents if d)
    job["spec"]["model"] = {"uri": "pvc://models/smol"}
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump_all([job, configmap]))
    _stand_in("pvc://models/smol", tmp_path)

    cfg = local.stage_local_config(manifest, tmp_path / "out", None)

    paths = TrainerPaths(data_dir=cfg.paths.data_dir)
    assert storage.resolve_dataset(cfg.spec.dataset, paths).read_text() == configmap["data"]["train.jsonl"]
    assert storage.resolve_model(cfg.spec.model, paths).resolve() == tmp_path / "models" / "smol"


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


def test_compiled_ops_move_to_scratch_when_their_folder_is_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DeepSpeed locks a file in the op's folder before loading it; the pod's root filesystem is read-only."""
    image_ops = tmp_path / "opt" / "torch_extensions"
    (image_ops / "deepspeed_shm_comm").mkdir(parents=True)
    (image_ops / "deepspeed_shm_comm" / "deepspeed_shm_comm.so").write_bytes(b"\x7fELF")
    env = {"TORCH_EXTENSIONS_DIR": str(image_ops)}

    launch.writable_extensions(env, tmp_path / "tmp")  # writable (as in tests and `finetune run`): left alone
    assert env["TORCH_EXTENSIONS_DIR"] == str(image_ops)

    monkeypatch.setattr(launch.os, "access", lambda path, mode: Path(path) != image_ops)
    launch.writable_extensions(env, tmp_path / "tmp")
    moved = Path(env["TORCH_EXTENSIONS_DIR"])
    assert moved == tmp_path / "tmp" / "torch_extensions"
    assert (moved / "deepspeed_shm_comm" / "deepspeed_shm_comm.so").read_bytes() == b"\x7fELF"
