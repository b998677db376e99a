"""The five training objectives: how a validated row becomes token ids and labels, and how rows become batches.

Called by the recipe's `_setup_data` (`encode_all`, `pack`) and its loop (`collate`); `model.load_model` reads
`MODEL_CLASSES` and `PEFT_TASK_TYPES`. Rows reaching here passed `data.validate`, so fields exist with the right
types. Labels use -100 for positions the loss ignores: the prompt of an instruction, the turns before the last
assistant message of a chat, sub-word continuations in token classification. causal-lm special tokens are those of
the format the model is served in: a chat template's own (the trainer adds none on top), or for plain text the BOS
the tokenizer itself adds and an EOS after the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from finetune_operator.api.data import ColumnMapping, TaskSpec

from finetune_trainer.data import DataError, Record, Row

HEAD_MODULES = ("lm_head", "score", "classifier", "qa_outputs")
"""Names of the output heads transformers puts on top of a base model; QLoRA keeps them unquantized."""

IGNORE = -100
"""Label value the Hugging Face losses skip."""

Features = dict[str, Any]
"""One encoded example: lists of ints per sequence field, ints for scalar targets."""

MODEL_CLASSES: dict[str, str] = {
    "causal-lm": "AutoModelForCausalLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "question-answering": "AutoModelForQuestionAnswering",
}
"""task.type → the transformers auto class that adds the right head."""

PEFT_TASK_TYPES: dict[str, str] = {
    "causal-lm": "CAUSAL_LM",
    "sequence-classification": "SEQ_CLS",
    "token-classification": "TOKEN_CLS",
    "seq2seq": "SEQ_2_SEQ_LM",
    "question-answering": "QUESTION_ANS",
}
"""task.type → peft.TaskType name; peft then also trains and saves the new head (modules_to_save)."""


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _fit(prefix: list[int], answer: list[int], max_len: int) -> tuple[list[int], list[int]]:
    """Truncate so at least half the window is answer: the prompt is cut from the left, the answer from the right."""
    if len(prefix) + len(answer) <= max_len:
        return prefix, answer
    answer = answer[: max(max_len // 2, max_len - len(prefix))]
    return prefix[len(prefix) - (max_len - len(answer)) :] if max_len > len(answer) else [], answer


def _sft(prefix: list[int], answer: list[int], max_len: int) -> Features:
    prefix, answer = _fit(prefix, answer, max_len)
    return {"input_ids": prefix + answer, "labels": [IGNORE] * len(prefix) + answer}


def _has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _chat(tokenizer: Any, messages: list[Record], max_len: int) -> Features:
    """A chat as the model's template renders it, trained on the last message (the assistant's).

    The template places every special token (BOS, turn markers, end of turn), as it does when the model is served;
    nothing is added on top.
    """
    if not _has_chat_template(tokenizer):
        raise DataError(
            "the model's tokenizer has no chat template, so chats cannot be encoded; "
            "use prompt/completion rows with task.promptFormat plain, or a model that has one"
        )
    prefix = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prefix):
        raise DataError(
            "the model's chat template renders the chat before the last assistant message differently inside the "
            "whole chat, so the answer cannot be told apart; use task.promptFormat plain"
        )
    return _sft(_ids(tokenizer, prefix), _ids(tokenizer, full[len(prefix) :]), max_len)


def _plain(tokenizer: Any, prompt: str, answer: str, max_len: int) -> Features:
    """Raw text: BOS only where the tokenizer itself starts a text with it (as a completion endpoint would), EOS
    after the answer so the model learns to stop."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    lead = [bos] if bos is not None and tokenizer("x")["input_ids"][:1] == [bos] else []
    end = [eos] if eos is not None else []
    return _sft(lead + _ids(tokenizer, prompt), _ids(tokenizer, answer) + end, max_len)


def encode_causal_lm(
    row: Record, tokenizer: Any, task: TaskSpec, columns: ColumnMapping, max_len: int
) -> Features:
    """Chat (messages), instruction (prompt/completion, as a chat or plain: `task.prompt_format`) or plain text;
    the loss is on the last assistant message, the completion, or the whole text."""
    if columns.messages in row:
        return _chat(tokenizer, row[columns.messages], max_len)
    if columns.prompt not in row:
        return _plain(tokenizer, "", row[columns.text], max_len)
    prompt, completion = row[columns.prompt], row[columns.completion]
    chat = task.prompt_format == "chat" or (task.prompt_format == "auto" and _has_chat_template(tokenizer))
    if chat:
        turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        return _chat(tokenizer, turns, max_len)
    return _plain(tokenizer, prompt, completion, max_len)


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


def encode_question_answering(
    row: Record, tokenizer: Any, task: TaskSpec, columns: ColumnMapping, max_len: int
) -> Features:
    """Extractive QA: the start and end token of the answer span in the context (0, the first token, if cut off)."""
    text, start_char = _first_answer(row[columns.answers])
    if row[columns.context][start_char : start_char + len(text)] != text:
        raise DataError(f"answer {text!r} is not at answer_start {start_char} of the context")
    encoded = tokenizer(
        row[columns.question],
        row[columns.context],
        truncation="only_second",
        max_length=max_len,
        return_offsets_mapping=True,
    )
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

ENCODERS: dict[str, Encoder] = {
    "causal-lm": encode_causal_lm,
    "sequence-classification": encode_sequence_classification,
    "token-classification": encode_token_classification,
    "seq2seq": encode_seq2seq,
    "question-answering": encode_question_answering,
}
"""task.type → the function that turns one row into features."""


def encode_all(
    rows: list[Row], tokenizer: Any, task: TaskSpec, columns: ColumnMapping, max_len: int
) -> list[Features]:
    """Encode every row; a DataError is re-raised with the row's place in the file in front."""
    encoder, encoded = ENCODERS[task.type], []
    for row in rows:
        try:
            encoded.append(encoder(row.fields, tokenizer, task, columns, max_len))
        except DataError as exc:
            raise DataError(f"{row.where}: {exc}") from None
    return encoded


def pack(examples: list[Features], max_len: int) -> list[Features]:
    """causal-lm packing: concatenate examples and cut the stream into full windows of `max_len` tokens."""
    ids = [t for e in examples for t in e["input_ids"]]
    labels = [t for e in examples for t in e["labels"]]
    windows = range(0, len(ids) - max_len + 1, max_len)
    packed = [{"input_ids": ids[i : i + max_len], "labels": labels[i : i + max_len]} for i in windows]
    if not packed:
        raise DataError(f"packing needs at least {max_len} tokens of data, got {len(ids)}")
    return packed


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
