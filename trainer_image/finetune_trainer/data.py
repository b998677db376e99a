"""Reading and checking the dataset: file → records → validated, split, capped lists of rows.

Called by the recipe's `_setup_data` with the local file that `storage.resolve_dataset` produced. Every row is
checked against the columns the task needs before anything is tokenized, so a bad file fails in seconds with
`line 17: field 'completion' missing` instead of minutes into training. Each row carries where it came from, as an
editor shows it: `line N` of a JSONL or CSV file (blank lines and the CSV header counted), `item N` of a JSON array,
`row N` of a parquet file; errors found later, while encoding shuffled rows, name the same place.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune_operator.api.data import ColumnMapping, DatasetSpec, TaskSpec

Record = dict[str, Any]


class DataError(ValueError):
    """The dataset cannot be used as given; the message says where and why."""


@dataclass(frozen=True)
class Row:
    """One parsed row and where it is in the file (`line 7`, `item 3`, `row 12`), for error messages."""

    where: str
    fields: Any
    """An object (dict) once `validate` has passed; anything JSON can hold before."""


@dataclass(frozen=True)
class Splits:
    """Training and evaluation rows, both already validated."""

    train: list[Row]
    eval: list[Row]


def infer_format(path: Path, declared: str | None) -> str:
    """The file format: `declared` when set, else from the extension (a folder is read as parquet files)."""
    if declared is not None:
        return declared
    if path.is_dir():
        return "parquet"
    suffix = path.suffix.lower().lstrip(".")
    known = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "json", "csv": "csv", "parquet": "parquet"}
    if suffix not in known:
        raise DataError(f"cannot tell the format of {path.name!r} from its extension; set dataset.format")
    return known[suffix]


def _read_jsonl(path: Path) -> list[Row]:
    rows: list[Row] = []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and friends, which editors do not break on.
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(Row(f"line {number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    return rows


def _read_json(path: Path) -> list[Row]:
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path.name}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        document = document["data"]
    if not isinstance(document, list):
        raise DataError(f'{path.name}: expected a JSON array of objects (or {{"data": [...]}})')
    return [Row(f"item {number}", value) for number, value in enumerate(document, start=1)]


def _read_csv(path: Path) -> list[Row]:
    """Rows keyed by the header; `line` is the first line of the row (quoted fields may span several)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next((values for values in reader if values), None)
        rows, end = [], reader.line_num
        for values in reader:  # blank lines come through as [] and are skipped, but counted
            start, end = end + 1, reader.line_num
            if values:
                rows.append(Row(f"line {start}", dict(zip(header or [], values, strict=False))))
        return rows


def _read_parquet(path: Path) -> list[Row]:
    import pyarrow.parquet as pq

    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: folder holds no .parquet files")
    rows: list[Row] = []
    for file in files:
        prefix = f"{file.name} " if path.is_dir() else ""
        records = pq.read_table(file).to_pylist()
        rows.extend(Row(f"{prefix}row {number}", r) for number, r in enumerate(records, start=1))
    return rows


READERS: dict[str, Callable[[Path], list[Row]]] = {
    "jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet, "hf": _read_parquet,
}  # fmt: skip
"""Format name (as in `dataset.format`) → reader returning the rows in file order (hf:// is saved as parquet)."""


def read_records(path: Path, fmt: str) -> list[Row]:
    """All rows of the file (or parquet folder) at `path`."""
    if not path.exists():
        raise DataError(f"dataset file {path} does not exist")
    rows = READERS[fmt](path)
    if not rows:
        raise DataError(f"{path.name}: the dataset is empty")
    return rows


def _causal_lm_fields(row: Record, columns: ColumnMapping) -> list[tuple[str, type]]:
    if columns.messages in row:
        return [(columns.messages, list)]
    if columns.prompt in row or columns.completion in row:
        return [(columns.prompt, str), (columns.completion, str)]
    return [(columns.text, str)]


def required_fields(task: TaskSpec, columns: ColumnMapping, row: Record) -> list[tuple[str, type]]:
    """The (column, type) pairs that `row` must have for `task`."""
    if task.type == "causal-lm":
        return _causal_lm_fields(row, columns)
    table: dict[str, list[tuple[str, type]]] = {
        "sequence-classification": [(columns.text, str), (columns.label, object)],
        "token-classification": [(columns.tokens, list), (columns.tags, list)],
        "seq2seq": [(columns.source, str), (columns.target, str)],
        "question-answering": [(columns.question, str), (columns.context, str), (columns.answers, dict)],
    }
    return table[task.type]


def _check_row(where: str, row: Any, task: TaskSpec, columns: ColumnMapping) -> None:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object with named fields, got {type(row).__name__}")
    for name, kind in required_fields(task, columns, row):
        if row.get(name) is None:
            raise DataError(f"{where}: field {name!r} missing")
        if not isinstance(row[name], kind):
            raise DataError(
                f"{where}: field {name!r} should be a {kind.__name__}, got {type(row[name]).__name__}"
            )
    _check_labels(where, row, task, columns)
    if task.type == "causal-lm" and columns.messages in row:
        _check_chat(where, row[columns.messages], columns.messages)


def _check_chat(where: str, messages: list[Any], field: str) -> None:
    example = '{"role": "user", "content": "..."}'
    for index, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            raise DataError(
                f"{where}: message {index} of {field!r} is a {type(message).__name__}; write each message "
                f"as an object {example}"
            )
        if not (isinstance(message.get("role"), str) and isinstance(message.get("content"), str)):
            raise DataError(
                f"{where}: message {index} of {field!r} needs a 'role' and a 'content' string, got keys "
                f"{sorted(message)}; write each message as {example}"
            )
    if not messages or messages[-1]["role"] != "assistant":
        raise DataError(
            f"{where}: the last message of a chat must have role 'assistant' (it is what is trained on)"
        )


def _check_labels(where: str, row: Record, task: TaskSpec, columns: ColumnMapping) -> None:
    labels = task.labels or []
    if task.type == "sequence-classification":
        values = [row[columns.label]]
    elif task.type == "token-classification":
        values = row[columns.tags]
        if len(values) != len(row[columns.tokens]):
            raise DataError(
                f"{where}: {len(row[columns.tokens])} tokens but {len(values)} tags; give one tag per token"
            )
    else:
        return
    for value in values:
        if not (value in labels or (isinstance(value, int) and 0 <= value < len(labels))):
            raise DataError(f"{where}: label {value!r} is not in task.labels {labels}")


def validate(rows: list[Row], task: TaskSpec, columns: ColumnMapping) -> None:
    """Raise DataError naming the first row that lacks a field the task needs or has an unknown label."""
    for row in rows:
        _check_row(row.where, row.fields, task, columns)


def split(rows: list[Row], dataset: DatasetSpec, seed: int) -> Splits:
    """Shuffle with `seed`, hold out `validation_split`, then cap training rows at `max_samples`."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held_out = round(len(rows) * dataset.validation_split)
    if dataset.validation_split > 0 and held_out == 0:
        held_out = 1
    eval_rows = [rows[i] for i in order[:held_out]]
    train_rows = [rows[i] for i in order[held_out:]]
    if dataset.max_samples is not None:
        train_rows = train_rows[: dataset.max_samples]
    if not train_rows:
        raise DataError(f"no training rows left after holding out {held_out} of {len(rows)} for validation")
    return Splits(train=train_rows, eval=eval_rows)


def load_splits(path: Path, dataset: DatasetSpec, task: TaskSpec, seed: int) -> Splits:
    """Read, validate and split the dataset file at `path` (already fetched to local disk)."""
    rows = read_records(path, infer_format(path, dataset.format))
    validate(rows, task, dataset.columns)
    return split(rows, dataset, seed)
