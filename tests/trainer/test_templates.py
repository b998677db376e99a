"""task.chatTemplate (issue 14): the model's own, the built-in ChatML, or a .jinja file from the dataset's volume;
the template trained with is saved with the result, and chats without any template fail before encoding."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import transformers
from finetune_api.data import DatasetSpec, TaskSpec
from finetune_api.trainer import TrainerPaths
from finetune_trainer import data, storage, templates

from tests.trainer.test_chat_format import _tokenizer, encode
from tests.trainer.test_loss_on import TWO_TURNS, _two_turns
from tests.trainer.trainerkit import Run

DATASET = DatasetSpec(uri="pvc://data/train.jsonl")
CHATS = [TWO_TURNS] * 8


def _bare() -> Any:
    tokenizer = _tokenizer(bos_in_template=False)
    tokenizer.chat_template = None
    return tokenizer


def _paths(data_dir: Path) -> TrainerPaths:
    return TrainerPaths(data_dir=str(data_dir))


def test_chatml_gives_a_tokenizer_without_a_template_the_chatml_format() -> None:
    tokenizer = _bare()

    templates.apply(tokenizer, TaskSpec(chat_template="chatml"), DATASET, _paths(Path("/nowhere")))

    assert encode(tokenizer, TWO_TURNS, 128) == _two_turns(tokenizer, first=True, last=True, rest=False)


def test_unset_keeps_the_model_s_own() -> None:
    tokenizer = _tokenizer(bos_in_template=True)
    own = tokenizer.chat_template

    templates.apply(tokenizer, TaskSpec(), DATASET, _paths(Path("/nowhere")))

    assert tokenizer.chat_template == own


def test_a_jinja_file_is_read_from_the_dataset_s_volume(tmp_path: Path) -> None:
    (tmp_path / "data" / "templates").mkdir(parents=True)
    (tmp_path / "data" / "templates" / "chat.jinja").write_text(templates.CHATML)
    tokenizer = _bare()

    templates.apply(tokenizer, TaskSpec(chat_template="templates/chat.jinja"), DATASET, _paths(tmp_path))

    assert tokenizer.chat_template == templates.CHATML


def test_a_bad_or_missing_jinja_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "chat.jinja").write_text("{% for m in messages %}{{ m['content'] }}")
    task = TaskSpec(chat_template="chat.jinja")

    with pytest.raises(
        data.DataError, match=r"task.chatTemplate chat.jinja: not a Jinja template \(.*, line 1\)"
    ):
        templates.apply(_bare(), task, DATASET, _paths(tmp_path))
    with pytest.raises(storage.StorageError, match=re.escape("pvc://data/chat.jinja: neither")):
        templates.apply(_bare(), task, DATASET, _paths(tmp_path / "empty"))


@pytest.mark.parametrize(
    ("shape", "task", "refused"),
    [
        ("conversational", {}, True),
        ("conversational-prompt-completion", {}, True),
        ("prompt-completion", {"prompt_format": "chat"}, True),
        ("prompt-completion", {}, False),  # auto: plain without a template
        ("text", {}, False),
    ],
)
def test_chats_without_a_template_are_refused_before_encoding(
    shape: str, task: dict[str, Any], refused: bool
) -> None:
    spec, found = TaskSpec(**task), data.Shape(shape, "dataset.shape")
    if not refused:
        templates.require(_bare(), spec, found)
        return
    with pytest.raises(data.DataError) as caught:
        templates.require(_bare(), spec, found)
    assert str(caught.value) == (
        f"the dataset's rows are {shape} (dataset.shape) but the model's tokenizer has no chat template; set "
        "task.chatTemplate (chatml, or a .jinja file in the dataset's volume)"
    )


def test_the_template_trained_with_is_saved_with_the_result(
    tmp_path: Path, train: Callable[..., Run]
) -> None:
    (tmp_path / "run" / "data").mkdir(parents=True)
    (tmp_path / "run" / "data" / "chat.jinja").write_text(templates.CHATML)
    job = {
        "model": {"preset": "tiny-llama"},
        "task": {"chatTemplate": "chat.jinja"},
        "training": {"maxSteps": 1},
    }

    run = train({**job, "output": {"mergeAdapter": True}}, CHATS)

    assert run.rc == 0, run.summary
    for folder in (run.output, run.output / "merged"):
        assert transformers.AutoTokenizer.from_pretrained(folder).chat_template == templates.CHATML


def test_a_template_that_refuses_a_chat_names_the_row_s_problem() -> None:
    tokenizer = _bare()
    tokenizer.chat_template = (
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Roles must alternate') }}{% endif %}"
    )

    with pytest.raises(
        data.DataError, match=r"^the chat template refuses this chat \(Roles must alternate\); fix"
    ):
        encode(tokenizer, TWO_TURNS)
