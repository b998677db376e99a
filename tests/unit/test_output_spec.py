"""`spec.output.formats`: which formats a job writes (mergeAdapter is merged), and where each can work.

The refusals themselves (duplicates, merged on a full fine-tune, onnx on seq2seq) are cases of `tests/invalid_specs/`,
which also runs them against the API server; here: their messages, and the runnable neighbours.
"""

from __future__ import annotations

from typing import Any

import pytest
from finetune_api.job import parse
from finetune_api.output import ONNX_UNSUPPORTED_TASKS, OutputSpec
from pydantic import ValidationError

from tests.invalid_specs import merge, minimal_job

TASK_JOBS: dict[str, dict[str, Any]] = {
    "causal-lm": {"model": {"preset": "tiny-llama"}},
    "sequence-classification": {"model": {"preset": "tiny-bert"},
                                "task": {"type": "sequence-classification", "labels": ["a", "b"]}},
    "token-classification": {"model": {"preset": "tiny-bert"},
                             "task": {"type": "token-classification", "labels": ["O", "B-X"]}},
    "question-answering": {"model": {"preset": "tiny-bert"}, "task": {"type": "question-answering"}},
    "seq2seq": {"model": {"preset": "tiny-t5"}, "task": {"type": "seq2seq"}},
}  # fmt: skip


@pytest.mark.parametrize(
    ("output", "formats"),
    [
        ({}, ()),
        ({"mergeAdapter": True}, ("merged",)),
        ({"formats": ["onnx"]}, ("onnx",)),
        ({"formats": ["onnx", "merged"]}, ("merged", "onnx")),
        ({"mergeAdapter": True, "formats": ["onnx"]}, ("merged", "onnx")),
        ({"mergeAdapter": True, "formats": ["merged"]}, ("merged",)),
    ],
)
def test_merge_adapter_is_an_alias_of_merged(output: dict[str, Any], formats: tuple[str, ...]) -> None:
    assert OutputSpec.model_validate(output).export_formats() == formats


def test_unset_formats_leave_the_wire_form_unchanged() -> None:
    assert OutputSpec().to_wire() == {"mergeAdapter": False}


@pytest.mark.parametrize("task", [t for t in TASK_JOBS if t not in ONNX_UNSUPPORTED_TASKS])
def test_onnx_and_merged_are_accepted_for_every_exportable_task(task: str) -> None:
    parse(merge(minimal_job(), {"spec": {**TASK_JOBS[task], "output": {"formats": ["merged", "onnx"]}}}))


def test_onnx_of_a_full_fine_tune_is_accepted() -> None:
    parse(merge(minimal_job(), {"spec": {"method": {"type": "full"}, "output": {"formats": ["onnx"]}}}))


def test_merged_is_accepted_for_seq2seq() -> None:
    parse(merge(minimal_job(), {"spec": {**TASK_JOBS["seq2seq"], "output": {"formats": ["merged"]}}}))


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({**TASK_JOBS["seq2seq"], "output": {"formats": ["onnx"]}}, "encoder and decoder graphs"),
        ({"method": {"type": "full"}, "output": {"formats": ["merged"]}}, "already a whole model"),
        ({"output": {"formats": ["merged", "merged"]}}, "list each format once"),
    ],
    ids=["onnx-seq2seq", "merged-full", "twice"],
)
def test_refusals_say_why_and_what_to_do(spec: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        parse(merge(minimal_job(), {"spec": spec}))
