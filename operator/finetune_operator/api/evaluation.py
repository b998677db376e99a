"""`spec.evaluation`: score the base model before training and the result after, on the held-out rows."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from finetune_operator.api.base import ApiModel

EvalMetric = Literal["loss", "perplexity", "accuracy"]

TASK_METRICS: dict[str, tuple[EvalMetric, ...]] = {
    "causal-lm": ("loss", "perplexity"),
    "sequence-classification": ("accuracy", "loss"),
}
"""task.type → the metrics evaluation supports for it; other tasks are not evaluated yet."""

DEFAULT_METRICS: dict[str, tuple[EvalMetric, ...]] = {
    "causal-lm": ("loss", "perplexity"),
    "sequence-classification": ("accuracy",),
}
"""task.type → the metrics reported when `evaluation.metrics` is unset."""


class EvaluationSpec(ApiModel):
    """Before/after evaluation: the base model and the fine-tuned one are scored on the same held-out rows."""

    enabled: bool = Field(
        default=False,
        description=(
            "Evaluate the base model before training and the result after it, on the held-out rows "
            "(dataset.validationSplit, which must then be > 0). Results are reported as eval_before_<metric> and "
            "eval_after_<metric> in manifest.json and status.result.metrics. Supported for task.type causal-lm "
            "and sequence-classification."
        ),
    )
    metrics: list[EvalMetric] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description=(
            "Which metrics to report. causal-lm: loss, perplexity (exp of the loss); default both. "
            "sequence-classification: accuracy, loss; default accuracy."
        ),
    )
    max_samples: int | None = Field(
        default=None,
        ge=1,
        description="Evaluate on at most this many held-out rows (the first ones of the seeded shuffle).",
    )

    def metrics_for(self, task: str) -> tuple[EvalMetric, ...]:
        """The metrics to report for `task`: the listed ones, else the task's default."""
        return tuple(self.metrics) if self.metrics is not None else DEFAULT_METRICS.get(task, ())


def result_key(phase: Literal["before", "after"], metric: str) -> str:
    """The name of a score in manifest.json and the termination message: eval_before_loss, eval_after_accuracy."""
    return f"eval_{phase}_{metric}"


def before_after(metrics: dict[str, float | None]) -> list[tuple[str, float | None, float | None]]:
    """(metric, before, after) for every metric evaluated in a run's `metrics`, in `EvalMetric` order."""
    names = [m for m in get_args(EvalMetric) if result_key("before", m) in metrics]
    return [(m, metrics[result_key("before", m)], metrics.get(result_key("after", m))) for m in names]
