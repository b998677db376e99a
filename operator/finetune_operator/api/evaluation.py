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


def before_after_table(metrics: dict[str, float | None]) -> list[str]:
    """The before → after lines `finetune run` prints, one per metric evaluated in a run's `metrics` ([] if none)."""
    names = [m for m in get_args(EvalMetric) if result_key("before", m) in metrics]
    cells = [[metrics.get(result_key(p, m)) for p in ("before", "after")] for m in names]
    shown = [" → ".join("-" if v is None else f"{v:.4f}" for v in pair) for pair in cells]
    return (
        ["evaluation  before → after"] + [f"  {m:<10}  {s}" for m, s in zip(names, shown, strict=True)]
        if names
        else []
    )
