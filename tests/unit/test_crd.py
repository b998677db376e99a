"""The committed CRD is what the models generate, is structural, and documents every field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from finetune_api import job
from finetune_api.presets import PRESETS, PresetName
from finetune_cli import apidocs, crd
from finetune_cli.main import app
from typer.testing import CliRunner

from tests.invalid_specs import merge, minimal_job

SCHEMA = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _nodes(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, child in node.get("properties", {}).items():
        out += _nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        out += _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _nodes(node["additionalProperties"], f"{path}{{}}")
    return out


def test_committed_crd_is_fresh(root: Path) -> None:
    committed = (root / "crds" / crd.CRD_FILE).read_text(encoding="utf-8")
    assert committed == crd.render_crd(), "crds/ is stale: run `make crd`"


def test_api_reference_is_fresh(root: Path) -> None:
    committed = (root / "docs" / "api.md").read_text(encoding="utf-8")
    assert committed == apidocs.render_reference(), "docs/api.md is stale: run `make crd`"


def _default(reference: str, section: str, field: str) -> str:
    block = reference.split(f"## `{section}`\n", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in block.splitlines() if line.startswith(f"| `{field}`"))
    return row.split(" | ")[2]


@pytest.mark.parametrize(
    ("section", "field", "default"),
    [
        ("spec", "method", '`{"type": "lora"}`'),
        ("spec", "resources", '`{"sharedMemorySize": "2Gi", "nodeSelector": {}, "tolerations": []}`'),
        ("spec.training", "packing", "`false`"),
        ("spec.method.quantization", "doubleQuant", "`true`"),
        ("spec.dataset.columns", "prompt", '`"prompt"`'),
        ("spec.training", "learningRate", "`0.0002`"),
        ("status.conditions[]", "message", '`""`'),
    ],
)
def test_api_reference_defaults_are_yaml(section: str, field: str, default: str) -> None:
    assert _default(apidocs.render_reference(), section, field) == default


def test_make_crd_writes_the_whole_reference_file(tmp_path: Path) -> None:
    target = tmp_path / "docs" / "api.md"
    args = ["crd", "--output-dir", str(tmp_path / "crds"), "--api-docs", str(target)]

    first, second = CliRunner().invoke(app, args), CliRunner().invoke(app, args)

    assert (first.exit_code, second.exit_code) == (0, 0), first.output
    assert target.read_text(encoding="utf-8") == apidocs.render_reference()
    assert (first.output.splitlines()[-1], second.output.splitlines()[-1]) == (
        f"updated {target}",
        f"unchanged {target}",
    )


def test_api_reference_says_it_is_generated() -> None:
    assert apidocs.render_reference().splitlines()[2] == apidocs.HEADER
    assert "`make crd`" in apidocs.HEADER


@pytest.mark.parametrize(("path", "node"), _nodes(SCHEMA), ids=lambda x: x if isinstance(x, str) else "")
def test_structural(path: str, node: dict[str, Any]) -> None:
    assert not {"$ref", "$defs", "const", "title", "oneOf", "allOf"} & set(node), path
    if node.get("x-kubernetes-preserve-unknown-fields"):
        pass
    elif "anyOf" in node:
        assert node.get("x-kubernetes-int-or-string"), f"{path}: anyOf only for int-or-string"
    else:
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path
    assert node.get("additionalProperties") is not False, path
    if node.get("exclusiveMinimum") is not None:
        assert isinstance(node["exclusiveMinimum"], bool), path


@pytest.mark.parametrize(
    ("path", "node"),
    [n for n in _nodes(SCHEMA) if n[0].startswith((".spec", ".status"))],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_every_field_is_described(path: str, node: dict[str, Any]) -> None:
    if path.endswith(("[]", "{}")):
        return
    assert str(node.get("description", "")).strip(), f"{path} has no description for kubectl explain"


def test_names_and_columns() -> None:
    spec = crd.build_crd()["spec"]
    assert spec["names"]["shortNames"] == ["ftj"]
    assert spec["scope"] == "Namespaced"
    assert spec["versions"][0]["subresources"] == {"status": {}}
    assert [c["name"] for c in spec["versions"][0]["additionalPrinterColumns"]] == [
        "Phase",
        "Model",
        "Method",
        "Progress",
        "Loss",
        "Age",
    ]


def test_preset_enum_matches_the_table() -> None:
    assert set(PresetName.__args__) == set(PRESETS)
    assert SCHEMA["properties"]["spec"]["properties"]["model"]["properties"]["preset"]["enum"] == list(
        PresetName.__args__
    )


def test_training_fields_are_immutable_but_run_policy_is_not() -> None:
    rules = {v["rule"] for v in SCHEMA["properties"]["spec"]["x-kubernetes-validations"]}
    for name in ("model", "method", "task", "dataset", "training", "distributed", "output"):
        assert f"self.{name} == oldSelf.{name}" in rules
    assert not any("runPolicy" in r or "resources ==" in r for r in rules)


def test_every_server_rule_has_cel() -> None:
    for model in crd._models().values():
        for rule in model.rules:
            assert rule.cel or not rule.server, f"{model.__name__}.{rule.field}"


@pytest.mark.parametrize(
    "patch",
    [
        {"method": {"type": "prefix"}},
        {"training": {"learningRate": 0}},
        {"training": {"maxSteps": "ten"}},
        {"distributed": {"nodes": 0}},
        {"resources": {"memory": "lots"}},
        {"dataset": {"uri": "ftp://x/y"}},
    ],
)
def test_json_schema_rejects_what_the_schema_can_express(patch: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(SCHEMA).validate(merge(minimal_job(), {"spec": patch}))


def test_name_limit_leaves_room_for_suffixes() -> None:
    # Child objects are named `<job>-<suffix>`; the longest planned suffix is a worker index up to 9999.
    assert job.MAX_NAME_LENGTH + len("-worker-9999") <= 63
