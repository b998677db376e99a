"""causal-lm row shapes (issue 14): inferred or declared, chats in other conventions, and what the run reports."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import transformers
from finetune_api.data import DatasetSpec, TaskSpec
from finetune_trainer import data

from tests.trainer.test_chat_format import _tokenizer, encode
from tests.trainer.test_loss_on import MODES, TWO_TURNS, _two_turns
from tests.trainer.trainerkit import INSTRUCTIONS, Run

SYSTEM, HI, HI_BACK, BYE, BYE_BACK = TWO_TURNS["messages"]
TRL_PROMPT_COMPLETION = {"prompt": [SYSTEM, HI, HI_BACK, BYE], "completion": [BYE_BACK]}
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}
SHAREGPT = {
    "conversations": [
        {"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in TWO_TURNS["messages"]
    ]
}
SHAREGPT_DATASET = {
    "columns": {"messages": "conversations"},
    "chat": {"roleKey": "from", "contentKey": "value", "roles": {"human": "user", "gpt": "assistant"}},
}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return _tokenizer(bos_in_template=True)


@pytest.mark.parametrize("mode", MODES)
def test_trl_conversational_prompt_completion_trains_the_prompt_s_replies_unless_completion(
    tokenizer: Any, mode: str
) -> None:
    first = mode in ("assistant", "all")
    expected = _two_turns(tokenizer, first=first, last=True, rest=mode == "all")

    assert encode(tokenizer, TRL_PROMPT_COMPLETION, 128, loss_on=mode) == expected


@pytest.mark.parametrize("mode", MODES)
def test_sharegpt_rows_train_identically_to_role_content_rows(tokenizer: Any, mode: str) -> None:
    sharegpt = encode(tokenizer, SHAREGPT, 128, dataset=SHAREGPT_DATASET, loss_on=mode)

    assert sharegpt == encode(tokenizer, TWO_TURNS, 128, loss_on=mode)


def _validate(rows: list[Any], **dataset: Any) -> data.Shape | None:
    numbered = [data.Row(f"line {i}", r) for i, r in enumerate(rows, start=1)]
    return data.validate(numbered, TaskSpec(), DatasetSpec(uri="pvc://data/x", **dataset))[1]


@pytest.mark.parametrize(
    ("row", "shape"),
    [
        ({"text": "hello"}, "text"),
        ({"prompt": "Say hi", "completion": "Hi!"}, "prompt-completion"),
        (TWO_TURNS, "conversational"),
        (TRL_PROMPT_COMPLETION, "conversational-prompt-completion"),
    ],
)
def test_the_shape_is_inferred_from_the_first_row(row: dict[str, Any], shape: str) -> None:
    assert _validate([row, row]) == data.Shape(shape, "inferred from line 1")
    assert _validate([row], shape=shape) == data.Shape(shape, "dataset.shape")


@pytest.mark.parametrize(
    ("rows", "dataset", "message"),
    [
        ([TWO_TURNS, {"text": "hi"}], {}, "line 2: a text row in a conversational dataset (inferred from line 1); give "
         "every row the same columns"),
        ([TWO_TURNS], {"shape": "prompt-completion"}, "line 1: a conversational row in a prompt-completion "
         "dataset (dataset.shape); give every row the same columns"),
        ([SHAREGPT], {"columns": {"messages": "conversations"}}, "line 1: message 1 of 'conversations' needs a "
         "'role' and a 'content' string, got keys ['from', 'value']; for ShareGPT rows set dataset.chat {roleKey: "
         "from, contentKey: value, roles: {human: user, gpt: assistant}}"),
        ([SHAREGPT], {**SHAREGPT_DATASET, "chat": {"roleKey": "from", "contentKey": "value"}},
         "line 1: message 2 of 'conversations' has role 'human', not one of system, user, assistant, tool; map it "
         "with dataset.chat.roles (e.g. {human: user})"),
        ([{"messages": [HI, {"role": "assistant", "content": " \n"}]}], {},
         "line 1: message 2 of 'messages' (assistant) is empty; fill it or remove the turn"),
        ([{"messages": []}], {}, "line 1: 'messages' holds no messages"),
        ([{"prompt": [HI], "completion": [HI]}], {},
         "line 1: the last message of 'completion' must have role 'assistant', the reply trained on"),
        ([{"prompt": [HI], "completion": "Hi!"}], {}, "line 1: field 'completion' should be a list, got str"),
    ],
    ids=["mixed", "declared-other", "sharegpt-unmapped", "role-unmapped", "empty-turn", "no-messages",
         "completion-not-assistant", "completion-a-string"],
)  # fmt: skip
def test_bad_chats_name_the_line_and_the_fix(rows: list[Any], dataset: dict[str, Any], message: str) -> None:
    with pytest.raises(data.DataError) as caught:
        _validate(rows, **dataset)
    assert str(caught.value) == message


def test_the_shape_is_in_the_first_log_line_and_the_manifest(train: Callable[..., Run]) -> None:
    run = train({"model": {"preset": "tiny-llama"}, "training": {"maxSteps": 1}}, INSTRUCTIONS)

    assert run.rc == 0, run.summary
    assert run.events[0] == {**run.events[0], "event": "data", "shape": "prompt-completion",
                             "shape_from": "inferred from line 1", "rows": len(INSTRUCTIONS)}  # fmt: skip
    manifest = json.loads((run.output / "manifest.json").read_text())
    read = {
        k: v for k, v in manifest["data"].items() if k != "dataset"
    }  # its digests: tests/trainer/test_provenance
    assert read == {"rows": 8, "shape": "prompt-completion", "shape_from": "inferred from line 1",
                    "max_seq_length": 64, "truncated": 0}  # fmt: skip
    assert run.summary["metrics"]["truncated_rows"] == 0


def test_the_pod_counts_rows_longer_than_max_seq_length_in_both_splits(train: Callable[..., Run]) -> None:
    long = [{"prompt": "Tell me about the sea " * n, "completion": " It is big."} for n in (6, 8, 10)]
    spec = {"model": {"preset": "tiny-llama"}, "training": {"maxSteps": 1, "maxSeqLength": 32},
            "dataset": {"validationSplit": 0.25}}  # fmt: skip

    run = train(spec, INSTRUCTIONS + long)

    assert run.rc == 0, run.summary
    tokenizer = transformers.AutoTokenizer.from_pretrained(run.output)  # the one the run saved
    assert all(len(encode(tokenizer, row, 10**6)["input_ids"]) <= 32 for row in INSTRUCTIONS)
    lines = {
        f"line {9 + i}: {len(encode(tokenizer, row, 10**6)['input_ids'])} tokens"
        for i, row in enumerate(long)
    }
    event = run.event("lengths")
    assert (event["truncated"], event["max_seq_length"], set(event["rows"])) == (3, 32, lines)
    manifest = json.loads((run.output / "manifest.json").read_text())
    assert (manifest["data"]["truncated"], manifest["data"]["max_seq_length"]) == (3, 32)
    assert run.summary["metrics"]["truncated_rows"] == 3  # status.result.metrics
