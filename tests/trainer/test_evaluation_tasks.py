"""`spec.evaluation` for each task's usual metrics (`scoring`): they rise on data the tiny model learns, and a
2-rank run reports what the 1-rank run did.

Each test trains one tiny model on a fixed mapping (16 rows: the distinct examples repeated, so the 4 held-out rows
are copies of trained ones) and checks its before → after scores. It then evaluates that trained model as the base
of a 2-rank run (torchrun, one step): the gathered predictions must give the very scores the 1-rank run computed
after training, on the same held-out rows. The trained model scores well above chance, so a wrong row order
(predictions paired with another row's reference) would change the numbers.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from finetune_trainer import evaluation, scoring

from tests.trainer.test_tasks import QUESTIONS, REVIEWS
from tests.trainer.trainerkit import Run, eval_scores, launch, make_config

HELD_OUT = {"validationSplit": 0.25}
SEED = 3
"""Holds out copies of the distinct rows 0, 3, 2, 1 (of 4): rank 0 predicts the 1st and 3rd, rank 1 the 2nd and 4th,
and pasting the ranks' predictions one after the other instead of interleaving them would misplace two rows
(question answering: rows 0, 1, 0, 1 of 2)."""

ENTITIES = [
    {"tokens": ["Alice", "lives", "in", "London"], "tags": ["B-PER", "O", "O", "B-LOC"]},
    {"tokens": ["Paris", "is", "big"], "tags": ["B-LOC", "O", "O"]},
    {"tokens": ["Bob", "met", "Marie", "in", "Berlin"], "tags": ["B-PER", "O", "B-PER", "O", "B-LOC"]},
    {"tokens": ["the", "weather", "is", "nice"], "tags": ["O", "O", "O", "O"]},
] * 4
"""Sentences of different lengths and entities: a prediction paired with another row's tags would not fit."""

SENTENCES = [
    {"source": "good morning my dear friend", "target": "guten morgen mein lieber freund"},
    {"source": "the house is very wonderful", "target": "das haus ist sehr wunderbar"},
    {"source": "my friend lives in the house", "target": "mein freund wohnt in dem haus"},
    {"source": "the morning is very good", "target": "der morgen ist sehr gut"},
] * 4
"""Targets of five words or more: BLEU counts 4-grams, which two-word sentences lack."""


def _scores(run: Run) -> dict[str, float]:
    scores = eval_scores(run)
    assert [e["rows"] for e in run.events if e["event"] == "evaluation"] == [4, 4]  # the held-out rows
    return scores


def _rose(scores: dict[str, float], metrics: tuple[str, ...], by: float) -> None:
    for metric in metrics:
        assert scores[f"eval_after_{metric}"] >= scores[f"eval_before_{metric}"] + by, (metric, scores)


def _two_ranks_agree(run: Run, tmp_path: Path, rows: list[dict[str, Any]], **extra: Any) -> None:
    """The trained model (a full fine-tune) as the base of a 2-rank run: its before-scores are the after-scores."""
    data = tmp_path / "two" / "data"
    shutil.copytree(run.output, data / "trained", ignore=shutil.ignore_patterns("checkpoints"))
    spec = run.config.spec.to_wire()
    spec.update(model={"uri": "pvc://data/trained"}, **extra)
    spec["training"].update(maxSteps=1)
    two = launch(make_config(tmp_path / "two", spec, rows), nproc=2)

    assert two.rc == 0, two.summary
    assert two.event("start")["world_size"] == 2
    after = {k.replace("_after_", "_before_"): v for k, v in _scores(run).items() if "_after_" in k}
    assert {k: two.summary["metrics"][k] for k in after} == pytest.approx(after, rel=1e-5)


def test_sequence_classification_macro_f1(train: Callable[..., Run], tmp_path: Path) -> None:
    spec = {"model": {"preset": "tiny-bert"}, "method": {"type": "full"}, "dataset": HELD_OUT,
            "task": {"type": "sequence-classification", "labels": ["negative", "positive"]},
            "training": {"learningRate": 0.002, "seed": SEED}, "evaluation": {"enabled": True}}  # fmt: skip
    run = train(spec, REVIEWS * 2)

    scores = _scores(run)
    assert set(scores) == {f"eval_{p}_{m}" for p in ("before", "after") for m in ("accuracy", "macro_f1")}
    assert scores["eval_after_macro_f1"] == 1.0  # the held-out reviews repeat trained ones
    _rose(scores, ("accuracy", "macro_f1"), by=0.25)
    _two_ranks_agree(run, tmp_path, REVIEWS * 2)


def test_token_classification_entity_scores(train: Callable[..., Run], tmp_path: Path) -> None:
    spec = {"model": {"preset": "tiny-bert"}, "method": {"type": "full"}, "dataset": HELD_OUT,
            "task": {"type": "token-classification", "labels": ["O", "B-PER", "B-LOC"]},
            "training": {"learningRate": 0.002, "seed": SEED}, "evaluation": {"enabled": True}}  # fmt: skip
    run = train(spec, ENTITIES)

    scores = _scores(run)
    assert set(scores) == {
        f"eval_{p}_{m}" for p in ("before", "after") for m in ("precision", "recall", "f1")
    }
    assert scores["eval_after_f1"] == 1.0  # every entity of the held-out rows, and nothing else
    _rose(
        scores, ("precision", "recall", "f1"), by=0.3
    )  # the random base tags about half the words as entities
    _two_ranks_agree(run, tmp_path, ENTITIES)


def test_seq2seq_bleu_and_chrf(train: Callable[..., Run], tmp_path: Path) -> None:
    spec = {"model": {"preset": "tiny-t5"}, "method": {"type": "full"}, "dataset": HELD_OUT,
            "task": {"type": "seq2seq", "sourcePrefix": "translate: "},
            "training": {"maxSteps": 40, "learningRate": 0.005, "seed": SEED},
            "evaluation": {"enabled": True, "metrics": ["bleu", "chrf", "loss"], "maxNewTokens": 16}}  # fmt: skip
    run = train(spec, SENTENCES)

    scores = _scores(run)
    assert set(scores) == {f"eval_{p}_{m}" for p in ("before", "after") for m in ("bleu", "chrf", "loss")}
    _rose(scores, ("bleu", "chrf"), by=40.0)  # sacreBLEU's 0-100 scale
    # Under DDP. With ZeRO-3 the 2-rank run scores the same, but a rank sometimes aborts at process exit after
    # writing its result ("terminate called without an active exception"): left open in the session notes.
    _two_ranks_agree(run, tmp_path, SENTENCES)


def test_question_answering_exact_match_and_f1(train: Callable[..., Run], tmp_path: Path) -> None:
    spec = {"model": {"preset": "tiny-bert"}, "method": {"type": "full"}, "dataset": HELD_OUT,
            "task": {"type": "question-answering"}, "training": {"learningRate": 0.002, "maxSteps": 30, "seed": SEED},
            "evaluation": {"enabled": True}}  # fmt: skip
    run = train(spec, QUESTIONS * 2)

    scores = _scores(run)
    assert set(scores) == {f"eval_{p}_{m}" for p in ("before", "after") for m in ("exact_match", "f1")}
    assert scores["eval_after_exact_match"] == 1.0
    _rose(scores, ("exact_match", "f1"), by=0.5)
    _two_ranks_agree(run, tmp_path, QUESTIONS * 2)


def test_the_ranks_predictions_go_back_in_row_order() -> None:
    assert evaluation._in_row_order([[0, 2, 4], [1, 3]]) == [0, 1, 2, 3, 4]
    assert evaluation._in_row_order([[0]]) == [0]


def test_best_span_keeps_to_the_context() -> None:
    context = [None, 0, 0, None, 1, 1, 1, None]  # [CLS] question [SEP] context [SEP]
    starts, ends = [(1, 9.0), (5, 2.0), (4, 1.0)], [(2, 9.0), (4, 3.0), (6, 1.0)]
    # (1, 2) scores best but lies in the question; (5, 4) ends before it starts.
    assert scoring.best_span(starts, ends, context) == (4, 4)
    assert scoring.best_span([(1, 1.0)], [(2, 1.0)], context) is None
