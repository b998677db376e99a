"""`spec.evaluation`: which metrics each task reports, the BIO check for entity metrics, and the room they take in
the termination message."""

from __future__ import annotations

from typing import Any

import pytest
from finetune_operator.api.evaluation import DEFAULT_METRICS, TASK_METRICS, EvaluationSpec, result_key
from finetune_operator.api.job import parse
from finetune_operator.api.trainer import TERMINATION_MESSAGE_LIMIT, TerminationMessage

from tests.invalid_specs import merge, minimal_job


def _ner(labels: list[str], evaluation: dict[str, Any]) -> dict[str, Any]:
    return merge(minimal_job(), {"spec": {
        "model": {"preset": "tiny-bert"}, "task": {"type": "token-classification", "labels": labels},
        "dataset": {"validationSplit": 0.1}, "evaluation": evaluation}})  # fmt: skip


def test_every_task_has_defaults_it_supports() -> None:
    assert set(DEFAULT_METRICS) == set(TASK_METRICS)
    for task, metrics in DEFAULT_METRICS.items():
        assert set(metrics) <= set(TASK_METRICS[task])
        assert EvaluationSpec(enabled=True).metrics_for(task) == metrics


@pytest.mark.parametrize(
    ("labels", "evaluation"),
    [
        (["O", "B-PER", "I-PER", "E-PER", "S-LOC"], {"enabled": True}),
        (["other", "person"], {"enabled": True, "metrics": ["loss"]}),  # no entity metric: any names
        (["other", "person"], {"enabled": False}),
    ],
    ids=["bioes-tags", "loss-only", "off"],
)
def test_entity_metrics_accept_bio_tags_and_need_them_only_when_computed(
    labels: list[str], evaluation: dict[str, Any]
) -> None:
    parse(_ner(labels, evaluation))


def test_the_most_metrics_fit_the_termination_message_beside_the_longest_output() -> None:
    value = -1.2345678901234567e-300  # the longest repr a float has
    every = {
        result_key(p, m): value
        for m in {m for ms in TASK_METRICS.values() for m in ms}
        for p in ("before", "after")
    }
    metrics = {
        "step": 1e9,
        "loss": value,
        "tokens": 1e15,
        "eval_loss": value,
        "train_seconds": value,
        **every,
    }
    message = TerminationMessage(
        status="Succeeded", output="pvc://" + "c" * 2042, digest="sha256:" + "0" * 64, metrics=metrics
    )

    text = message.to_json()

    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert TerminationMessage.model_validate_json(text) == message  # nothing was cut
