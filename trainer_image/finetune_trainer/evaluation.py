"""Before/after evaluation (`spec.evaluation`): the task's metrics on the held-out rows, over all ranks.

Called by the recipe: `score` once on the base model (before a checkpoint is restored, so a resumed run still
scores the base) and once on the trained model. Each rank scores its share of the rows (`rows[rank::world]`) and
adds up counts: the summed loss and the number of scored tokens (causal-lm) or rows (classification), and the
rows classified right. One all-reduce of the sums, then the metrics are computed from the totals, so a 2-rank run
reports what a 1-rank run does. Every rank runs the same number of forward passes (ranks short of rows run one
row with weight 0), as DeepSpeed ZeRO-3 needs: each forward gathers the sharded weights collectively.

causal-lm: loss (mean over the trained tokens) and perplexity = exp(loss). sequence-classification: accuracy and
loss. The other tasks get their loss only (the periodic `training.evalSteps` loss uses `score` too); macro-F1 and
their own metrics are not computed yet (scikit-learn is not a dependency of the image).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from finetune_operator.api.evaluation import EvalMetric, result_key

from finetune_trainer import batching, distributed, tasks
from finetune_trainer.data import DataError
from finetune_trainer.sft import Features


def _counts(task: str, outputs: Any, batch: batching.Batch) -> tuple[float, float, float]:
    """(summed loss, items the loss averages over, items classified right) of one batch of `task`."""
    if task == "sequence-classification":  # one label per row
        labels = batch["labels"]
        right = float((outputs.logits.argmax(dim=-1) == labels).sum())
        return float(outputs.loss) * len(labels), float(len(labels)), right
    if task == "question-answering":  # the loss averages the span's start and end over the rows
        rows = float(len(batch["input_ids"]))
        return float(outputs.loss) * rows, rows, 0.0
    if task == "causal-lm":  # the model shifts labels by one (or `batching` did)
        tokens = float(batching.scored_tokens(batch))
    else:
        tokens = float((batch["labels"] != tasks.IGNORE).sum())
    return (float(outputs.loss) * tokens if tokens else 0.0), tokens, 0.0


def _metrics(loss_sum: float, items: float, right: float) -> dict[str, float]:
    loss = loss_sum / items
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "accuracy": right / items}


def score(
    task: str,
    forward: Callable[[batching.Batch], Any],
    rows: list[Features],
    world: distributed.World,
    batch_size: int,
    collate: Callable[[list[Features]], batching.Batch],
) -> dict[str, float]:
    """Every metric of `_metrics` on `rows` of `task`, from the outputs of `forward` on the batches `collate` makes (on the
    model's device), summed over all ranks. A collective: every rank must call it."""
    shard = rows[world.rank :: world.size]
    batches = math.ceil(math.ceil(len(rows) / world.size) / batch_size)
    totals = [0.0, 0.0, 0.0]
    with torch.no_grad():
        for index in range(batches):
            part = shard[index * batch_size : (index + 1) * batch_size]
            batch = collate(part or rows[:1])
            counts = _counts(task, forward(batch), batch)
            if part:
                totals = [t + c for t, c in zip(totals, counts, strict=True)]
    loss_sum, items, right = distributed.sum_over_ranks(totals)
    if not items:
        raise DataError(
            "evaluation: the held-out rows have no trained tokens to score; raise dataset.validationSplit "
            "or training.maxSeqLength"
        )
    return _metrics(loss_sum, items, right)


def report(
    phase: Literal["before", "after"], scores: dict[str, float], wanted: tuple[EvalMetric, ...]
) -> dict[str, float]:
    """The `wanted` scores named as in manifest.json and the termination message (`result_key`)."""
    return {result_key(phase, m): scores[m] for m in wanted}
