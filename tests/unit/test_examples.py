"""Every shipped example is a valid FineTuneJob, by the pydantic models and by the generated CRD schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import finetune_api as api
import jsonschema
import pytest
from finetune_cli import crd
from finetune_cli.main import app, load_documents
from typer.testing import CliRunner

from tests.conftest import EXAMPLES

REQUIRED = {
    "tiny-lora",
    "phi3-mini-qlora",
    "zero3-full-2node",
    "dora-classification",
    "ner",
    "translation",
    "question-answering",
    "export",
}


def _jobs(path: Path) -> list[dict[str, Any]]:
    return [d for d in load_documents(path) if d.get("kind") == api.KIND]


def test_the_promised_examples_exist() -> None:
    assert {p.stem for p in EXAMPLES} >= REQUIRED


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_parses(path: Path) -> None:
    (job,) = _jobs(path)
    parsed = api.parse(job)
    assert parsed.metadata.name == path.stem or parsed.metadata.name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_matches_crd_schema(path: Path) -> None:
    schema = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    (job,) = _jobs(path)
    jsonschema.Draft4Validator(schema).validate(job)


def test_tiny_lora_is_six_lines_of_spec() -> None:
    text = (Path(__file__).parents[2] / "examples" / "tiny-lora.yaml").read_text().split("---")[0]
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) <= 7  # apiVersion, kind, metadata, name, spec, model, dataset


def test_cli_validates_all_examples() -> None:
    result = CliRunner().invoke(app, ["validate", *map(str, EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert result.output.count("✓") == len(EXAMPLES)
