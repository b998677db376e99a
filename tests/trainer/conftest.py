"""Fixtures for the trainer suite. Every test here really trains a tiny model on CPU, so all carry `trainer`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests import storage_servers
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


@pytest.fixture(scope="session")
def storage_binaries() -> Path:
    """versitygw and the distribution registry, built from Go modules on first use (`tests/storage_servers.py`)."""
    return storage_servers.build()


@pytest.fixture(scope="session")
def object_store(
    storage_binaries: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[storage_servers.ObjectStore]:
    """An S3 gateway on loopback for the whole session, stopped at its end."""
    with storage_servers.object_store(storage_binaries, tmp_path_factory.mktemp("s3")) as store:
        yield store


@pytest.fixture(scope="session")
def readonly_object_store(
    storage_binaries: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[storage_servers.ObjectStore]:
    """An S3 gateway that refuses every write, with one bucket, `results`."""
    root = tmp_path_factory.mktemp("readonly-s3")
    (root / "data" / "results").mkdir(parents=True)
    with storage_servers.object_store(storage_binaries, root, read_only=True) as store:
        yield store


@pytest.fixture(scope="session")
def oci_registry(
    storage_binaries: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[storage_servers.Registry]:
    """An OCI registry with htpasswd auth on loopback for the whole session, stopped at its end."""
    with storage_servers.registry(storage_binaries, tmp_path_factory.mktemp("registry")) as registry:
        yield registry


@pytest.fixture(scope="session")
def readonly_registry(
    storage_binaries: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[storage_servers.Registry]:
    """A registry in read-only maintenance mode: it refuses every push."""
    root = tmp_path_factory.mktemp("readonly-registry")
    with storage_servers.registry(storage_binaries, root, read_only=True) as registry:
        yield registry
