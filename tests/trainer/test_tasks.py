"""The other four tasks (and chat SFT): each learns its toy data, and the saved adapter predicts what it learned."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import peft
import pytest
import torch
import transformers

from tests.trainer.trainerkit import BERT, LLAMA, T5, Run

REVIEWS = [
    {"text": "the movie was great and the actors were brilliant", "label": "positive"},
    {"text": "terrible food, cold and boring", "label": "negative"},
    {"text": "I loved every minute of it", "label": "positive"},
    {"text": "a waste of time, the ending made no sense", "label": "negative"},
] * 2
ENTITIES = [
    {"tokens": ["Alice", "lives", "in", "London"], "tags": ["B-PER", "O", "O", "B-LOC"]},
    {"tokens": ["Bob", "moved", "to", "Berlin"], "tags": ["B-PER", "O", "O", "B-LOC"]},
    {"tokens": ["Marie", "studied", "in", "Paris"], "tags": ["B-PER", "O", "O", "B-LOC"]},
    {"tokens": ["Alice", "works", "in", "Warsaw"], "tags": ["B-PER", "O", "O", "B-LOC"]},
] * 2
TRANSLATIONS = [
    {"source": "good morning", "target": "guten morgen"},
    {"source": "the house is wonderful", "target": "das haus ist wunderbar"},
    {"source": "my friend", "target": "mein freund"},
    {"source": "good morning my friend", "target": "guten morgen mein freund"},
] * 2
CONTEXT = "Marie Curie was born in Warsaw and studied in Paris."
QUESTIONS = [
    {
        "question": "Where was Marie born?",
        "context": CONTEXT,
        "answers": {"text": ["Warsaw"], "answer_start": [24]},
    },
    {
        "question": "Where did she study?",
        "context": CONTEXT,
        "answers": {"text": ["Paris"], "answer_start": [46]},
    },
] * 4
CHATS = [
    {"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Say hi"},
                  {"role": "assistant", "content": "Hi!"}]},
    {"messages": [{"role": "user", "content": "Give me a synonym for happy."}, {"role": "assistant", "content": "Joyful."}]},
] * 4  # fmt: skip


def _adapted(auto_class: Any, base: Path, output: Path, **kwargs: Any) -> Any:
    return peft.PeftModel.from_pretrained(auto_class.from_pretrained(base, **kwargs), output).eval()


def _learned(run: Run, first: float, last_below: float) -> None:
    assert run.rc == 0, run.summary
    assert run.losses[1] == pytest.approx(first, rel=0.005)
    assert run.losses[max(run.losses)] < last_below


def test_sequence_classification_on_tiny_bert(train: Callable[..., Run]) -> None:
    labels = ["negative", "positive"]
    run = train({"model": {"preset": "tiny-bert"}, "task": {"type": "sequence-classification", "labels": labels}},
                REVIEWS)  # fmt: skip

    _learned(run, first=0.694, last_below=0.1)  # ≈ ln 2
    model = _adapted(transformers.AutoModelForSequenceClassification, BERT, run.output, num_labels=2)
    tokenizer = transformers.AutoTokenizer.from_pretrained(run.output)
    with torch.no_grad():
        logits = model(
            **tokenizer([r["text"] for r in REVIEWS[:4]], return_tensors="pt", padding=True)
        ).logits
    assert [labels[i] for i in logits.argmax(-1).tolist()] == [r["label"] for r in REVIEWS[:4]]


def test_sequence_classification_on_a_decoder(train: Callable[..., Run]) -> None:
    run = train(
        {"model": {"preset": "tiny-llama"}, "training": {"learningRate": 0.003, "maxSteps": 30},
         "task": {"type": "sequence-classification", "labels": ["negative", "positive"]}},
        REVIEWS,
    )  # fmt: skip

    _learned(run, first=0.784, last_below=0.05)


def test_token_classification_on_tiny_bert(train: Callable[..., Run]) -> None:
    labels = ["O", "B-PER", "B-LOC"]
    run = train({"model": {"preset": "tiny-bert"}, "task": {"type": "token-classification", "labels": labels}},
                ENTITIES)  # fmt: skip

    _learned(run, first=1.125, last_below=0.05)  # the first step already runs with BERT's dropout (0.1)
    model = _adapted(transformers.AutoModelForTokenClassification, BERT, run.output, num_labels=3)
    tokenizer = transformers.AutoTokenizer.from_pretrained(run.output)
    encoded = tokenizer(["Bob", "lives", "in", "Paris"], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**encoded).logits.argmax(-1)[0].tolist()
    words = encoded.word_ids()
    first_pieces = [predicted[i] for i, w in enumerate(words) if w is not None and w != words[i - 1]]
    assert [labels[i] for i in first_pieces] == ["B-PER", "O", "O", "B-LOC"]


def test_seq2seq_lora_on_tiny_t5(train: Callable[..., Run]) -> None:
    run = train({"model": {"preset": "tiny-t5"}, "task": {"type": "seq2seq", "sourcePrefix": "translate: "},
                 "training": {"maxSteps": 30}}, TRANSLATIONS)  # fmt: skip

    _learned(run, first=6.83, last_below=3.4)  # about halved
    model = _adapted(transformers.AutoModelForSeq2SeqLM, T5, run.output)
    assert isinstance(model.base_model.model, transformers.T5ForConditionalGeneration)


def test_seq2seq_full_on_tiny_t5_translates(train: Callable[..., Run]) -> None:
    run = train({"model": {"preset": "tiny-t5"}, "method": {"type": "full"},
                 "task": {"type": "seq2seq", "sourcePrefix": "translate: "},
                 "training": {"maxSteps": 40, "learningRate": 0.005}}, TRANSLATIONS)  # fmt: skip

    assert run.rc == 0, run.summary
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(run.output).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(run.output)
    with torch.no_grad():
        out = model.generate(**tokenizer(["translate: good morning"], return_tensors="pt"), max_new_tokens=8)
    assert tokenizer.decode(out[0], skip_special_tokens=True).strip() == "guten morgen"


def test_question_answering_on_tiny_bert(train: Callable[..., Run]) -> None:
    # BERT's dropout (0.1) is on while training: at the default learning rate the tiny model's loss spikes.
    run = train({"model": {"preset": "tiny-bert"}, "task": {"type": "question-answering"},
                 "training": {"learningRate": 0.01, "maxSteps": 30}}, QUESTIONS)  # fmt: skip

    _learned(run, first=3.374, last_below=0.05)
    model = _adapted(transformers.AutoModelForQuestionAnswering, BERT, run.output)
    tokenizer = transformers.AutoTokenizer.from_pretrained(run.output)
    encoded = tokenizer("Where was Marie born?", CONTEXT, return_tensors="pt")
    with torch.no_grad():
        out = model(**encoded)
    start, end = int(out.start_logits.argmax()), int(out.end_logits.argmax())
    assert tokenizer.decode(encoded["input_ids"][0][start : end + 1]).strip() == "warsaw"


def test_chat_sft_trains_only_the_assistant_turn(train: Callable[..., Run]) -> None:
    from tests.trainer.test_chat_format import encode

    tokenizer = transformers.AutoTokenizer.from_pretrained(LLAMA)
    features = encode(tokenizer, CHATS[0])
    trained = [t for t, label in zip(features["input_ids"], features["labels"], strict=True) if label != -100]
    assert tokenizer.decode(trained) == "Hi!</s>\n"  # the template's end of turn, not a second </s>

    run = train({"model": {"preset": "tiny-llama"}}, CHATS)
    assert run.rc == 0, run.summary
    assert run.losses[20] < run.losses[1] - 0.5


def test_every_task_table_covers_every_task() -> None:
    """A new TaskType cannot be forgotten in a table the trainer looks tasks up in."""
    from typing import get_args

    from finetune_api.presets import TaskType
    from finetune_trainer import card, tasks

    tables = {
        "tasks.MODEL_CLASSES": tasks.MODEL_CLASSES,
        "tasks.PEFT_TASK_TYPES": tasks.PEFT_TASK_TYPES,
        "tasks.ENCODERS": tasks.ENCODERS,
        "card.PIPELINE_TAGS": card.PIPELINE_TAGS,
    }
    missing = {name: set(get_args(TaskType)) - set(table) for name, table in tables.items()}
    assert not any(missing.values()), missing
