"""Special tokens of causal-lm rows (issue 7): a chat template places them and the trainer adds none on top;
prompt/completion rows go through the chat template unless `task.promptFormat` is plain.

The tokenizers are built offline with a real ChatML template: one like SmolLM2's (its BOS is `<|im_start|>`, which
the tokenizer never adds itself), one whose BOS `<s>` both the tokenizer and the template put first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import transformers
from finetune_api.data import ColumnMapping, DatasetSpec, TaskSpec
from finetune_trainer import data, tasks, tiny
from finetune_trainer.data import DataError
from tokenizers import processors

from tests.trainer.trainerkit import INSTRUCTIONS, Run

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<s>", "<|im_start|>", "<|im_end|>"]
CHAT = {"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Say hi"},
                     {"role": "assistant", "content": "Hi!"}]}  # fmt: skip
INSTRUCTION = {"prompt": "Say hi", "completion": "Hi!"}
AS_CHAT = {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi!"}]}


def _tokenizer(bos_in_template: bool) -> Any:
    bpe = tiny._byte_level_bpe(SPECIALS)
    bos, template = "<|im_start|>", CHATML
    if bos_in_template:
        bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
        bos, template = "<s>", "{{ bos_token }}" + CHATML
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=bos, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = template
    return tokenizer


@pytest.fixture(scope="module", params=[False, True], ids=["smollm-style", "bos-in-template"])
def tokenizer(request: pytest.FixtureRequest) -> Any:
    return _tokenizer(request.param)


def encode(
    tokenizer: Any, row: dict[str, Any], max_len: int = 64, dataset: dict[str, Any] | None = None, **task: Any
) -> tasks.Features:
    """One row checked and encoded as the trainer does, under a TaskSpec of `task` (and a DatasetSpec of
    `dataset`)."""
    spec, rows = TaskSpec(**task), [data.Row("line 1", row)]
    (sample,), _ = data.validate(rows, spec, DatasetSpec(uri="pvc://data/x", **(dataset or {})))
    return tasks.encode_causal_lm(sample.fields, tokenizer, spec, ColumnMapping(), max_len)


def _ids(tokenizer: Any, *pieces: str) -> list[int]:
    """Special tokens by their id, text as the tokenizer splits it."""
    ids: list[int] = []
    for piece in pieces:
        ids += (
            [SPECIALS.index(piece)]
            if piece in SPECIALS
            else tokenizer.encode(piece, add_special_tokens=False)
        )
    return ids


def _bos(tokenizer: Any) -> list[str]:
    """What the tokenizer itself puts first: `<s>` for the second kind, nothing for the SmolLM2-like one."""
    return ["<s>"] if tokenizer.bos_token == "<s>" else []


def test_a_chat_gets_the_template_s_special_tokens_once(tokenizer: Any) -> None:
    prompt = _ids(tokenizer, *_bos(tokenizer), "<|im_start|>", "system\nAnswer briefly.", "<|im_end|>", "\n",
                  "<|im_start|>", "user\nSay hi", "<|im_end|>", "\n", "<|im_start|>", "assistant\n")  # fmt: skip
    answer = _ids(tokenizer, "Hi!", "<|im_end|>", "\n")

    assert encode(tokenizer, CHAT) == {"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer}
    assert prompt[:2] == ([1, 2] if _bos(tokenizer) else [2, tokenizer.encode("system")[0]])


def test_prompt_completion_rows_are_a_chat_by_default(tokenizer: Any) -> None:
    as_chat = encode(tokenizer, AS_CHAT)

    assert encode(tokenizer, INSTRUCTION) == as_chat
    assert encode(tokenizer, INSTRUCTION, prompt_format="chat") == as_chat


def test_plain_prompt_completion_rows_get_bos_only_from_the_tokenizer(tokenizer: Any) -> None:
    prompt = _ids(tokenizer, *_bos(tokenizer), "Say hi")
    answer = _ids(tokenizer, "Hi!", "<|im_end|>")

    features = encode(tokenizer, INSTRUCTION, prompt_format="plain")

    assert features == {"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer}


def test_without_a_chat_template_instructions_are_plain_and_chats_refused() -> None:
    tokenizer = _tokenizer(bos_in_template=False)
    tokenizer.chat_template = None

    assert encode(tokenizer, INSTRUCTION) == encode(tokenizer, INSTRUCTION, prompt_format="plain")
    for row, task in [(INSTRUCTION, {"prompt_format": "chat"}), (AS_CHAT, {})]:
        with pytest.raises(DataError, match="the model's tokenizer has no chat template"):
            encode(tokenizer, row, **task)


def test_prompt_format_reaches_the_trainer(train: Callable[..., Run]) -> None:
    job = {"model": {"preset": "tiny-llama"}, "training": {"maxSteps": 2}}
    chat = train(job, INSTRUCTIONS, sub="chat")
    plain = train({**job, "task": {"promptFormat": "plain"}}, INSTRUCTIONS, sub="plain")

    assert chat.rc == plain.rc == 0, (chat.summary, plain.summary)
    # 2 steps of 4 rows see all 8 rows once; tiny-llama's template adds `<|user|>` `\n` before the prompt,
    # `</s>` `\n` `<|assistant|>` `\n` after it and `\n` after the answer's `</s>`: 7 tokens per row.
    assert chat.summary["metrics"]["tokens"] - plain.summary["metrics"]["tokens"] == 8 * 7
