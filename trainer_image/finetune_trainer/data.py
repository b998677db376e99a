"""Reading and checking the dataset: file → records → validated, split, capped lists of rows.

Called by the recipe's `_setup_data` with the local file that `storage.resolve_dataset` produced. Every row is
checked against the columns the task needs before anything is tokenized, so a bad file fails in seconds with
`line 17: field 'completion' missing` instead of minutes into training. Each row carries where it came from, as an
editor shows it: `line N` of a JSONL or CSV file (blank lines and the CSV header counted), `item N` of a JSON array,
`row N` of a parquet file; errors found later, while encoding shuffled rows, name the same place.

causal-lm rows have one shape per dataset (`dataset.shape`, else inferred from the first row) and come out of
`validate` as a `sample`: chats with their keys and roles mapped to {role, content} (`dataset.chat`), so the
encoder (`sft`) sees one convention whatever the file uses.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from finetune_api.data import CHAT_ROLES, ChatKeys, ColumnMapping, DatasetSpec, TaskSpec
from finetune_api.evaluation import DEFAULT_EVAL_SPLIT, EvaluationSpec
from finetune_api.job import FineTuneJobSpec
from finetune_api.uris import scheme_of

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
    """Training and evaluation rows, both already validated, and the causal-lm row shape (None for other tasks)."""

    train: list[Row]
    eval: list[Row]
    shape: Shape | None = None


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


def _json_problem(exc: json.JSONDecodeError, unit: str, number: int) -> str:
    """json's message and where: some messages already end in "at" ("Unterminated string starting at")."""
    return f"{exc.msg}{'' if exc.msg.endswith(' at') else ' at'} {unit} {number}"


def _read_jsonl(path: Path) -> list[Row]:
    rows: list[Row] = []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and friends, which editors do not break on.
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(Row(f"line {number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"line {number}: not valid JSON ({_json_problem(exc, 'column', exc.colno)})"
            ) from None
    return rows


def _read_json(path: Path) -> list[Row]:
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path.name}: not valid JSON ({_json_problem(exc, 'line', exc.lineno)})") from None
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


SHAPE_FIELDS: dict[str, Callable[[ColumnMapping], list[tuple[str, type]]]] = {
    "text": lambda c: [(c.text, str)],
    "prompt-completion": lambda c: [(c.prompt, str), (c.completion, str)],
    "conversational": lambda c: [(c.messages, list)],
    "conversational-prompt-completion": lambda c: [(c.prompt, list), (c.completion, list)],
}
"""causal-lm row shape → the (column, type) pairs its rows have."""


def infer_shape(row: Any, columns: ColumnMapping) -> str:
    """The causal-lm shape a row's columns suggest: messages, else prompt/completion (a chat when the prompt is a
    list of messages), else text."""
    if not isinstance(row, dict):
        return "text"
    if columns.messages in row:
        return "conversational"
    if isinstance(row.get(columns.prompt), list):
        return "conversational-prompt-completion"
    if columns.prompt in row or columns.completion in row:
        return "prompt-completion"
    return "text"


def required_fields(task: TaskSpec, columns: ColumnMapping, shape: str) -> list[tuple[str, type]]:
    """The (column, type) pairs that rows of `task` (causal-lm: of row `shape`) must have."""
    if task.type == "causal-lm":
        return SHAPE_FIELDS[shape](columns)
    table: dict[str, list[tuple[str, type]]] = {
        "sequence-classification": [(columns.text, str), (columns.label, object)],
        "token-classification": [(columns.tokens, list), (columns.tags, list)],
        "seq2seq": [(columns.source, str), (columns.target, str)],
        "question-answering": [(columns.question, str), (columns.context, str), (columns.answers, dict)],
    }
    return table[task.type]


@dataclass(frozen=True)
class Shape:
    """The dataset's causal-lm row shape and where it comes from (`dataset.shape`, or `inferred from line 1`)."""

    name: str
    origin: str


def _check_row(where: str, row: Any, task: TaskSpec, dataset: DatasetSpec, shape: Shape) -> Any:
    """Raise DataError for a bad row; return the row, causal-lm rows as a `sample`."""
    columns = dataset.columns
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object with named fields, got {type(row).__name__}")
    own = infer_shape(row, columns)
    if task.type == "causal-lm" and own != shape.name:
        raise DataError(
            f"{where}: a {own} row in a {shape.name} dataset ({shape.origin}); give every row the same columns"
        )
    for name, kind in required_fields(task, columns, shape.name):
        if row.get(name) is None:
            present = ", ".join(map(repr, sorted(row))) or "no fields"
            raise DataError(
                f"{where}: field {name!r} missing (the row has {present}); "
                f"if another column holds it, name that column in dataset.columns"
            )
        if not isinstance(row[name], kind):
            raise DataError(
                f"{where}: field {name!r} should be a {kind.__name__}, got {type(row[name]).__name__}"
            )
    _check_labels(where, row, task, columns)
    if task.type != "causal-lm":
        return row
    try:
        return sample(row, shape.name, columns, dataset.chat)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


_ROLE_ALIASES = {
    "tool": ("function", "tool_response", "tool_result", "observation", "ipython", "environment"),
    "user": ("human", "question", "prompter"),
    "system": ("developer", "instruction"),
}
"""Other datasets' names for the chat roles; anything else is most likely the model's own turn (assistant)."""


def _likely_role(role: str) -> str:
    """The chat role a dataset's own role name most likely stands for (the hint of an unknown role)."""
    return next((ours for ours, names in _ROLE_ALIASES.items() if role.lower() in names), "assistant")


def _message(index: int, message: Any, field: str, keys: ChatKeys) -> Record:
    """One message with its keys renamed to role and content and its role mapped by `keys.roles`."""
    role_key, content_key = keys.role_key, keys.content_key
    example = f'{{"{role_key}": "user", "{content_key}": "..."}}'
    if not isinstance(message, dict):
        raise DataError(
            f"message {index} of {field!r} is a {type(message).__name__}; write each message as an object {example}"
        )
    if not (isinstance(message.get(role_key), str) and isinstance(message.get(content_key), str)):
        hint = (
            "; for ShareGPT rows set dataset.chat {roleKey: from, contentKey: value, roles: {human: user, gpt: "
            "assistant}}"
            if "from" in message and "value" in message
            else f"; write each message as {example}"
        )
        raise DataError(
            f"message {index} of {field!r} needs a {role_key!r} and a {content_key!r} string, got keys "
            f"{sorted(message)}{hint}"
        )
    role = keys.roles.get(message[role_key], message[role_key])
    if role not in CHAT_ROLES:
        raise DataError(
            f"message {index} of {field!r} has role {role!r}, not one of {', '.join(CHAT_ROLES)}; map it with "
            f"dataset.chat.roles (e.g. {{{role}: {_likely_role(str(role))}}})"
        )
    if not message[content_key].strip():
        raise DataError(f"message {index} of {field!r} ({role}) is empty; fill it or remove the turn")
    rest = {k: v for k, v in message.items() if k not in (role_key, content_key)}
    return {**rest, "role": role, "content": message[content_key]}


def _chat(messages: list[Any], field: str, keys: ChatKeys, start: int = 1) -> list[Record]:
    if not messages:
        raise DataError(f"{field!r} holds no messages")
    chat = [_message(start + i, m, field, keys) for i, m in enumerate(messages)]
    if chat[-1]["role"] != "assistant":
        raise DataError(f"the last message of {field!r} must have role 'assistant', the reply trained on")
    return chat


def sample(row: Record, shape: str, columns: ColumnMapping, keys: ChatKeys) -> Record:
    """A checked causal-lm row as the encoder reads it: {text}, or {prompt, completion} as two strings or as two
    lists of {role, content} messages (a conversational row is split before its last message)."""
    if shape in ("text", "prompt-completion"):
        trained = columns.text if shape == "text" else columns.completion
        if not row[trained].strip():
            raise DataError(f"field {trained!r} is empty; fill it or remove the row")
        if shape == "text":
            return {"text": row[columns.text]}
        return {"prompt": row[columns.prompt], "completion": row[columns.completion]}
    if shape == "conversational":
        messages = _chat(row[columns.messages], columns.messages, keys)
        return {"prompt": messages[:-1], "completion": messages[-1:]}
    prompt = [_message(i, m, columns.prompt, keys) for i, m in enumerate(row[columns.prompt], start=1)]
    return {"prompt": prompt, "completion": _chat(row[columns.completion], columns.completion, keys)}


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


def check_rows(
    rows: list[Row], task: TaskSpec, dataset: DatasetSpec
) -> tuple[list[Row], list[str], Shape | None]:
    """The good rows (causal-lm: as samples), one line per bad row naming its place, and the causal-lm row shape."""
    shape = None
    if task.type == "causal-lm":
        declared = dataset.shape != "auto"
        name = dataset.shape if declared else infer_shape(rows[0].fields, dataset.columns)
        shape = Shape(name, "dataset.shape" if declared else f"inferred from {rows[0].where}")
    good: list[Row] = []
    problems: list[str] = []
    for row in rows:
        try:
            good.append(
                Row(row.where, _check_row(row.where, row.fields, task, dataset, shape or Shape("", "")))
            )
        except DataError as exc:
            problems.append(str(exc))
    return good, problems, shape


def validate(rows: list[Row], task: TaskSpec, dataset: DatasetSpec) -> tuple[list[Row], Shape | None]:
    """Raise DataError naming the first bad row; return the rows (causal-lm: as samples) and the row shape."""
    good, problems, shape = check_rows(rows, task, dataset)
    if problems:
        raise DataError(problems[0])
    return good, shape


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
    return Splits(train=train_rows, eval=eval_rows, shape=None)


def load_splits(path: Path, dataset: DatasetSpec, task: TaskSpec, seed: int) -> Splits:
    """Read, validate and split the dataset file at `path` (already fetched to local disk)."""
    rows, shape = validate(read_records(path, infer_format(path, dataset.format)), task, dataset)
    return replace(split(rows, dataset, seed), shape=shape)


def evaluation_dataset(dataset: DatasetSpec, evaluation: EvaluationSpec) -> DatasetSpec | None:
    """`evaluation.datasetUri` read as `dataset` is (its format, columns, shape, chat keys and Secret): hf:// as
    hf from `evaluation.datasetSplit`, another file in `dataset.format` unless that is hf (then from its
    extension); None when unset."""
    uri = evaluation.dataset_uri
    if uri is None:
        return None
    hf = scheme_of(uri) == "hf"
    fmt = "hf" if hf else (None if dataset.format == "hf" else dataset.format)
    split = evaluation.dataset_split or DEFAULT_EVAL_SPLIT
    return dataset.model_copy(update={"uri": uri, "format": fmt, "split": split})


def with_evaluation_dataset(
    splits: Splits, spec: FineTuneJobSpec, fetch: Callable[[DatasetSpec], Path]
) -> tuple[Splits, Shape | None]:
    """`splits` with the rows of `evaluation.datasetUri` (fetched to a local file by `fetch`, read and checked in
    file order) instead of held-out ones, and the evaluation rows' causal-lm shape; unchanged without one."""
    separate = evaluation_dataset(spec.dataset, spec.evaluation)
    if separate is None:
        return splits, splits.shape
    path = fetch(separate)
    rows, shape = validate(read_records(path, infer_format(path, separate.format)), spec.task, separate)
    return replace(splits, eval=rows), shape
