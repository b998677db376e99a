"""causal-lm exact_match of greedy answers (`scoring`, `sft.answer_prompt`), and evaluation on a separate dataset
(`evaluation.datasetUri`) instead of held-out rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from finetune_api.data import DatasetSpec, TaskSpec
from finetune_api.job import FineTuneJobSpec
from finetune_api.trainer import ExitCode
from finetune_trainer import data, scoring, sft, tasks

from tests.trainer.test_chat_format import CHAT, INSTRUCTION, _tokenizer, encode
from tests.trainer.test_evaluation_tasks import _two_ranks_agree
from tests.trainer.trainerkit import INSTRUCTIONS, Run, eval_scores, write_rows

EXACT = {"enabled": True, "metrics": ["exact_match", "loss"], "maxNewTokens": 8}
ANSWERS = {"model": {"preset": "tiny-llama"}, "method": {"type": "full"}, "dataset": {"validationSplit": 0.25},
           "training": {"learningRate": 0.005, "maxSteps": 80, "seed": 3}, "evaluation": EXACT}  # fmt: skip
"""The held-out rows (4 of 16) are copies of trained instructions, which 80 full fine-tuning steps memorise."""


@pytest.mark.slow
def test_causal_lm_exact_match_rises_and_two_ranks_agree(train: Callable[..., Run], tmp_path: Path) -> None:
    run = train(ANSWERS, INSTRUCTIONS * 2)

    scores = eval_scores(run)
    assert set(scores) == {f"eval_{p}_{m}" for p in ("before", "after") for m in ("exact_match", "loss")}
    assert [e["rows"] for e in run.events if e["event"] == "evaluation"] == [4, 4]
    # The random base answers none of the 4 held-out prompts; the trained model at least 3 of them.
    assert scores["eval_after_exact_match"] >= scores["eval_before_exact_match"] + 0.75
    _two_ranks_agree(run, tmp_path, INSTRUCTIONS * 2)


@pytest.mark.slow
def test_zero3_generates_collectively(train: Callable[..., Run], tmp_path: Path) -> None:
    """ZeRO-3 shards the weights: each generated token is a collective forward, so ranks with fewer or shorter
    answers must keep stepping (`synced_gpus`) until all are done; the scores are those of one process."""
    run = train({**ANSWERS, "training": {**ANSWERS["training"], "maxSteps": 40}}, INSTRUCTIONS * 2)
    _two_ranks_agree(run, tmp_path, INSTRUCTIONS * 2, distributed={"deepspeed": {"zeroStage": 3}})


@pytest.mark.parametrize("bos_in_template", [False, True], ids=["smollm-style", "bos-in-template"])
@pytest.mark.parametrize(
    ("row", "task"),
    [(CHAT, {}), (INSTRUCTION, {}), (INSTRUCTION, {"promptFormat": "plain"})],
    ids=["chat", "instruction-as-chat", "instruction-plain"],
)
def test_the_answer_starts_where_training_trains_it(
    row: dict[str, Any], task: dict[str, Any], bos_in_template: bool
) -> None:
    tokenizer = _tokenizer(bos_in_template)
    spec = TaskSpec(**task)
    (sample,), _ = data.validate([data.Row("line 1", row)], spec, DatasetSpec(uri="pvc://data/x"))
    trained = encode(tokenizer, row, **task)

    prompt, answer, stops = sft.answer_prompt(sample.fields, tokenizer, spec)

    first_trained = next(i for i, label in enumerate(trained["labels"]) if label != tasks.IGNORE)
    assert prompt == trained["input_ids"][:first_trained]
    assert answer == "Hi!"
    assert stops[0] == "<|im_end|>"  # the template's end of turn, which is also the EOS here
    assert scoring._cut("Hi!<|im_end|>\n<|im_start|>user", stops) == "Hi!"


def test_text_rows_cannot_be_answered(train: Callable[..., Run]) -> None:
    spec = {"model": {"preset": "tiny-llama"}, "dataset": {"validationSplit": 0.25},
            "evaluation": {"enabled": True, "metrics": ["exact_match"]}}  # fmt: skip
    run = train(spec, [{"text": "A line of text."}] * 8)

    assert run.rc == ExitCode.INVALID_CONFIG
    assert run.summary["message"].startswith("evaluation.metrics: exact_match compares greedy answers")
    assert "inferred from line 1" in run.summary["message"]


EXTRA = [
    {"prompt": f"Count to {n}", "completion": " " + " ".join(map(str, range(1, n + 1)))} for n in range(1, 6)
]
"""5 evaluation rows unlike any trained one."""


def test_a_separate_dataset_is_evaluated_instead_of_held_out_rows(
    train: Callable[..., Run], tmp_path: Path
) -> None:
    folder = tmp_path / "run" / "data" / "eval"
    folder.mkdir(parents=True)
    for index, part in enumerate((EXTRA[:3], EXTRA[3:])):  # a folder of parquet shards, read in name order
        pq.write_table(pa.Table.from_pylist(part), folder / f"part-{index}.parquet")
    spec = {"model": {"preset": "tiny-llama"}, "training": {"maxSteps": 2, "evalSteps": 1},
            "evaluation": {"enabled": True, "datasetUri": "pvc://data/eval", "maxSamples": 4}}  # fmt: skip
    run = train(spec, INSTRUCTIONS * 2)

    assert run.rc == 0, run.summary
    assert run.event("data")["rows"] == 16 and run.event("data")["eval_rows"] == 5  # every row trains
    assert run.event("start")["train_examples"] == 16
    assert [e["rows"] for e in run.events if e["event"] == "evaluation"] == [4, 4]
    assert len([e for e in run.events if e["event"] == "eval"]) == 2  # training.evalSteps uses it too
    scores = eval_scores(run)
    assert set(scores) == {
        "eval_before_loss",
        "eval_before_perplexity",
        "eval_after_loss",
        "eval_after_perplexity",
    }


def test_a_separate_jsonl_file_is_read_in_file_order(tmp_path: Path) -> None:
    write_rows(tmp_path / "eval.jsonl", EXTRA)
    spec = FineTuneJobSpec.model_validate({
        "model": {"preset": "tiny-llama"}, "dataset": {"uri": "pvc://data/train.jsonl"},
        "evaluation": {"enabled": True, "datasetUri": "pvc://data/eval.jsonl"}})  # fmt: skip
    splits = data.Splits(train=[], eval=[])

    joined, shape = data.with_evaluation_dataset(splits, spec, lambda d: tmp_path / d.uri.split("/")[-1])

    assert [r.fields["completion"] for r in joined.eval] == [r["completion"] for r in EXTRA]
    assert shape is not None and shape.name == "prompt-completion"
