"""Every method on every non-causal task: the run succeeds, the loss falls, the result loads back and changes
the outputs.

causal-lm with every method is in test_methods.py; what each task predicts after LoRA is in test_tasks.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import peft
import pytest
import torch
import transformers

from tests.trainer.test_tasks import ENTITIES, QUESTIONS, REVIEWS, TRANSLATIONS
from tests.trainer.trainerkit import BERT, T5, Run

TASKS: dict[str, tuple[str, dict[str, Any], list[dict[str, Any]], Any]] = {
    "sequence-classification": (
        "tiny-bert", {"labels": ["negative", "positive"]}, REVIEWS, transformers.AutoModelForSequenceClassification,
    ),
    "token-classification": (
        "tiny-bert", {"labels": ["O", "B-PER", "B-LOC"]}, ENTITIES, transformers.AutoModelForTokenClassification,
    ),
    "seq2seq": ("tiny-t5", {}, TRANSLATIONS, transformers.AutoModelForSeq2SeqLM),
    "question-answering": ("tiny-bert", {}, QUESTIONS, transformers.AutoModelForQuestionAnswering),
}  # fmt: skip
METHODS = {
    "dora": ({"type": "dora"}, 0.02),
    "qlora": ({"type": "qlora", "quantization": {"bits": 4, "computeDtype": "float32"}}, 0.02),
    "full": ({"type": "full"}, 0.002),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("task", TASKS)
def test_method_on_task(train: Callable[..., Run], method: str, task: str) -> None:
    preset, task_fields, rows, auto_class = TASKS[task]
    method_spec, lr = METHODS[method]
    run = train({"model": {"preset": preset}, "method": method_spec, "task": {"type": task, **task_fields},
                 "training": {"maxSteps": 12, "learningRate": lr}}, rows)  # fmt: skip

    assert run.rc == 0, run.summary
    assert run.losses[12] < run.losses[1]
    base_dir = T5 if preset == "tiny-t5" else BERT
    labels = {"num_labels": len(task_fields["labels"])} if "labels" in task_fields else {}
    inputs = dict(
        transformers.AutoTokenizer.from_pretrained(run.output)("Alice lives in London", return_tensors="pt")
    )
    if task == "seq2seq":
        inputs["decoder_input_ids"] = torch.zeros((1, 1), dtype=torch.long)
    base = auto_class.from_pretrained(base_dir, **labels)  # a new head, when the task has one, is random
    before = _first_output(base, inputs)
    if method == "full":
        tuned = auto_class.from_pretrained(run.output)
    else:
        tuned = peft.PeftModel.from_pretrained(base, run.output)
    assert not torch.allclose(_first_output(tuned, inputs), before, atol=1e-4)


def _first_output(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**inputs)[0]  # type: ignore[no-any-return]
