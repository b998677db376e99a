"""`finetune validate --data FILE` (issue 14): the trainer's row checks on a local file, each problem by its line,
rows over maxSeqLength counted with the model's tokenizer, and no torch imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import transformers
import yaml
from finetune_cli.main import app
from typer.testing import CliRunner

from tests.invalid_specs import merge, minimal_job
from tests.trainer.test_chat_format import encode
from tests.trainer.test_shapes import SHAREGPT, SHAREGPT_DATASET
from tests.trainer.trainerkit import LLAMA

HI = [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi!"}]
LONG = [
    {"role": "user", "content": "Tell me about the sea " * 8},
    {"role": "assistant", "content": "It is big."},
]


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _manifest(tmp_path: Path, spec: dict[str, Any]) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(merge(minimal_job(), {"spec": spec})))
    return path


def _validate(*args: str | Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["validate", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output.splitlines()


def test_a_good_chat_file_passes_and_says_its_shape(tmp_path: Path) -> None:
    data = _write(tmp_path / "chats.jsonl", [{"messages": HI}] * 3)

    rc, lines = _validate("--data", data)

    assert rc == 0
    assert lines == [
        f"✓ {data}: 3 rows, 0 bad, conversational (inferred from line 1)",
        f"! {data}: lengths not checked (pass --model DIR, a folder with the model's tokenizer)",
    ]


def test_every_bad_row_is_named_by_its_editor_line(tmp_path: Path) -> None:
    rows = [{"messages": HI}, "", {"messages": HI[:1]}, {"messages": [HI[0], {"role": "gpt", "content": "x"}]},
            {"messages": [HI[0], {**HI[1], "content": " "}]}, {"prompt": "p", "completion": "c"}]  # fmt: skip
    data = _write(tmp_path / "bad.jsonl", rows)

    rc, lines = _validate("--data", data)

    assert rc == 1
    assert [line.removeprefix(f"✗ {data}: ") for line in lines[:-1]] == [
        "line 3: the last message of 'messages' must have role 'assistant', the reply trained on",
        "line 4: message 2 of 'messages' has role 'gpt', not one of system, user, assistant, tool; map it with "
        "dataset.chat.roles (e.g. {gpt: assistant})",
        "line 5: message 2 of 'messages' (assistant) is empty; fill it or remove the turn",
        "line 6: a prompt-completion row in a conversational dataset (inferred from line 1); give every row the "
        "same columns",
        "5 rows, 4 bad, conversational (inferred from line 1)",
    ]


def test_csv_lines_count_the_header_and_unreadable_json_is_named(tmp_path: Path) -> None:
    csv = tmp_path / "rows.csv"
    csv.write_text('prompt,completion\nSay hi,Hi!\n"two\nlines",\n')
    broken = _write(tmp_path / "broken.jsonl", [{"messages": HI}, '{"messages": ['])

    assert (
        _validate("--data", csv)[1][0]
        == f"✗ {csv}: line 3: field 'completion' is empty; fill it or remove the row"
    )
    assert _validate("--data", broken) == (
        1,
        [f"✗ {broken}: line 2: not valid JSON (Expecting value at column 15)"],
    )


def test_the_manifest_says_how_rows_are_read(tmp_path: Path) -> None:
    data = _write(tmp_path / "sharegpt.jsonl", [SHAREGPT] * 2)
    mapped = _manifest(tmp_path, {"dataset": SHAREGPT_DATASET})

    rc, lines = _validate(mapped, "--data", data)

    assert rc == 0, lines
    assert lines[:2] == [f"✓ {mapped}", f"✓ {data}: 2 rows, 0 bad, conversational (inferred from line 1)"]
    declared = _manifest(tmp_path, {"dataset": {**SHAREGPT_DATASET, "shape": "text"}})
    assert _validate(declared, "--data", data)[1][1].startswith(
        f"✗ {data}: line 1: a conversational row in a text dataset (dataset.shape)"
    )


def test_rows_longer_than_max_seq_length_are_counted_with_the_model_s_tokenizer(tmp_path: Path) -> None:
    data = _write(tmp_path / "chats.jsonl", [{"messages": HI}, {"messages": LONG}, {"messages": HI}])
    job = _manifest(tmp_path, {"training": {"maxSeqLength": 32}})
    length = len(
        encode(transformers.AutoTokenizer.from_pretrained(LLAMA), {"messages": LONG}, 10**6)["input_ids"]
    )
    assert length > 32

    rc, lines = _validate(job, "--data", data, "--model", LLAMA)

    assert rc == 0
    assert lines[2] == (
        f"! {data}: 1 of 3 rows are longer than maxSeqLength 32 and would be truncated: line 2: {length} tokens"
    )


@pytest.mark.parametrize("with_model", [False, True])
def test_validate_never_imports_torch(tmp_path: Path, with_model: bool) -> None:
    data = _write(tmp_path / "chats.jsonl", [{"messages": HI}])
    args = ["validate", "--data", str(data), *(["--model", str(LLAMA)] if with_model else [])]
    script = (
        "import sys; from typer.testing import CliRunner; from finetune_cli.main import app; "
        f"result = CliRunner().invoke(app, {args!r}); "
        "print(result.exit_code, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)

    assert done.stdout.split() == ["0", "False", str(with_model)]


def test_an_empty_file_is_named_once(tmp_path: Path) -> None:
    empty = tmp_path / "train.jsonl"
    empty.write_text("\n")
    assert _validate("--data", empty) == (1, [f"✗ {empty}: the dataset is empty"])
