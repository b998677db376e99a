"""`spec.evaluation`: the base model and the result scored on the held-out rows, reported before → after."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from finetune_api.trainer import TerminationMessage
from finetune_trainer import local

from tests.trainer.test_tasks import REVIEWS
from tests.trainer.trainerkit import INSTRUCTIONS, Run, launch, make_config

HELD_OUT = {"validationSplit": 0.25}
"""16 rows of a fixed mapping repeated twice: 4 held out, each a copy of a trained row, so the model can learn them."""


def _scores(run: Run) -> dict[str, float]:
    assert run.rc == 0, run.summary
    metrics: dict[str, float] = run.summary["metrics"]
    manifest = json.loads((run.output / "manifest.json").read_text())
    assert {k: v for k, v in manifest["metrics"].items() if k.startswith("eval_")} == {
        k: v for k, v in metrics.items() if k.startswith("eval_")
    }
    return {k: v for k, v in metrics.items() if k.startswith(("eval_before_", "eval_after_"))}


def test_causal_lm_loss_and_perplexity_fall(train: Callable[..., Run]) -> None:
    spec = {"model": {"preset": "tiny-llama"}, "method": {"type": "full"}, "training": {"learningRate": 0.005},
            "dataset": HELD_OUT, "evaluation": {"enabled": True}}  # fmt: skip
    run = train(spec, INSTRUCTIONS * 2)

    scores = _scores(run)
    assert set(scores) == {
        "eval_before_loss",
        "eval_before_perplexity",
        "eval_after_loss",
        "eval_after_perplexity",
    }
    assert all(math.isfinite(v) for v in scores.values())
    for phase in ("before", "after"):
        assert scores[f"eval_{phase}_perplexity"] == pytest.approx(math.exp(scores[f"eval_{phase}_loss"]))
    assert [e["rows"] for e in run.events if e["event"] == "evaluation"] == [4, 4]
    # The base scores about 6.2 nats; 20 full fine-tuning steps memorise the 8 answers (about 1.5): at least 2 less.
    assert scores["eval_after_loss"] < scores["eval_before_loss"] - 2.0


def test_sequence_classification_accuracy_rises(train: Callable[..., Run]) -> None:
    spec = {"model": {"preset": "tiny-bert"}, "task": {"type": "sequence-classification",
            "labels": ["negative", "positive"]}, "dataset": HELD_OUT,
            "evaluation": {"enabled": True, "metrics": ["accuracy", "loss"]}}  # fmt: skip
    run = train(spec, REVIEWS * 2)

    scores = _scores(run)
    assert set(scores) == {
        "eval_before_accuracy",
        "eval_before_loss",
        "eval_after_accuracy",
        "eval_after_loss",
    }
    assert all(math.isfinite(v) for v in scores.values())
    assert all(0.0 <= scores[f"eval_{p}_accuracy"] <= 1.0 for p in ("before", "after"))
    assert scores["eval_after_accuracy"] == 1.0  # the held-out reviews repeat trained ones
    assert scores["eval_after_loss"] < scores["eval_before_loss"] - 0.3  # from ≈ ln 2 to below 0.39


def test_max_samples_caps_the_rows_and_off_reports_nothing(train: Callable[..., Run]) -> None:
    capped = train({"model": {"preset": "tiny-llama"}, "dataset": HELD_OUT, "training": {"maxSteps": 2},
                    "evaluation": {"enabled": True, "maxSamples": 3}}, INSTRUCTIONS * 2, sub="capped")  # fmt: skip
    off = train({"model": {"preset": "tiny-llama"}, "dataset": HELD_OUT, "training": {"maxSteps": 2}},
                INSTRUCTIONS * 2, sub="off")  # fmt: skip

    assert [e["rows"] for e in capped.events if e["event"] == "evaluation"] == [3, 3]
    assert off.rc == 0 and not any(e["event"] == "evaluation" for e in off.events)
    assert not any(k.startswith("eval_before") for k in off.summary["metrics"])


def test_finetune_run_prints_before_and_after(tmp_path: Path) -> None:
    summary = TerminationMessage(status="Succeeded", metrics={
        "step": 20, "eval_before_loss": 5.5, "eval_after_loss": 0.25,
        "eval_before_perplexity": 244.69, "eval_after_perplexity": 1.28})  # fmt: skip
    run = local.LocalRun(0, summary, tmp_path, name="t", seconds=1.0, artifact="adapter", first_loss=None,
                         tokens_per_second=None)  # fmt: skip

    lines = local.describe(run)

    assert "evaluation  before → after" in lines
    assert "  loss        5.5000 → 0.2500" in lines
    assert "  perplexity  244.6900 → 1.2800" in lines


@pytest.mark.parametrize("deepspeed", [None, {"zeroStage": 3}], ids=["ddp", "zero3"])
def test_two_ranks_score_the_base_as_one_does(
    train: Callable[..., Run], tmp_path: Path, deepspeed: dict[str, int] | None
) -> None:
    """5 held-out rows over 2 ranks in batches of 2: rank 0 scores 3 rows in 2 batches, rank 1 2 rows and one
    padding batch of weight 0 (ZeRO-3 needs every rank in every forward). The summed counts must give the 1-rank
    scores (the base model is the same)."""
    spec = {"model": {"preset": "tiny-llama"}, "dataset": {"validationSplit": 0.3},
            "training": {"maxSteps": 1, "perDeviceBatchSize": 2}, "evaluation": {"enabled": True}}  # fmt: skip
    one = train(spec, INSTRUCTIONS * 2)
    two_spec = {**spec, "distributed": {"deepspeed": deepspeed}} if deepspeed else spec
    two = launch(make_config(tmp_path / "two", two_spec, INSTRUCTIONS * 2), nproc=2)

    assert two.rc == 0, two.summary
    assert two.event("start")["world_size"] == 2
    before = {k: v for k, v in _scores(one).items() if k.startswith("eval_before_")}
    assert [e["rows"] for e in two.events if e["event"] == "evaluation"] == [5, 5]
    assert {k: two.summary["metrics"][k] for k in before} == pytest.approx(before, rel=1e-5)
