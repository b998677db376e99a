"""status.progress from the trainer's own gauges, and how often it may be written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from finetune_api.trainer import Metric
from finetune_operator import progress
from prometheus_client import CollectorRegistry, Gauge, generate_latest

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _page(**values: float) -> str:
    registry = CollectorRegistry()
    for metric in Metric:
        gauge = Gauge(metric.value, "x", registry=registry)
        gauge.set(values.get(metric.name.lower(), float("nan")))
    return generate_latest(registry).decode()


def test_gauges_become_the_progress_block() -> None:
    page = _page(step=30, total_steps=120, epoch=0.25, loss=1.5, learning_rate=2e-4, tokens_per_second=900.5,
                 eta_seconds=61.7)  # fmt: skip
    assert progress.parse(page) == {
        "step": 30, "totalSteps": 120, "epoch": 0.25, "loss": 1.5, "learningRate": 0.0002,
        "tokensPerSecond": 900.5, "etaSeconds": 61, "percent": 25,
    }  # fmt: skip


def test_gauges_not_measured_yet_are_left_out() -> None:
    assert progress.parse(_page(step=0, total_steps=10)) == {"step": 0, "totalSteps": 10, "percent": 0}


def test_writes_are_at_least_an_interval_apart() -> None:
    last = progress.stamped({"step": 1}, NOW)
    assert progress.due(None, NOW, 5)
    assert not progress.due(last, NOW + timedelta(seconds=4.9), 5)
    assert progress.due(last, NOW + timedelta(seconds=5), 5)


def test_only_changed_numbers_count_as_a_change() -> None:
    assert not progress.changed(progress.stamped({"step": 3}, NOW), {"step": 3})
    assert progress.changed(progress.stamped({"step": 3}, NOW), {"step": 4})
