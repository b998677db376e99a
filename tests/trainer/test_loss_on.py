"""Which tokens causal-lm trains (`task.lossOn`, issue 14): exact labels for each row shape and mode.

Built on the offline ChatML tokenizers of test_chat_format (one SmolLM2-like, one with a BOS that the template puts
first); each expectation is written as the pieces of the rendered row, trained (T) or not (F).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from finetune_trainer import tasks

from tests.trainer.test_chat_format import _bos, _ids, _tokenizer, encode

T, F = True, False
IM = ["<|im_start|>"]
END = ["<|im_end|>", "\n"]
TWO_TURNS = {"messages": [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi!"},
    {"role": "user", "content": "Say bye"}, {"role": "assistant", "content": "Bye!"},
]}  # fmt: skip
MODES = ["assistant", "last-assistant", "completion", "all"]


@pytest.fixture(scope="module", params=[False, True], ids=["smollm-style", "bos-in-template"])
def tokenizer(request: pytest.FixtureRequest) -> Any:
    return _tokenizer(request.param)


def _encode(tokenizer: Any, row: dict[str, Any], max_len: int = 128, **task: Any) -> tasks.Features:
    return encode(tokenizer, row, max_len, **task)


def _expect(tokenizer: Any, *parts: tuple[list[str], bool]) -> tasks.Features:
    """input_ids and labels of pieces given as (text and special tokens, trained); a leading BOS is never trained."""
    ids: list[int] = []
    labels: list[int] = []
    for pieces, trained in parts:
        piece = _ids(tokenizer, *pieces)
        ids += piece
        labels += piece if trained else [tasks.IGNORE] * len(piece)
    if ids[0] == tokenizer.bos_token_id:
        labels[0] = tasks.IGNORE
    return {"input_ids": ids, "labels": labels}


def _two_turns(tokenizer: Any, first: bool, last: bool, rest: bool) -> tasks.Features:
    system = [*IM, "system\nAnswer briefly.", *END]
    return _expect(
        tokenizer,
        ([*_bos(tokenizer), *system, *IM, "user\nSay hi", *END, *IM, "assistant\n"], rest),
        (["Hi!", *END], first),
        ([*IM, "user\nSay bye", *END, *IM, "assistant\n"], rest),
        (["Bye!", *END], last),
    )


@pytest.mark.parametrize(
    ("mode", "first", "last", "rest"),
    [("assistant", T, T, F), ("last-assistant", F, T, F), ("completion", F, T, F), ("all", T, T, T)],
)
def test_a_two_turn_chat_trains_what_loss_on_names(tokenizer: Any, mode: str, first: bool, last: bool,
                                                   rest: bool) -> None:  # fmt: skip
    assert _encode(tokenizer, TWO_TURNS, loss_on=mode) == _two_turns(tokenizer, first, last, rest)


def test_both_assistant_replies_are_trained_by_default(tokenizer: Any) -> None:
    features = _encode(tokenizer, TWO_TURNS)
    trained = [t for t, label in zip(features["input_ids"], features["labels"], strict=True) if label != -100]

    assert tokenizer.decode(trained) == "Hi!<|im_end|>\nBye!<|im_end|>\n"


@pytest.mark.parametrize("mode", MODES)
def test_instructions_as_a_chat_train_the_completion_unless_all(tokenizer: Any, mode: str) -> None:
    row = {"prompt": "Say hi", "completion": "Hi!"}
    prompt = [*_bos(tokenizer), *IM, "user\nSay hi", *END, *IM, "assistant\n"]

    assert _encode(tokenizer, row, loss_on=mode) == _expect(
        tokenizer, (prompt, mode == "all"), (["Hi!", *END], T)
    )


@pytest.mark.parametrize("mode", MODES)
def test_plain_instructions_train_the_completion_and_eos_unless_all(tokenizer: Any, mode: str) -> None:
    row = {"prompt": "Say hi", "completion": "Hi!"}
    expected = _expect(tokenizer, ([*_bos(tokenizer), "Say hi"], mode == "all"), (["Hi!", "<|im_end|>"], T))

    assert _encode(tokenizer, row, prompt_format="plain", loss_on=mode) == expected


@pytest.mark.parametrize("mode", MODES)
def test_text_rows_are_trained_whole_in_every_mode(tokenizer: Any, mode: str) -> None:
    expected = _expect(tokenizer, ([*_bos(tokenizer), "Say hi", "<|im_end|>"], T))

    assert _encode(tokenizer, {"text": "Say hi"}, loss_on=mode) == expected


def test_a_long_chat_keeps_the_end_of_the_last_reply_and_cuts_context_from_the_left(tokenizer: Any) -> None:
    whole = _encode(tokenizer, TWO_TURNS)
    last_reply = len(_ids(tokenizer, "Bye!", *END))
    window = 2 * last_reply + 2  # the reply fits in half the window, so it is kept whole

    cut = _encode(tokenizer, TWO_TURNS, max_len=window)

    assert cut == {"input_ids": whole["input_ids"][-window:], "labels": whole["labels"][-window:]}
    at = len(whole["input_ids"]) - last_reply  # a tight window: half context, half the start of the reply
    assert _encode(tokenizer, TWO_TURNS, max_len=4)["input_ids"] == whole["input_ids"][at - 2 : at + 2]


def _marked(tokenizer: Any, features: tasks.Features) -> str:
    """The encoded row as text, each run of trained tokens in ⟦ ⟧."""
    runs: list[tuple[bool, list[int]]] = []
    for token, label in zip(features["input_ids"], features["labels"], strict=True):
        if runs and runs[-1][0] == (label != tasks.IGNORE):
            runs[-1][1].append(token)
        else:
            runs.append((label != tasks.IGNORE, [token]))
    return "".join(
        f"⟦{tokenizer.decode(ids)}⟧" if trained else tokenizer.decode(ids) for trained, ids in runs
    )


def test_the_readme_s_worked_example_is_what_the_encoder_trains() -> None:
    tokenizer = _tokenizer(bos_in_template=False)
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")

    assert f"```text\n{_marked(tokenizer, _encode(tokenizer, TWO_TURNS))}\n```" in readme
