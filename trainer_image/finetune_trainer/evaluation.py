"""Before/after evaluation (`spec.evaluation`): the task's metrics on the evaluation rows, over all ranks.

Called by the recipe: `score` once on the base model (before a checkpoint is restored, so a resumed run still
scores the base) and once on the trained model; the periodic `training.evalSteps` loss uses `score` too, without a
scorer. Each rank runs its share of the rows (`rows[rank::world]`), adds up the summed loss and the items it
averages over (trained tokens for causal-lm and seq2seq, rows for classification and QA), and, with a scorer
(`scoring`), predicts each of its rows. One gather of the sums and the predictions, then the metrics are computed on
every rank from all the rows in their order, as one process would compute them: a 2-rank run reports what a 1-rank
run does. Every rank runs the same number of forward passes and generations (ranks short of rows run one row whose
results are dropped), as DeepSpeed ZeRO-3 needs: each forward gathers the sharded weights collectively.

Loss is the mean over the items; perplexity = exp(loss). The other metrics and their libraries: `scoring`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from finetune_api.evaluation import EvalMetric, result_key

from finetune_trainer import batching, distributed, tasks
from finetune_trainer.data import DataError
from finetune_trainer.scoring import Scorer
from finetune_trainer.sft import Features

PER_ROW_LOSS = ("sequence-classification", "question-answering")
"""Tasks with one loss per row (question answering: its start and end averaged), not one per token."""


def _counts(task: str, outputs: Any, batch: batching.Batch) -> tuple[float, float]:
    """(summed loss, items the loss averages over) of one batch of `task`."""
    if task in PER_ROW_LOSS:
        rows = float(len(batch["input_ids"]))
        return float(outputs.loss) * rows, rows
    if task == "causal-lm":  # the model shifts labels by one (or `batching` did)
        tokens = float(batching.scored_tokens(batch))
    else:
        tokens = float((batch["labels"] != tasks.IGNORE).sum())
    return (float(outputs.loss) * tokens if tokens else 0.0), tokens


def _in_row_order(shards: list[list[Any]]) -> list[Any]:
    """Rank r predicted rows r, r + world, r + 2·world, …: interleave the shards back into row order."""
    return [shard[i] for i in range(max(map(len, shards), default=0)) for shard in shards if i < len(shard)]


def score(
    task: str,
    forward: Callable[[batching.Batch], Any],
    rows: list[Features],
    world: distributed.World,
    batch_size: int,
    collate: Callable[[list[Features]], batching.Batch],
    scorer: Scorer | None = None,
) -> dict[str, float]:
    """loss and perplexity on `rows` of `task`, from the outputs of `forward` on the batches `collate` makes (on
    the model's device), and the metrics of `scorer`, over all ranks. A collective: every rank must call it."""
    shard = rows[world.rank :: world.size]
    batches = math.ceil(math.ceil(len(rows) / world.size) / batch_size)
    loss_sum, items, predicted = 0.0, 0.0, list[Any]()
    with torch.no_grad():
        for index in range(batches):
            part = shard[index * batch_size : (index + 1) * batch_size]
            # shard[j] is rows[rank + j·world]; a padding batch is row 0, its results dropped.
            indices = [
                world.rank + j * world.size for j in range(index * batch_size, index * batch_size + len(part))
            ]
            batch = collate(part or rows[:1])
            outputs = forward(batch)
            counts = _counts(task, outputs, batch)
            guesses = scorer.predict(outputs, batch, indices or [0]) if scorer else []
            if part:
                loss_sum, items, predicted = loss_sum + counts[0], items + counts[1], predicted + guesses
    gathered = distributed.gather_objects((loss_sum, items, predicted))
    loss_sum, items = sum(g[0] for g in gathered), sum(g[1] for g in gathered)
    if not items:
        raise DataError(
            "evaluation: the evaluation rows have no trained tokens to score; raise dataset.validationSplit "
            "or training.maxSeqLength, or give evaluation.datasetUri longer rows"
        )
    loss = loss_sum / items
    scores = {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}
    if scorer:
        scores.update(scorer.compute(_in_row_order([g[2] for g in gathered])))
    return scores


def report(
    phase: Literal["before", "after"], scores: dict[str, float], wanted: tuple[EvalMetric, ...]
) -> dict[str, float]:
    """The `wanted` scores named as in manifest.json and the termination message (`result_key`)."""
    return {result_key(phase, m): scores[m] for m in wanted}
