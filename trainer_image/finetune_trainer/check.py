"""`finetune validate --data FILE`: the trainer's row checks on a local file, before any GPU is spent.

Called by the operator's CLI. Runs `data.check_rows` (shape, keys, roles, empty turns, labels) over every row and
reports each bad row by the line an editor shows. Lengths need the model's tokenizer: with `tokenizer_dir` (a local
folder holding one), causal-lm rows are encoded as the trainer encodes them, and those longer than
`training.maxSeqLength` are counted (the pod logs the same count); without it lengths are not checked. Neither path
imports torch; transformers is imported only when lengths are asked for, and loads the folder's `tokenizer.json`
(fast tokenizers only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune_api.data import DatasetSpec, TaskSpec
from finetune_api.trainer import TrainerPaths

from finetune_trainer import data, sft, templates


@dataclass(frozen=True)
class DataReport:
    """What `check_data` found: rows read, the causal-lm row shape, problems (one line per bad row), and the rows
    longer than `max_seq_length` (None when lengths were not checked)."""

    rows: int
    shape: data.Shape | None
    problems: list[str]
    too_long: list[str] | None
    max_seq_length: int


def _tokenizer(folder: Path, task: TaskSpec, dataset: DatasetSpec, data_file: Path) -> Any:
    """The folder's tokenizer with `task.chatTemplate` applied (a .jinja file is looked up next to the data)."""
    # Only when lengths are asked for; the fast-tokenizer class, unlike AutoTokenizer, loads without torch.
    from transformers import PreTrainedTokenizerFast

    if not (folder / "tokenizer.json").is_file():
        raise data.DataError(
            f"--model {folder}: no tokenizer.json there (a fast tokenizer is needed for lengths)"
        )
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    templates.apply(tokenizer, task, dataset, TrainerPaths(data_dir=str(data_file.parent)))
    return tokenizer


def check_data(
    path: Path, task: TaskSpec, dataset: DatasetSpec, max_seq_length: int, tokenizer_dir: Path | None = None
) -> DataReport:
    """Check every row of the file at `path`; DataError only when the file cannot be read at all."""
    rows = data.read_records(path, data.infer_format(path, dataset.format))
    good, problems, shape = data.check_rows(rows, task, dataset)
    too_long = None
    if tokenizer_dir is not None and task.type == "causal-lm":
        tokenizer = _tokenizer(tokenizer_dir, task, dataset, path)
        templates.require(tokenizer, task, shape)
        too_long = []
        for row in good:
            try:
                length = sft.encode_measured(row.fields, tokenizer, task, dataset.columns, max_seq_length)[1]
            except data.DataError as exc:
                problems.append(f"{row.where}: {exc}")
                continue
            if length > max_seq_length:
                too_long.append(f"{row.where}: {length} tokens")
    return DataReport(len(rows), shape, problems, too_long, max_seq_length)


def describe(report: DataReport, path: Path, shown: int = 20) -> list[tuple[str, str]]:
    """(kind, line) pairs for the CLI, kind `bad`, `ok` or `note`; at most `shown` bad and over-long rows listed."""
    lines = [("bad", f"{path}: {line}") for line in report.problems[:shown]]
    if len(report.problems) > shown:
        lines.append(("bad", f"{path}: … and {len(report.problems) - shown} more bad rows"))
    shape = f", {report.shape.name} ({report.shape.origin})" if report.shape else ""
    lines.append(
        ("bad" if report.problems else "ok", f"{path}: {report.rows} rows, {len(report.problems)} bad{shape}")
    )
    if report.too_long is None:
        lines.append(
            ("note", f"{path}: lengths not checked (pass --model DIR, a folder with the model's tokenizer)")
        )
    elif report.too_long:
        listed = "; ".join(report.too_long[:shown]) + (" …" if len(report.too_long) > shown else "")
        lines.append(("note", f"{path}: {len(report.too_long)} of {report.rows} rows are longer than maxSeqLength "
                              f"{report.max_seq_length} and would be truncated: {listed}"))  # fmt: skip
    else:
        lines.append(("ok", f"{path}: every row fits in maxSeqLength {report.max_seq_length}"))
    return lines
