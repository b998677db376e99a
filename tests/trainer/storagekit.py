"""Helpers for the storage tests: run the trainer in this process with a private cache, fill buckets and
registries, load what came back with PEFT, and look for credentials in everything a run leaves behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import peft
import pytest
import torch
import transformers
from finetune_api.trainer import TrainerConfig
from finetune_trainer import recipe, tiny

from tests.trainer.trainerkit import INSTRUCTIONS, PRESETS, Run, make_config, parse_events, read_summary

QUICK = {"maxSteps": 3}


def base_model() -> Path:
    """The tiny-llama checkpoint folder (built once into the presets cache)."""
    return tiny.ensure_tiny_preset("tiny://llama", PRESETS)


def files_of(folder: Path) -> list[str]:
    """Every file under `folder`, relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def run_job(tmp: Path, spec: dict[str, Any], capsys: pytest.CaptureFixture[str], rows: bool = True) -> Run:
    """Train `spec` in this process; downloads go to a cache under `tmp` (not the shared presets cache)."""
    cfg = make_config(
        tmp, {**spec, "training": {**QUICK, **spec.get("training", {})}}, INSTRUCTIONS if rows else None
    )
    cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"cache_dir": str(tmp / "cache")})})
    return run_config(cfg, capsys)


def run_config(cfg: TrainerConfig, capsys: pytest.CaptureFixture[str]) -> Run:
    capsys.readouterr()
    rc = recipe.main(cfg)
    captured = capsys.readouterr()
    run = Run(rc, parse_events(captured.out), read_summary(cfg), Path(cfg.paths.output_dir), cfg)
    run.logs = captured.out + captured.err  # type: ignore[attr-defined]
    return run


def put_folder(client: Any, bucket: str, prefix: str, folder: Path) -> None:
    """Upload every file of `folder` under s3://bucket/prefix/."""
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    for name in files_of(folder):
        client.fput_object(bucket, f"{prefix}/{name}", str(folder / name))


def load_adapter(base: Path, adapter: Path) -> torch.Tensor:
    """Load `adapter` onto `base` with PEFT and return the logits of one short input."""
    model = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(base), adapter)
    with torch.no_grad():
        return model(input_ids=torch.tensor([[1, 2, 3, 4]])).logits


def assert_no_secret(run: Run, secrets: list[str], *more: Path) -> None:
    """None of `secrets` in the run's logs, termination message, manifest or the files `more`."""
    texts = [getattr(run, "logs", ""), Path(run.config.paths.termination_message_path).read_text()]
    texts += [path.read_text() for path in (run.output / "manifest.json", *more) if path.is_file()]
    for secret in secrets:
        assert not any(secret in text for text in texts), "a credential leaked"
