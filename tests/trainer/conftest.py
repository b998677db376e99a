"""Fixtures for the trainer suite. Every test here really trains a tiny model on CPU, so all carry `trainer`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.trainer.trainerkit import SUBPROCESS_ENV, Run, make_config, parse_events, read_summary

for _key, _value in SUBPROCESS_ENV.items():
    if _key != "PYTHONPATH":
        os.environ.setdefault(_key, _value)
torch.set_num_threads(1)  # see SUBPROCESS_ENV: in-process runs get the same single thread


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.trainer)


@pytest.fixture
def train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Run the recipe in this process (fast: no interpreter start, torch already imported).

    Keyword arguments replace fields of the TrainerConfig, e.g. `uid="…"`.
    """
    from finetune_trainer import recipe

    def run(spec: dict[str, Any], rows: list[dict[str, Any]] | None, sub: str = "run", **config: Any) -> Run:
        cfg = make_config(tmp_path / sub, spec, rows).model_copy(update=config)
        capsys.readouterr()
        rc = recipe.main(cfg)
        out = capsys.readouterr().out
        return Run(rc, parse_events(out), read_summary(cfg), Path(cfg.paths.output_dir), cfg)

    return run
