"""`spec.evaluation`: score the base model before training and the result after, on the held-out rows."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from finetune_operator.api.base import ApiModel

EvalMetric = Literal[
    "loss", "perplexity", "accuracy", "macro_f1", "precision", "recall", "f1", "bleu", "chrf", "exact_match"
]

TASK_METRICS: dict[str, tuple[EvalMetric, ...]] = {
    "causal-lm": ("loss", "perplexity"),
    "sequence-classification": ("accuracy", "macro_f1", "loss"),
    "token-classification": ("precision", "recall", "f1", "loss"),
    "seq2seq": ("bleu", "chrf", "loss"),
    "question-answering": ("exact_match", "f1", "loss"),
}
"""task.type → the metrics evaluation supports for it."""

DEFAULT_METRICS: dict[str, tuple[EvalMetric, ...]] = {
    "causal-lm": ("loss", "perplexity"),
    "sequence-classification": ("accuracy", "macro_f1"),
    "token-classification": ("precision", "recall", "f1"),
    "seq2seq": ("bleu", "chrf"),
    "question-answering": ("exact_match", "f1"),
}
"""task.type → the metrics reported when `evaluation.metrics` is unset."""

DEFAULT_MAX_NEW_TOKENS = 64
"""`evaluation.maxNewTokens` when unset."""

ENTITY_TAG = r"^(O|[BIES]-.+)$"
"""The label names entity-level metrics (seqeval) can read: O, or B-/I-/E-/S- and the entity type."""

ENTITY_METRICS: tuple[EvalMetric, ...] = ("precision", "recall", "f1")
"""token-classification metrics computed over entities (seqeval), which need BIO label names."""


class EvaluationSpec(ApiModel):
    """Before/after evaluation: the base model and the fine-tuned one are scored on the same held-out rows."""

    enabled: bool = Field(
        default=False,
        description=(
            "Evaluate the base model before training and the result after it, on the held-out rows "
            "(dataset.validationSplit, which must then be > 0). Results are reported as eval_before_<metric> and "
            "eval_after_<metric> in manifest.json and status.result.metrics."
        ),
    )
    metrics: list[EvalMetric] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description=(
            "Which metrics to report; default: the task's usual ones (marked *). causal-lm: loss*, perplexity* "
            "(exp of the loss). sequence-classification: accuracy*, macro_f1* (scikit-learn), loss. "
            "token-classification: precision*, recall*, f1* over entities (seqeval; task.labels must be BIO tags "
            "such as O, B-PER, I-PER), loss. seq2seq: bleu*, chrf* (sacreBLEU, 0-100, on greedy generations), "
            "loss. question-answering: exact_match*, f1* (SQuAD's answer normalisation, 0-1), loss. Ratios are "
            "0-1 except bleu and chrf."
        ),
    )
    max_samples: int | None = Field(
        default=None,
        ge=1,
        description="Evaluate on at most this many held-out rows (the first ones of the seeded shuffle).",
    )
    max_new_tokens: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description=f"seq2seq: the most tokens a greedy generation may have (bleu and chrf score them); default "
        f"{DEFAULT_MAX_NEW_TOKENS}.",
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
