"""Every example's objects, exactly: golden files in tests/unit/golden/ (read them when they change).

`FINETUNE_UPDATE_GOLDEN=1 pytest tests/unit/test_builders_golden.py` rewrites them; review the diff by eye before
committing: a golden file is a claim about what the operator creates, not a snapshot to refresh blindly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from finetune_operator.builders import workload
from finetune_operator.builders.meta import Owner
from finetune_operator.config import Settings

from tests.unit.operator_fixtures import example_bodies

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = Settings(trainer_image="registry.example/finetune-trainer:1.0", image_pull_policy="Always")
EXAMPLES = example_bodies()


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_objects_match_golden_file(example: str) -> None:
    objects: list[dict[str, Any]] = workload.desired(Owner.from_body(EXAMPLES[example]), SETTINGS)
    text = yaml.safe_dump_all(objects, sort_keys=True, width=120)
    path = GOLDEN / f"{example}.yaml"
    if os.environ.get("FINETUNE_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}: run with FINETUNE_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{example}: objects differ from {path.name} (see the module docstring)"


def test_every_example_has_a_golden_file() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.yaml")) == sorted(EXAMPLES)
