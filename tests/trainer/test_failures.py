"""Bad input fails fast, with the reason in the termination message: exit 2 when no retry can help, else 1."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from finetune_api.trainer import ExitCode
from finetune_trainer import __main__ as cli

from tests.trainer.trainerkit import INSTRUCTIONS, Run, make_config, write_config

LLAMA_JOB = {"model": {"preset": "tiny-llama"}}
CHAT = {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi!"}]}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([*INSTRUCTIONS[:2], {"prompt": "no answer"}], "line 3: field 'completion' missing"),
        ([INSTRUCTIONS[0], {"prompt": 7, "completion": "x"}], "line 2: field 'prompt' should be a str, got int"),
        ([INSTRUCTIONS[0], ["not", "an", "object"]], "line 2: expected an object with named fields, got list"),
        ([{"messages": [{"role": "user", "content": "hi"}]}] * 4,
         "line 1: the last message of 'messages' must have role 'assistant'"),
        ([CHAT, {"messages": ["hi", "hello"]}],
         "line 2: message 1 of 'messages' is a str; write each message as an object {\"role\": \"user\", "),
        ([CHAT, CHAT, {"messages": [{"user": "hi"}, CHAT["messages"][1]]}],
         "line 3: message 1 of 'messages' needs a 'role' and a 'content' string, got keys ['user']"),
        ([*INSTRUCTIONS[:3], {"messages": [{"role": "user", "content": "hi"}]}],
         "line 4: a conversational row in a prompt-completion dataset (inferred from line 1)"),
        ([], "the dataset is empty"),
        (INSTRUCTIONS[:2], "2 training examples are fewer than one global batch (4)"),
    ],
    ids=["missing-column", "wrong-type", "not-an-object", "chat-without-answer", "chat-of-strings",
         "message-without-role", "chat-among-instructions", "empty", "too-small"],
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
    assert summary["message"].startswith("line 9: not valid JSON")


def test_unknown_label(train: Callable[..., Run]) -> None:
    rows = [{"text": "fine", "label": "positive"}] * 3 + [{"text": "meh", "label": "neutral"}]
    run = train({"model": {"preset": "tiny-bert"},
                 "task": {"type": "sequence-classification", "labels": ["negative", "positive"]}}, rows)  # fmt: skip

    assert run.rc == ExitCode.INVALID_CONFIG
    assert run.summary["message"] == "line 4: label 'neutral' is not in task.labels ['negative', 'positive']"


@pytest.mark.parametrize(
    ("dataset", "reason", "message"),
    [
        ("https://datasets.example.invalid/train.jsonl", "StorageError", "does not resolve"),
        ("pvc://data/missing.jsonl", "StorageError", "data/data/missing.jsonl nor "),
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


def test_a_missing_mounted_file_names_every_path_tried(train: Callable[..., Run]) -> None:
    run = train({**LLAMA_JOB, "dataset": {"uri": "pvc://claim/sub/missing.jsonl"}}, None)

    data_dir = run.config.paths.data_dir
    assert run.summary["message"] == (
        f"pvc://claim/sub/missing.jsonl: neither {data_dir}/claim/sub/missing.jsonl nor "
        f"{data_dir}/sub/missing.jsonl exists in the mounted volume"
    )


@pytest.mark.parametrize(
    ("files", "missing"),
    [
        ([], "empty: missing config.json; a tokenizer (tokenizer.json, tokenizer.model, vocab.json + merges.txt "
             "or vocab.txt); weights (*.safetensors or pytorch_model*.bin)."),
        (["config.json", "model.safetensors"], "incomplete: missing a tokenizer (tokenizer.json,"),
        (["tokenizer.json", "model-00001-of-00002.safetensors"], "incomplete: missing config.json."),
    ],
    ids=["empty", "no-tokenizer", "no-config"],
)  # fmt: skip
def test_an_incomplete_model_folder_names_the_folder_and_the_missing_files(
    train: Callable[..., Run], tmp_path: Path, files: list[str], missing: str
) -> None:
    model = tmp_path / "run" / "data" / "models" / "smol"
    model.mkdir(parents=True)
    for name in files:
        (model / name).write_text("{}")

    run = train({"model": {"uri": "pvc://models/smol"}}, INSTRUCTIONS)

    assert run.rc == 1
    assert run.summary["reason"] == "StorageError"
    assert run.summary["message"].startswith(f"model folder {model} is {missing}")


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
    from finetune_trainer import failures

    try:
        raise AssertionError  # what a bare `assert` in a library (e.g. bitsandbytes) raises
    except AssertionError as exc:
        summary = failures.failure_summary(exc)

    assert summary.reason == "AssertionError"
    assert (summary.message or "").startswith("raised at test_failures.py:")
    assert (summary.message or "").endswith(
        ": raise AssertionError  # what a bare `assert` in a library (e.g. bitsandbytes) raises"
    )
