"""The operator's settings from FINETUNE_* variables, and the `finetune operator` refusal of bad ones."""

from __future__ import annotations

import pytest
from finetune_cli.main import app
from finetune_operator import config
from typer.testing import CliRunner


def test_defaults_without_variables() -> None:
    settings = config.from_env({})
    assert settings.trainer_image == "finetune-trainer:dev" and settings.namespaces == ()
    assert settings.progress_interval_seconds == 5.0 and settings.leader_election is True


def test_variables_are_parsed_by_type() -> None:
    settings = config.from_env({
        "FINETUNE_TRAINER_IMAGE": "r.example/t:1", "FINETUNE_NAMESPACES": "team-a, team-b",
        "FINETUNE_STALL_AFTER_SECONDS": "30", "FINETUNE_LEADER_ELECTION": "false", "UNRELATED": "x",
    })  # fmt: skip
    assert settings.trainer_image == "r.example/t:1"
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.stall_after_seconds == 30.0 and settings.leader_election is False


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ValueError, match="FINETUNE_IMAGE_PULL_POLICY: Input should be 'Always'"):
        config.from_env({"FINETUNE_IMAGE_PULL_POLICY": "Sometimes"})


def test_the_operator_command_refuses_bad_settings_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINETUNE_PROGRESS_INTERVAL_SECONDS", "-1")
    result = CliRunner().invoke(app, ["operator"])
    assert result.exit_code == 2
    assert "FINETUNE_PROGRESS_INTERVAL_SECONDS" in result.output and "Traceback" not in result.output


def test_placement_is_json_and_a_bad_toleration_names_the_variable() -> None:
    settings = config.from_env({"FINETUNE_TRAINER_NODE_SELECTOR": '{"pool": "training"}'})
    assert settings.trainer_node_selector == {"pool": "training"} and settings.trainer_tolerations == ()
    with pytest.raises(ValueError, match="FINETUNE_TRAINER_TOLERATIONS: Input should be 'Exists' or 'Equal'"):
        config.from_env({"FINETUNE_TRAINER_TOLERATIONS": '[{"key": "a", "operator": "In"}]'})
    with pytest.raises(ValueError, match="FINETUNE_TRAINER_NODE_SELECTOR: Value error, expected JSON"):
        config.from_env({"FINETUNE_TRAINER_NODE_SELECTOR": "pool=training"})
