"""`spec.evaluation`: score the base model before training and the result after, on the held-out rows or on a
separate evaluation dataset (`datasetUri`)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, field_validator

from finetune_api.base import ApiModel, Rule
from finetune_api.common import stays_inside
from finetune_api.presets import TaskType
from finetune_api.uris import DATASET_SCHEMES, check_uri

EvalMetric = Literal[
    "loss", "perplexity", "accuracy", "macro_f1", "precision", "recall", "f1", "bleu", "chrf", "exact_match"
]

TASK_METRICS: dict[TaskType, tuple[EvalMetric, ...]] = {
    "causal-lm": ("loss", "perplexity", "exact_match"),
    "sequence-classification": ("accuracy", "macro_f1", "loss"),
    "token-classification": ("precision", "recall", "f1", "loss"),
    "seq2seq": ("bleu", "chrf", "loss"),
    "question-answering": ("exact_match", "f1", "loss"),
}
"""task.type → the metrics evaluation supports for it."""

DEFAULT_METRICS: dict[TaskType, tuple[EvalMetric, ...]] = {
    "causal-lm": ("loss", "perplexity"),
    "sequence-classification": ("accuracy", "macro_f1"),
    "token-classification": ("precision", "recall", "f1"),
    "seq2seq": ("bleu", "chrf"),
    "question-answering": ("exact_match", "f1"),
}
"""task.type → the metrics reported when `evaluation.metrics` is unset."""

DEFAULT_MAX_NEW_TOKENS = 64
"""`evaluation.maxNewTokens` when unset."""

DEFAULT_EVAL_SPLIT = "validation"
"""`evaluation.datasetSplit` when unset."""


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
            "(dataset.validationSplit, which must then be > 0) or on evaluation.datasetUri. Results are reported as "
            "eval_before_<metric> and eval_after_<metric> in manifest.json and status.result.metrics."
        ),
    )
    metrics: list[EvalMetric] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description=(
            "Which metrics to report; default: the task's usual ones (marked *). causal-lm: loss*, perplexity* "
            "(exp of the loss), exact_match (greedy answers to the prompts of prompt/completion or chat rows, "
            "compared with the completion after SQuAD's answer normalisation: lower case, no punctuation, articles "
            "or extra spaces; 0-1). sequence-classification: accuracy*, macro_f1* (scikit-learn), loss. "
            "token-classification: precision*, recall*, f1* over entities (seqeval; task.labels must be BIO tags "
            "such as O, B-PER, I-PER), loss. seq2seq: bleu*, chrf* (sacreBLEU, 0-100, on greedy generations), "
            "loss. question-answering: exact_match*, f1* (SQuAD's answer normalisation, 0-1), loss. Ratios are "
            "0-1 except bleu and chrf."
        ),
    )
    max_samples: int | None = Field(
        default=None,
        ge=1,
        description="Evaluate on at most this many rows: the first ones of the seeded shuffle of the held-out "
        "rows, or of evaluation.datasetUri in file order.",
    )
    max_new_tokens: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description=f"seq2seq, and causal-lm exact_match: the most tokens a greedy generation may have (bleu, chrf "
        f"and exact_match score them); default {DEFAULT_MAX_NEW_TOKENS}.",
    )
    dataset_uri: str | None = Field(
        default=None,
        max_length=2048,
        json_schema_extra={"pattern": "^(hf|https?|s3|pvc|configmap)://"},
        description=(
            "A separate evaluation dataset, used instead of held-out rows (dataset.validationSplit must then be 0): "
            "for evaluation and for training.evalSteps. The same schemes as dataset.uri, read with dataset.secretRef, "
            "dataset.format (hf:// URIs read as hf; other files from their extension when dataset.format is hf), "
            "dataset.columns, dataset.shape and dataset.chat; every row is checked as training rows are."
        ),
    )
    dataset_split: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description=f"Split of an hf:// evaluation.datasetUri to evaluate on (hf:// only); default "
        f"{DEFAULT_EVAL_SPLIT}.",
    )

    @field_validator("dataset_uri")
    @classmethod
    def _uri_scheme(cls, uri: str | None) -> str | None:
        return None if uri is None else check_uri(uri, DATASET_SCHEMES)

    rules = (
        stays_inside("datasetUri", "dataset_uri"),
        Rule(
            field="datasetSplit",
            message="evaluation.datasetSplit only applies to an hf:// evaluation.datasetUri (a file is one split); "
            "remove it",
            check=lambda e: e.dataset_split is None or (e.dataset_uri or "").startswith("hf://"),
            cel="!has(self.datasetSplit) || (has(self.datasetUri) && self.datasetUri.startsWith('hf://'))",
        ),
    )

    def metrics_for(self, task: TaskType) -> tuple[EvalMetric, ...]:
        """The metrics to report for `task`: the listed ones, else the task's default."""
        return tuple(self.metrics) if self.metrics is not None else DEFAULT_METRICS[task]


def _wants(spec: Any, metric: EvalMetric) -> bool:
    return spec.evaluation.metrics is not None and metric in spec.evaluation.metrics


EVALUATION_RULES: tuple[Rule, ...] = (
    Rule(
        field="evaluation.enabled",
        message="evaluation.enabled needs rows to evaluate on: set dataset.validationSplit > 0 (e.g. 0.1) or "
        "evaluation.datasetUri, or set evaluation.enabled false",
        check=lambda s: (
            not s.evaluation.enabled or s.dataset.validation_split > 0 or bool(s.evaluation.dataset_uri)
        ),
        cel="!self.evaluation.enabled || self.dataset.validationSplit > 0.0 || has(self.evaluation.datasetUri)",
    ),
    Rule(
        field="training.evalSteps",
        message="training.evalSteps needs rows to evaluate on: set dataset.validationSplit > 0 or "
        "evaluation.datasetUri",
        check=lambda s: (
            s.training.eval_steps is None or s.dataset.validation_split > 0 or bool(s.evaluation.dataset_uri)
        ),
        cel="!has(self.training.evalSteps) || self.dataset.validationSplit > 0.0 || has(self.evaluation.datasetUri)",
    ),
    Rule(
        field="evaluation.datasetUri",
        message="evaluation.datasetUri replaces the held-out rows; set dataset.validationSplit to 0 to train on "
        "every row, or remove evaluation.datasetUri",
        check=lambda s: s.evaluation.dataset_uri is None or s.dataset.validation_split == 0,
        cel="!has(self.evaluation.datasetUri) || self.dataset.validationSplit == 0.0",
    ),
    Rule(
        field="evaluation.maxNewTokens",
        message="evaluation.maxNewTokens bounds greedy generations: those of task.type seq2seq, and of causal-lm "
        "with exact_match in evaluation.metrics; remove it",
        check=lambda s: (
            s.evaluation.max_new_tokens is None
            or s.task.type == "seq2seq"
            or (s.task.type == "causal-lm" and _wants(s, "exact_match"))
        ),
        cel="!has(self.evaluation.maxNewTokens) || self.task.type == 'seq2seq' || (self.task.type == 'causal-lm' "
        "&& has(self.evaluation.metrics) && 'exact_match' in self.evaluation.metrics)",
    ),
    Rule(
        field="evaluation.metrics",
        message="causal-lm exact_match compares greedy answers to completions, which text rows (dataset.shape text) "
        "lack; remove exact_match, or use prompt/completion or chat rows",
        check=lambda s: (
            not (s.task.type == "causal-lm" and s.dataset.shape == "text" and _wants(s, "exact_match"))
        ),
        cel="!(self.task.type == 'causal-lm' && self.dataset.shape == 'text' && has(self.evaluation.metrics) "
        "&& 'exact_match' in self.evaluation.metrics)",
    ),
)
"""Rules of the whole spec (`FineTuneJobSpec`) on `evaluation`: which rows it scores and what it can generate."""


def result_key(phase: Literal["before", "after"], metric: str) -> str:
    """The name of a score in manifest.json and the termination message: eval_before_loss, eval_after_accuracy."""
    return f"eval_{phase}_{metric}"


def before_after_table(metrics: dict[str, float | None]) -> list[str]:
    """The before → after lines `finetune run` prints, one per metric evaluated in a run's `metrics` ([] if none)."""
    names = [m for m in get_args(EvalMetric) if result_key("before", m) in metrics]
    cells = [[metrics.get(result_key(p, m)) for p in ("before", "after")] for m in names]
    shown = [" → ".join("-" if v is None else f"{v:.4f}" for v in pair) for pair in cells]
    width = max([10, *map(len, names)])
    return (
        ["evaluation  before → after"] + [f"  {m:<{width}}  {s}" for m, s in zip(names, shown, strict=True)]
        if names
        else []
    )
