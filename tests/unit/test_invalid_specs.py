"""Invalid specs are rejected, each with an error naming the offending field."""

from __future__ import annotations

from pathlib import Path

import finetune_api as api
import pytest
import yaml
from finetune_api import fit
from finetune_api.common import DNS_SUBDOMAIN
from finetune_cli.main import app
from pydantic import ValidationError
from typer.testing import CliRunner

from tests.invalid_specs import EDGE_SPECS, INVALID_SPECS, InvalidSpec, merge, minimal_job


def test_there_are_enough_cases() -> None:
    assert len(INVALID_SPECS) >= 40
    assert len({c.id for c in INVALID_SPECS}) == len(INVALID_SPECS)


def test_minimal_job_is_valid() -> None:
    api.parse(minimal_job())


@pytest.mark.parametrize("name", EDGE_SPECS)
def test_edge_specs_are_valid(name: str) -> None:
    api.parse(EDGE_SPECS[name])


def test_gpus_per_node_is_the_effective_count() -> None:
    def spec(patch: dict[str, object]) -> api.FineTuneJobSpec:
        return api.parse(merge(minimal_job(), {"spec": patch})).spec

    assert (spec({}).gpus_per_node, spec({}).processes_per_node) == (0, 1)
    phi = {"model": {"preset": "phi-3-mini-4k-instruct"}}
    assert (spec(phi).gpus_per_node, spec(phi).processes_per_node) == (1, 1)
    eight = {**phi, "resources": {"gpu": {"count": 8}}}
    assert (spec(eight).gpus_per_node, spec(eight).processes_per_node) == (8, 8)


@pytest.mark.parametrize("case", INVALID_SPECS, ids=lambda c: c.id)
def test_rejected_naming_the_field(case: InvalidSpec) -> None:
    if case.gpu_fit:
        problem = fit.problem(api.parse(case.manifest).spec)
        assert problem is not None and problem.startswith(f"{case.field}:"), problem
        return
    with pytest.raises(ValidationError) as info:
        api.parse(case.manifest)
    lines = api.describe(info.value)
    assert any(line.startswith(case.field) or f"{case.field}:" in line for line in lines), lines


def test_cli_reports_field_and_fails(tmp_path: Path) -> None:
    bad = next(c for c in INVALID_SPECS if c.id == "qlora-without-quantization")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad.manifest))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert "spec.method.quantization" in result.output
    assert "quantization: {bits: 4}" in result.output  # the fix, not just the complaint


def test_cli_prints_schema_and_file_text_verbatim(tmp_path: Path) -> None:
    # rich would read `[a-z0-9]` and `[bold]` as style tags and drop them.
    bad, good = tmp_path / "bad[bold].yaml", tmp_path / "good[bold].yaml"
    bad.write_text(yaml.safe_dump(minimal_job("Bad_Name")))
    good.write_text(yaml.safe_dump(minimal_job()))

    result = CliRunner().invoke(app, ["validate", str(bad), str(good)])

    assert result.exit_code == 1
    assert f"✗ {bad}: metadata.name: String should match pattern '{DNS_SUBDOMAIN}'" in result.output
    assert f"✓ {good}" in result.output


@pytest.mark.parametrize(
    ("case_id", "expected"),
    [
        (
            "name-too-long",
            "metadata.name must be at most 50 characters: child objects are named after the job",
        ),
        ("generate-name-too-long", "at most 45 characters: the API server appends 5 random ones"),
    ],
)
def test_name_limits_say_why(tmp_path: Path, case_id: str, expected: str) -> None:
    case = next(c for c in INVALID_SPECS if c.id == case_id)
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(case.manifest))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert expected in result.output
    assert "`-worker-0`" in result.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("apiVersion: v1\nkind: ConfigMap\n", "no FineTuneJob found"),
        ("- a\n- b\n", "not a mapping"),
        ("kind: [unclosed\n", "while parsing"),
    ],
)
def test_cli_rejects_files_without_a_job(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert expected in result.output


def test_run_refuses_an_invalid_manifest_before_training(tmp_path: Path) -> None:
    bad = next(c for c in INVALID_SPECS if c.id == "epochs-and-max-steps")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad.manifest))
    result = CliRunner().invoke(app, ["run", str(path), "--output", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "spec.training.maxSteps" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "spec",
    [
        {"training": {"optimizer": "sgd"}},
        {"training": {"optimizer": "adamw-8bit"}, "distributed": {"deepspeed": {"zeroStage": 0}}},
        {"training": {"lrScheduler": "constant", "warmupRatio": 0}},
        {"method": {"lora": {"targetModules": ["all-linear"]}}},
        {"dataset": {"uri": "hf://org/data@main", "split": "validation", "format": "hf"}},
    ],
    ids=["sgd-ddp", "8bit-zero0", "constant-no-warmup", "all-linear-alone", "hf-split"],
)
def test_the_runnable_neighbours_of_refused_combinations_are_accepted(spec: dict[str, object]) -> None:
    api.parse(merge(minimal_job(), {"spec": spec}))
