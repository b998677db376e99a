"""Data errors name the place an editor shows: the line of a JSONL or CSV file, the item of a JSON array."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers
from finetune_api.data import DatasetSpec, TaskSpec
from finetune_trainer import data, tasks, tiny

from tests.trainer.trainerkit import PRESETS

INSTRUCTION = json.dumps({"prompt": "p", "completion": "c"})
CAUSAL_LM = TaskSpec()
DATASET = DatasetSpec(uri="pvc://data/x")


def _load(path: Path, task: TaskSpec = CAUSAL_LM) -> data.Splits:
    return data.load_splits(path, DATASET, task, seed=42)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f"{INSTRUCTION}\n\n\n{INSTRUCTION}\n\n" + '{"prompt": "no answer"}\n',
            "line 6: field 'completion' missing",
        ),
        (f"\n{INSTRUCTION}\n  \n" + '{"prompt": "cut off\n', "line 4: not valid JSON"),
        (
            f"{INSTRUCTION}\r\n\r\n" + '{"prompt": 7, "completion": "c"}\r\n',
            "line 3: field 'prompt' should be a str",
        ),
        (
            f"{INSTRUCTION}\n" + json.dumps({"prompt": "a\u2028b"}, ensure_ascii=False) + "\n",
            "line 2: field 'completion' missing",
        ),
    ],
    ids=["blank-lines", "invalid-json", "crlf", "unicode-line-separator"],
)
def test_jsonl_errors_give_the_editor_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(data.DataError) as info:
        _load(path)
    assert str(info.value).startswith(message)


def test_csv_errors_count_the_header_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text('prompt,completion\np,c\n\n"two\nlines",c\np\n')

    with pytest.raises(
        data.DataError,
        match=r"^line 6: field 'completion' missing \(the row has 'prompt'\); if another column holds it, name ",
    ):
        _load(path)


def test_json_errors_give_the_array_item(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text(
        json.dumps({"data": [{"prompt": "p", "completion": "c"}] * 2 + [["not", "an", "object"]]})
    )

    with pytest.raises(data.DataError, match=r"^item 3: expected an object with named fields, got list$"):
        _load(path)


def test_errors_while_encoding_shuffled_rows_name_the_file_line(tmp_path: Path) -> None:
    good = {
        "question": "q",
        "context": "the answer is here",
        "answers": {"text": ["here"], "answer_start": [14]},
    }
    bad = {**good, "answers": {"text": ["here"], "answer_start": [0]}}
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join([json.dumps(good)] * 5 + ["", json.dumps(bad)] + [json.dumps(good)] * 5) + "\n")
    task = TaskSpec(type="question-answering")
    splits = _load(path, task)
    assert [row.where for row in splits.train] != [row.where for row in data.read_records(path, "jsonl")]

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny.ensure_tiny_preset("tiny://bert", PRESETS))

    with pytest.raises(data.DataError, match=r"^line 7: answer 'here' is not at answer_start 0"):
        tasks.encode_all(splits.train, tokenizer, task, DATASET.columns, 64)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "train.jsonl",
            '{"prompt": "cut off\n',
            "line 1: not valid JSON (Unterminated string starting at column 12)",
        ),
        ("train.jsonl", '{"prompt" "p"}\n', "line 1: not valid JSON (Expecting ':' delimiter at column 11)"),
        (
            "train.json",
            '[{"prompt": "cut off',
            "train.json: not valid JSON (Unterminated string starting at line 1)",
        ),
    ],
)
def test_json_errors_say_where_once(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(data.DataError) as info:
        _load(path)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("role", "suggested"),
    [("function", "tool"), ("observation", "tool"), ("human", "user"), ("bot", "assistant")],
)
def test_an_unknown_role_is_mapped_to_what_it_most_likely_is(
    tmp_path: Path, role: str, suggested: str
) -> None:
    """A tool's output mapped to assistant would be trained on: `function` turns are tool turns."""
    chat = {"messages": [{"role": "user", "content": "q"}, {"role": role, "content": "x"},
                         {"role": "assistant", "content": "a"}]}  # fmt: skip
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(chat) + "\n")
    with pytest.raises(data.DataError) as info:
        _load(path)
    assert str(info.value).endswith(f"dataset.chat.roles (e.g. {{{role}: {suggested}}})"), info.value
