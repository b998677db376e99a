"""The chat template a causal-lm run renders chats with (`task.chatTemplate`), set on the tokenizer.

Called by the recipe right after it loads the tokenizer. The template set here is the one the trainer encodes with
and the one `tokenizer.save_pretrained` writes next to the result, so serving renders chats the same way. Unset
keeps the model's own; `chatml` is the built-in ChatML; a `.jinja` path is read from the dataset's volume. A chat
dataset that meets a tokenizer without a template fails before anything is encoded (`require`).
"""

from __future__ import annotations

from typing import Any

import jinja2
from finetune_api.data import DatasetSpec, TaskSpec
from finetune_api.trainer import TrainerPaths

from finetune_trainer import storage
from finetune_trainer.data import DataError, Shape

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""ChatML as Qwen and SmolLM write it; no BOS of its own."""

BUILT_IN = {"chatml": CHATML}
"""task.chatTemplate names → template text."""


def _read(task: TaskSpec, dataset: DatasetSpec, paths: TrainerPaths) -> str:
    name = task.chat_template or ""
    scheme, _, rest = dataset.uri.partition("://")
    text = storage.mounted(f"{scheme}://{rest.partition('/')[0]}/{name}", paths).read_text(encoding="utf-8")
    try:
        jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise DataError(
            f"task.chatTemplate {name}: not a Jinja template ({exc.message}, line {exc.lineno})"
        ) from None
    return text


def apply(tokenizer: Any, task: TaskSpec, dataset: DatasetSpec, paths: TrainerPaths) -> None:
    """Set the tokenizer's chat template from `task.chatTemplate` (unset: leave the model's own)."""
    if task.chat_template is None:
        return
    tokenizer.chat_template = BUILT_IN.get(task.chat_template) or _read(task, dataset, paths)


def require(tokenizer: Any, task: TaskSpec, shape: Shape | None) -> None:
    """DataError when rows that must be rendered as chats meet a tokenizer with no chat template."""
    if shape is None or getattr(tokenizer, "chat_template", None):
        return
    if shape.name.startswith("conversational") or (
        shape.name == "prompt-completion" and task.prompt_format == "chat"
    ):
        raise DataError(
            f"the dataset's rows are {shape.name} ({shape.origin}) but the model's tokenizer has no chat template; "
            "set task.chatTemplate (chatml, or a .jinja file in the dataset's volume)"
        )
