"""causal-lm rows → token ids and labels: which tokens a chat or instruction row trains (`task.lossOn`).

Called by `tasks.encode_all` and `check.check_data` (`encode_measured`: the row cut to fit, and its whole length).
A row becomes segments of text, each trained or not, cut where the chat template starts and ends each assistant
message: the template renders the chat up to the message (with the generation prompt) and up to its end, and both
must be a prefix of the whole rendered chat, so every special token is the template's own and the trainer adds
none on top. Plain text and plain prompt/completion rows get BOS only where the tokenizer itself adds one, and EOS
after the answer. A leading BOS is never trained.

lossOn: `assistant` (default) trains every assistant message; `last-assistant` only the final one; `completion`
only the completion (the final assistant message of a `messages` chat); `all` every token but a leading BOS.
Text rows are trained whole in every mode.
"""

from __future__ import annotations

from typing import Any

import jinja2
from finetune_api.data import ColumnMapping, TaskSpec

from finetune_trainer.data import DataError, Record

IGNORE = -100
"""Label value the Hugging Face losses skip."""

Features = dict[str, Any]
"""One encoded example: lists of ints per sequence field, ints for scalar targets."""

Segment = tuple[str, bool]
"""A piece of the rendered row and whether its tokens are trained."""


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def window(ids: list[int], labels: list[int], answer_at: int, max_len: int) -> Features:
    """At most `max_len` tokens, at least half of them (when it has that many) the final answer, which starts
    at `answer_at`: the context before it is cut from the left, the answer from the right."""
    prefix, answer = answer_at, len(ids) - answer_at
    keep_answer = min(answer, max(max_len // 2, max_len - prefix))
    start, end = answer_at - min(prefix, max_len - keep_answer), answer_at + keep_answer
    return {"input_ids": ids[start:end], "labels": labels[start:end]}


def _features(tokenizer: Any, segments: list[Segment], answer: int, max_len: int) -> tuple[Features, int]:
    """Tokenize each segment on its own and cut to `max_len` (`window`); `answer` is the index of the segment where
    the final answer starts. Also returns the whole length before the cut."""
    ids: list[int] = []
    labels: list[int] = []
    answer_at = 0
    for index, (text, trained) in enumerate(segments):
        if index == answer:
            answer_at = len(ids)
        piece = _ids(tokenizer, text)
        ids += piece
        labels += piece if trained else [IGNORE] * len(piece)
    if ids and labels[0] != IGNORE and ids[0] == tokenizer.bos_token_id:
        labels[0] = IGNORE
    return window(ids, labels, answer_at, max_len), len(ids)


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def _apply(tokenizer: Any, messages: list[Record], generation: bool) -> str:
    try:
        return str(tokenizer.apply_chat_template(messages, add_generation_prompt=generation, tokenize=False))
    except jinja2.TemplateError as exc:
        raise DataError(
            f"the chat template refuses this chat ({exc}); fix the row or set task.chatTemplate"
        ) from None


def _render(tokenizer: Any, messages: list[Record], generation: bool, full: str) -> int:
    """Where `messages` end inside the rendered `full` chat (after the generation prompt when `generation`)."""
    text = _apply(tokenizer, messages, generation)
    if not full.startswith(text):
        raise DataError(
            f"the chat template renders the first {len(messages)} messages differently inside the whole chat, so "
            "the assistant turns cannot be told apart; use a template that renders a chat as a prefix of a longer "
            "one (task.chatTemplate)"
        )
    return len(text)


def _chat(
    tokenizer: Any, prompt: list[Record], completion: list[Record], loss_on: str, max_len: int
) -> tuple[Features, int]:
    """A chat as the template renders it; the prompt's messages come before the completion's."""
    if not has_chat_template(tokenizer):
        raise DataError(
            "the model's tokenizer has no chat template, so chats cannot be encoded; name one with "
            "task.chatTemplate (e.g. chatml), or use prompt/completion rows with task.promptFormat plain"
        )
    messages = prompt + completion
    full = _apply(tokenizer, messages, False)
    last = len(messages) - 1
    cuts: list[tuple[int, int, bool]] = []  # (start, end, trained) of each assistant message
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = _render(tokenizer, messages[:index], True, full)
        end = len(full) if index == last else _render(tokenizer, messages[: index + 1], False, full)
        trained = {
            "assistant": True, "last-assistant": index == last, "completion": index >= len(prompt), "all": True,
        }[loss_on]  # fmt: skip
        cuts.append((start, end, trained))
    segments: list[Segment] = []
    done = 0
    for start, end, trained in cuts:
        segments += [(full[done:start], loss_on == "all"), (full[start:end], trained)]
        done = end
    return _features(tokenizer, segments, len(segments) - 1, max_len)


def _lead(tokenizer: Any) -> str:
    """BOS where the tokenizer itself starts a text with it (as a completion endpoint would), else nothing."""
    bos = tokenizer.bos_token
    return bos if bos is not None and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id] else ""


def _plain(tokenizer: Any, prompt: str, answer: str, loss_on: str, max_len: int) -> tuple[Features, int]:
    """Raw text: BOS only where the tokenizer adds one (`_lead`), EOS after the answer so the model learns to stop."""
    end = tokenizer.eos_token or ""
    segments = [(_lead(tokenizer), False), (prompt, loss_on == "all"), (answer + end, True)]
    return _features(tokenizer, segments, 2, max_len)


def _as_chat(tokenizer: Any, task: TaskSpec) -> bool:
    """Whether string prompt/completion rows are rendered as a user and an assistant turn (`task.promptFormat`)."""
    return task.prompt_format == "chat" or (task.prompt_format == "auto" and has_chat_template(tokenizer))


def encode_causal_lm(
    row: Record, tokenizer: Any, task: TaskSpec, columns: ColumnMapping, max_len: int
) -> Features:
    """A `data.sample` as at most `max_len` tokens (`encode_measured`)."""
    return encode_measured(row, tokenizer, task, columns, max_len)[0]


def encode_measured(
    row: Record, tokenizer: Any, task: TaskSpec, columns: ColumnMapping, max_len: int
) -> tuple[Features, int]:
    """A `data.sample`: text, a chat (prompt and completion as messages), or an instruction (as a chat or plain:
    `task.promptFormat`), cut to `max_len` tokens; the trained tokens follow `task.lossOn`. Also returns the row's
    whole length in tokens: longer than `max_len` means it was cut."""
    if "text" in row:
        return _plain(tokenizer, "", row["text"], "all", max_len)
    prompt, completion, loss_on = row["prompt"], row["completion"], task.loss_on
    if isinstance(prompt, list):
        return _chat(tokenizer, prompt, completion, loss_on, max_len)
    if _as_chat(tokenizer, task):
        turns = [{"role": "user", "content": prompt}], [{"role": "assistant", "content": completion}]
        return _chat(tokenizer, *turns, loss_on, max_len)
    return _plain(tokenizer, prompt, completion, loss_on, max_len)


def answer_prompt(row: Record, tokenizer: Any, task: TaskSpec) -> tuple[list[int], str, tuple[str, ...]]:
    """A prompt/completion or chat `data.sample` as a greedy answer to it starts: the prompt's token ids as
    training encodes them (the chat template up to its generation prompt, or the plain prompt after `_lead`), the
    reference answer (the completion; of chat completions, the first message's text) and the texts that end an
    answer (the end of turn the template writes after an assistant message, and EOS)."""
    prompt, completion = row["prompt"], row["completion"]
    eos = tokenizer.eos_token or ""
    if not isinstance(prompt, list) and not _as_chat(tokenizer, task):
        return _ids(tokenizer, _lead(tokenizer)) + _ids(tokenizer, prompt), completion, (eos,)
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    answer = completion[0]["content"] if isinstance(completion, list) else completion
    opened = _apply(tokenizer, messages, True)
    tail = _apply(tokenizer, [*messages, {"role": "assistant", "content": answer}], False)[len(opened) :]
    end = tail[len(answer) :].strip() if tail.startswith(answer) else ""
    return _ids(tokenizer, opened), answer, tuple(s for s in (end, eos) if s)
