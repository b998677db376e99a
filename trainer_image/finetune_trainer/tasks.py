"""The five training objectives: how a validated row becomes token ids and labels, and how rows become batches.

Called by the recipe's `_setup_data` (`encode_all`, which also lists the causal-lm rows cut to fit) and by
`batching` (`collate`, the padded layout); `model.load_model` reads `MODEL_CLASSES` and `PEFT_TASK_TYPES`. Rows
reaching here passed `data.validate`, so fields exist with the right types. Labels use -100 for positions the loss
ignores: sub-word continuations in token classification, and in causal-lm (encoded by `sft`) the tokens
`task.lossOn` does not train.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from finetune_api.data import ColumnMapping, TaskSpec
from finetune_api.presets import TaskType

from finetune_trainer.data import DataError, Record, Row
from finetune_trainer.sft import IGNORE as IGNORE
from finetune_trainer.sft import Features as Features
from finetune_trainer.sft import encode_causal_lm as encode_causal_lm
from finetune_trainer.sft import encode_measured

HEAD_MODULES = ("lm_head", "score", "classifier", "qa_outputs")
"""Names of the output heads transformers puts on top of a base model; QLoRA keeps them unquantized."""

MODEL_CLASSES: dict[TaskType, str] = {
    "causal-lm": "AutoModelForCausalLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "question-answering": "AutoModelForQuestionAnswering",
}
"""task.type → the transformers auto class that adds the right head."""

PEFT_TASK_TYPES: dict[TaskType, str] = {
    "causal-lm": "CAUSAL_LM",
    "sequence-classification": "SEQ_CLS",
    "token-classification": "TOKEN_CLS",
    "seq2seq": "SEQ_2_SEQ_LM",
    "question-answering": "QUESTION_ANS",
}
"""task.type → peft.TaskType name; peft then also trains and saves the new head (modules_to_save)."""


def _label_id(value: Any, labels: list[str]) -> int:
    return value if isinstance(value, int) else labels.index(value)


def encode_sequence_classification(
    row: Record, tokenizer: Any, task: TaskSpec, columns: ColumnMapping, max_len: int
) -> Features:
    """One label per text."""
    encoded = tokenizer(row[columns.text], truncation=True, max_length=max_len)
    return {**encoded, "labels": _label_id(row[columns.label], task.labels or [])}


def encode_token_classification(
    row: Record, tokenizer: Any, task: TaskSpec, columns: ColumnMapping, max_len: int
) -> Features:
    """One tag per word; the tag goes on the word's first sub-word token, the rest are ignored."""
    encoded = tokenizer(row[columns.tokens], is_split_into_words=True, truncation=True, max_length=max_len)
    tags = [_label_id(t, task.labels or []) for t in row[columns.tags]]
    labels, previous = [], None
    for word in encoded.word_ids():
        labels.append(IGNORE if word is None or word == previous else tags[word])
        previous = word
    return {**encoded, "labels": labels}


def encode_seq2seq(
    row: Record, tokenizer: Any, task: TaskSpec, columns: ColumnMapping, max_len: int
) -> Features:
    """Source (with `task.source_prefix`) → target."""
    source = (task.source_prefix or "") + row[columns.source]
    encoded = tokenizer(source, truncation=True, max_length=max_len)
    target = tokenizer(row[columns.target], truncation=True, max_length=max_len)["input_ids"]
    return {**encoded, "labels": list(target)}


def _first_answer(answers: Record) -> tuple[str, int]:
    text, start = answers.get("text"), answers.get("answer_start")
    if isinstance(text, list):
        text, start = (text[0], start[0]) if text and isinstance(start, list) and start else ("", 0)
    if not isinstance(text, str) or not isinstance(start, int):
        raise DataError("answers must be {text: [str], answer_start: [int]}")
    return text, start


def encode_question_and_context(row: Record, tokenizer: Any, columns: ColumnMapping, max_len: int) -> Any:
    """The question and the (possibly cut) context as one sequence, with each token's character span
    (`offset_mapping`) and `sequence_ids()` (1 for context tokens): how QA rows are encoded and answers read back."""
    return tokenizer(
        row[columns.question],
        row[columns.context],
        truncation="only_second",
        max_length=max_len,
        return_offsets_mapping=True,
    )


def encode_question_answering(
    row: Record, tokenizer: Any, task: TaskSpec, columns: ColumnMapping, max_len: int
) -> Features:
    """Extractive QA: the start and end token of the answer span in the context (0, the first token, if cut off)."""
    text, start_char = _first_answer(row[columns.answers])
    if row[columns.context][start_char : start_char + len(text)] != text:
        raise DataError(f"answer {text!r} is not at answer_start {start_char} of the context")
    encoded = encode_question_and_context(row, tokenizer, columns, max_len)
    offsets, sequence = encoded.pop("offset_mapping"), encoded.sequence_ids()
    end_char, start, end = start_char + len(text), 0, 0
    for index, (span, seq) in enumerate(zip(offsets, sequence, strict=True)):
        if seq != 1:
            continue
        if span[0] <= start_char < span[1]:
            start = index
        if span[0] < end_char <= span[1]:
            end = index
    if end < start:
        start = end = 0
    return {**encoded, "start_positions": start, "end_positions": end}


Encoder = Callable[[Record, Any, TaskSpec, ColumnMapping, int], Features]

ENCODERS: dict[TaskType, Encoder] = {
    "causal-lm": encode_causal_lm,
    "sequence-classification": encode_sequence_classification,
    "token-classification": encode_token_classification,
    "seq2seq": encode_seq2seq,
    "question-answering": encode_question_answering,
}
"""task.type → the function that turns one row into features."""


@dataclass(frozen=True)
class Encoded:
    """Encoded rows, and each causal-lm row longer than `max_len` that was cut to fit, as `line N: L tokens` (None
    for the other tasks, which are not measured)."""

    examples: list[Features]
    too_long: list[str] | None


def encode_all(
    rows: list[Row], tokenizer: Any, task: TaskSpec, columns: ColumnMapping, max_len: int
) -> Encoded:
    """Encode every row; a DataError is re-raised with the row's place in the file in front."""
    measured = task.type == "causal-lm"
    examples, too_long = [], []
    for row in rows:
        try:
            if not measured:
                examples.append(ENCODERS[task.type](row.fields, tokenizer, task, columns, max_len))
                continue
            example, length = encode_measured(row.fields, tokenizer, task, columns, max_len)
        except DataError as exc:
            raise DataError(f"{row.where}: {exc}") from None
        examples.append(example)
        if length > max_len:
            too_long.append(f"{row.where}: {length} tokens")
    return Encoded(examples, too_long if measured else None)


_PAD_LABEL = {"labels": IGNORE}


def collate(examples: list[Features], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the sequence fields of a batch (ids with `pad_id`, labels with -100) and stack the scalars."""
    batch: dict[str, torch.Tensor] = {}
    for key, first in examples[0].items():
        if isinstance(first, list):
            fill = pad_id if key == "input_ids" else _PAD_LABEL.get(key, 0)
            width = max(len(e[key]) for e in examples)  # seq2seq labels are not as long as the inputs
            rows = [list(e[key]) + [fill] * (width - len(e[key])) for e in examples]
            batch[key] = torch.tensor(rows, dtype=torch.long)
        else:
            batch[key] = torch.tensor([e[key] for e in examples], dtype=torch.long)
    if "attention_mask" not in batch:
        lengths = torch.tensor([len(e["input_ids"]) for e in examples])
        batch["attention_mask"] = (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).long()
    return batch
