"""Bad input fails fast, with the reason in the termination message: exit 2 when no retry can help, else 1."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from finetune_operator.api.trainer import ExitCode
from finetune_trainer import __main__ as cli

from tests.trainer.trainerkit import INSTRUCTIONS, Run, make_config, write_config

LLAMA_JOB = {"model": {"preset": "tiny-llama"}}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([*INSTRUCTIONS[:2], {"prompt": "no answer"}], "row 3: field 'completion' missing"),
        ([INSTRUCTIONS[0], {"prompt": 7, "completion": "x"}], "row 2: field 'prompt' should be a str, got int"),
        ([INSTRUCTIONS[0], ["not", "an", "object"]], "row 2: expected an object with named fields, got list"),
        ([{"messages": [{"role": "user", "content": "hi"}]}] * 4,
         "row 1: the last message of a chat must have role 'assistant'"),
        ([], "the dataset is empty"),
        (INSTRUCTIONS[:2], "2 training examples are fewer than one global batch (4)"),
    ],
    ids=["missing-column", "wrong-type", "not-an-object", "chat-without-answer", "empty", "too-small"],
)  # fmt: skip
def test_bad_rows_name_the_row(train: Callable[..., Run], rows: list[Any], message: str) -> None:
    run = train(LLAMA_JOB, rows)

    assert run.rc == ExitCode.INVALID_CONFIG  # no retry can fix the data
    assert run.summary["status"] == "Failed"
    assert message in run.summary["message"]
    assert run.event("failed")["message"] == run.summary["message"]
    assert not (run.output / "manifest.json").exists()


def test_invalid_json_line(train: Callable[..., Run], tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "run", LLAMA_JOB, INSTRUCTIONS)
    data = Path(cfg.paths.data_dir) / "data.jsonl"
    data.write_text(data.read_text() + '{"prompt": "cut off\n')
    from finetune_trainer import recipe

    assert recipe.main(cfg) == ExitCode.INVALID_CONFIG
    summary = json.loads(Path(cfg.paths.termination_message_path).read_text())
    assert summary["reason"] == "DataError"
    assert summary["message"].startswith("row 9: not valid JSON")


def test_unknown_label(train: Callable[..., Run]) -> None:
    rows = [{"text": "fine", "label": "positive"}] * 3 + [{"text": "meh", "label": "neutral"}]
    run = train({"model": {"preset": "tiny-bert"},
                 "task": {"type": "sequence-classification", "labels": ["negative", "positive"]}}, rows)  # fmt: skip

    assert run.rc == ExitCode.INVALID_CONFIG
    assert run.summary["message"] == "row 4: label 'neutral' is not in task.labels ['negative', 'positive']"


@pytest.mark.parametrize(
    ("dataset", "reason", "message"),
    [
        ("https://datasets.example.invalid/train.jsonl", "StorageError", "does not resolve"),
        ("pvc://data/missing.jsonl", "StorageError", "missing.jsonl does not exist in the mounted volume"),
        (
            "hf://no-such-org/no-such-dataset",
            "StorageError",
            "cannot fetch dataset hf://no-such-org/no-such-dataset",
        ),
    ],
    ids=["unresolvable-https", "missing-pvc-file", "hf-offline"],
)
def test_unreachable_dataset(train: Callable[..., Run], dataset: str, reason: str, message: str) -> None:
    run = train({**LLAMA_JOB, "dataset": {"uri": dataset}}, None)

    assert run.rc == ExitCode.FAILED  # storage may come back: retried
    assert run.summary["reason"] == reason
    assert message in run.summary["message"]


def test_unreachable_model(train: Callable[..., Run]) -> None:
    run = train({"model": {"uri": "hf://no-such-org/no-such-model@main"}}, INSTRUCTIONS)

    assert run.rc == ExitCode.FAILED
    assert run.summary["reason"] == "StorageError"
    assert run.summary["message"].startswith("cannot fetch model hf://no-such-org/no-such-model@main")


def test_unknown_preset_is_an_invalid_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file = write_config(make_config(tmp_path, LLAMA_JOB, INSTRUCTIONS))
    document = json.loads(config_file.read_text())
    document["spec"]["model"]["preset"] = "tiny-gpt"
    config_file.write_text(json.dumps(document))
    termination = tmp_path / "termination-log"
    monkeypatch.setenv("TERMINATION_MESSAGE_PATH", str(termination))

    assert cli.main(["--config", str(config_file)]) == ExitCode.INVALID_CONFIG
    summary = json.loads(termination.read_text())
    assert summary["reason"] == "InvalidConfig"
    assert summary["message"].startswith("spec.model.preset:")
    assert "tiny-llama" in summary["message"]


def test_an_exception_without_a_message_still_says_where_it_was_raised() -> None:
    from finetune_trainer import recipe

    try:
        raise AssertionError  # what a bare `assert` in a library (e.g. bitsandbytes) raises
    except AssertionError as exc:
        summary = recipe.failure_summary(exc)

    assert summary.reason == "AssertionError"
    assert (summary.message or "").startswith("raised at test_failures.py:")
    assert (summary.message or "").endswith(
        ": raise AssertionError  # what a bare `assert` in a library (e.g. bitsandbytes) raises"
    )
