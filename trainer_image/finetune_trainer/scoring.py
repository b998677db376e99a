"""Each task's usual metrics, from the predictions of every held-out row, computed by maintained libraries.

`scorer_for` gives `evaluation.score` a `Scorer`: `predict` turns one batch's outputs (and the indices of its rows
among the evaluated ones) into one small, picklable prediction per row (what the ranks gather), and `compute` turns the predictions of all the rows, in row order, into
metrics against the references, which every rank holds (it read the whole dataset). Which library computes what:

- sequence-classification: accuracy and macro-F1 (`accuracy_score`, `f1_score(average="macro")`: the mean F1 of
  the classes that occur among the gold or predicted labels) from scikit-learn, over the label ids.
- token-classification: entity-level precision, recall and F1 from seqeval (its default CoNLL semantics, micro
  average over entities), over the tag names (`task.labels`, BIO) of the first sub-token of each word, the tokens
  the encoder labels.
- seq2seq: sacreBLEU's corpus BLEU and chrF (0-100, default tokenisation) of greedy generations of at most
  `evaluation.maxNewTokens` tokens against the rows' target texts.
- question-answering: SQuAD exact match and F1 from torchmetrics (`functional.text.squad`: the official answer
  normalisation, offline; reported 0-1), of the best valid span (start ≤ end, inside the context, at most
  `MAX_ANSWER_TOKENS` tokens) among the `TOP_K` best start and end tokens, against every gold answer of the row.

- causal-lm exact_match (asked for in `evaluation.metrics`): greedy answers of at most `evaluation.maxNewTokens`
  tokens to each row's prompt, encoded as training encodes it (`sft.answer_prompt`: the chat template up to its
  generation prompt, or the plain prompt), cut at the template's end of turn or EOS, against the completion, with
  the same SQuAD exact match (its answer normalisation) as question answering.

causal-lm loss and perplexity need no scorer: they come from the summed loss (`evaluation`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from finetune_api.evaluation import DEFAULT_MAX_NEW_TOKENS
from finetune_api.job import FineTuneJobSpec

from finetune_trainer import sft, tasks
from finetune_trainer.data import DataError, Record, Row, Shape

Batch = dict[str, torch.Tensor]
Generate = Callable[[Batch, int], torch.Tensor]
"""(batch, max_new_tokens) → the greedy generations' token ids, one row per row of the batch."""

TOP_K = 20
"""question-answering: the best start and end tokens of a row that are paired into candidate spans."""
MAX_ANSWER_TOKENS = 30
"""question-answering: the longest span considered an answer (as in the SQuAD reference post-processing)."""


@dataclass(frozen=True)
class Scorer:
    """How one task's held-out rows are predicted (per batch) and scored (over all of them)."""

    predict: Callable[[Any, Batch, list[int]], list[Any]]
    """(model outputs, batch, the indices of the batch's rows among the evaluated ones) → one prediction per row."""
    compute: Callable[[list[Any]], dict[str, float]]
    """The predictions of all the rows, in row order → metric name → value."""


def _kept(values: torch.Tensor, labels: torch.Tensor) -> list[list[int]]:
    """Per row, the values where the label is not ignored (the first sub-token of each word)."""
    return [
        [int(v) for v, g in zip(row, gold, strict=True) if g != tasks.IGNORE]
        for row, gold in zip(values, labels, strict=True)
    ]


def _sequence_classification(features: list[tasks.Features]) -> Scorer:
    gold = [int(f["labels"]) for f in features]

    def compute(predicted: list[Any]) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score

        return {
            "accuracy": float(accuracy_score(gold, predicted)),
            "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0.0)),
        }

    return Scorer(lambda outputs, batch, _: outputs.logits.argmax(dim=-1).tolist(), compute)


def _token_classification(features: list[tasks.Features], names: list[str]) -> Scorer:
    gold = [[names[g] for g in f["labels"] if g != tasks.IGNORE] for f in features]

    def compute(predicted: list[Any]) -> dict[str, float]:
        from seqeval.metrics import f1_score, precision_score, recall_score

        tags = [[names[p] for p in row] for row in predicted]
        return {
            name: float(metric(gold, tags, zero_division=0))
            for name, metric in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score))
        }

    return Scorer(lambda outputs, batch, _: _kept(outputs.logits.argmax(dim=-1), batch["labels"]), compute)


def _seq2seq(targets: list[str], tokenizer: Any, generate: Generate, max_new_tokens: int) -> Scorer:
    def compute(predicted: list[Any]) -> dict[str, float]:
        import sacrebleu

        texts = [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in predicted]
        return {
            "bleu": float(sacrebleu.corpus_bleu(texts, [targets]).score),
            "chrf": float(sacrebleu.corpus_chrf(texts, [targets]).score),
        }

    return Scorer(lambda outputs, batch, _: generate(batch, max_new_tokens).tolist(), compute)


def _top(logits: torch.Tensor) -> list[list[tuple[int, float]]]:
    """Per row, the `TOP_K` best (token, logit) pairs."""
    values, indices = logits.float().topk(min(TOP_K, logits.shape[-1]), dim=-1)
    return [list(zip(i.tolist(), v.tolist(), strict=True)) for i, v in zip(indices, values, strict=True)]


def best_span(
    starts: list[tuple[int, float]], ends: list[tuple[int, float]], context: list[int | None]
) -> tuple[int, int] | None:
    """The (start, end) token pair of the highest summed logit that is a valid answer: both in the context
    (`context[i] == 1`, a `sequence_ids()` list), start ≤ end, at most `MAX_ANSWER_TOKENS` long; None if none is."""
    valid = [
        (sl + el, s, e)
        for s, sl in starts
        for e, el in ends
        if s <= e < s + MAX_ANSWER_TOKENS and e < len(context) and context[s] == 1 and context[e] == 1
    ]
    return max(valid)[1:] if valid else None


def _gold_answers(row: Record, column: str) -> dict[str, list[Any]]:
    answers = row[column]
    text, start = answers.get("text"), answers.get("answer_start")
    return {"text": list(text), "answer_start": list(start)} if isinstance(text, list) else {
        "text": [text], "answer_start": [start]}  # fmt: skip


def _question_answering(rows: list[Row], spec: FineTuneJobSpec, tokenizer: Any, max_len: int) -> Scorer:
    columns = spec.dataset.columns
    encoded = [tasks.encode_question_and_context(r.fields, tokenizer, columns, max_len) for r in rows]
    gold = [_gold_answers(r.fields, columns.answers) for r in rows]

    def answer(index: int, spans: tuple[list[tuple[int, float]], list[tuple[int, float]]]) -> str:
        best = best_span(*spans, encoded[index].sequence_ids())
        if best is None:
            return ""
        offsets = encoded[index]["offset_mapping"]
        return str(rows[index].fields[columns.context][offsets[best[0]][0] : offsets[best[1]][1]])

    def compute(predicted: list[Any]) -> dict[str, float]:
        return _squad([answer(i, p) for i, p in enumerate(predicted)], gold)

    def predict(outputs: Any, batch: Batch, _: list[int]) -> list[Any]:
        return list(zip(_top(outputs.start_logits), _top(outputs.end_logits), strict=True))

    return Scorer(predict, compute)


def _squad(texts: list[str], gold: list[dict[str, list[Any]]]) -> dict[str, float]:
    """SQuAD exact match and F1 (torchmetrics, 0-1) of the answers `texts` against each row's `gold` answers."""
    from torchmetrics.functional.text import squad

    scores = squad(
        [{"prediction_text": t, "id": str(i)} for i, t in enumerate(texts)],
        [{"answers": g, "id": str(i)} for i, g in enumerate(gold)],
    )
    return {"exact_match": float(scores["exact_match"]) / 100, "f1": float(scores["f1"]) / 100}


def _cut(text: str, stops: tuple[str, ...]) -> str:
    """`text` up to the first of `stops` in it."""
    return min((text[: text.index(s)] for s in stops if s in text), key=len, default=text)


def _causal_lm(
    rows: list[Row], spec: FineTuneJobSpec, tokenizer: Any, generate: Generate, max_len: int
) -> Scorer:
    prompts = [sft.answer_prompt(r.fields, tokenizer, spec.task) for r in rows]
    gold: list[dict[str, list[Any]]] = [{"text": [answer], "answer_start": [0]} for _, answer, _ in prompts]
    limit = spec.evaluation.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def predict(outputs: Any, batch: Batch, indices: list[int]) -> list[Any]:
        ids = [prompts[i][0][-max_len:] for i in indices]  # cut from the left, as training cuts the context
        width = max(map(len, ids))
        left = [[0] * (width - len(row)) for row in ids]  # left padding: every answer starts at `width`
        inputs = {
            "input_ids": torch.tensor([[pad] * len(p) + row for p, row in zip(left, ids, strict=True)]),
            "attention_mask": torch.tensor([p + [1] * len(row) for p, row in zip(left, ids, strict=True)]),
        }
        device = batch["input_ids"].device
        answers: list[Any] = generate({k: v.to(device) for k, v in inputs.items()}, limit)[:, width:].tolist()
        return answers

    def compute(predicted: list[Any]) -> dict[str, float]:
        texts = [_cut(tokenizer.decode(ids), prompts[i][2]) for i, ids in enumerate(predicted)]
        return {"exact_match": _squad(texts, gold)["exact_match"]}

    return Scorer(predict, compute)


def require_answers(spec: FineTuneJobSpec, shape: Shape | None) -> None:
    """Raise DataError when causal-lm exact_match is asked for on rows without answers (text rows)."""
    wanted = "exact_match" in spec.evaluation.metrics_for(spec.task.type)
    if spec.task.type == "causal-lm" and wanted and shape is not None and shape.name == "text":
        raise DataError(
            f"evaluation.metrics: exact_match compares greedy answers with completions, but the evaluation rows "
            f"are text ({shape.origin}); use prompt/completion or chat rows, or remove exact_match"
        )


def scorer_for(
    spec: FineTuneJobSpec,
    rows: list[Row],
    features: list[tasks.Features],
    tokenizer: Any,
    generate: Generate,
    max_len: int,
) -> Scorer | None:
    """The scorer of `spec.task` for the evaluated `rows` (and their `features`, in the same order); None for
    causal-lm without exact_match, whose metrics come from the loss alone."""
    task = spec.task.type
    if task == "sequence-classification":
        return _sequence_classification(features)
    if task == "token-classification":
        return _token_classification(features, spec.task.labels or [])
    if task == "seq2seq":
        targets = [str(r.fields[spec.dataset.columns.target]) for r in rows]
        limit = spec.evaluation.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
        return _seq2seq(targets, tokenizer, generate, limit)
    if task == "question-answering":
        return _question_answering(rows, spec, tokenizer, max_len)
    if "exact_match" in spec.evaluation.metrics_for(task):
        return _causal_lm(rows, spec, tokenizer, generate, max_len)
    return None
