"""`spec.task` and `spec.dataset`: what the model learns to do, and from which examples."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from finetune_api.base import ApiModel, Rule
from finetune_api.common import SecretRef, stays_inside
from finetune_api.presets import TaskType
from finetune_api.uris import DATASET_SCHEMES, check_uri

LABELLED_TASKS = ("sequence-classification", "token-classification")
ROW_SHAPES = ("text", "prompt-completion", "conversational", "conversational-prompt-completion")
"""causal-lm row shapes, named as in TRL's dataset formats."""
CHAT_ROLES = ("system", "user", "assistant", "tool")


def _template_name_ok(name: str) -> bool:
    inside = name.endswith(".jinja") and not name.startswith("/") and ".." not in name.split("/")
    return name == "chatml" or inside


class TaskSpec(ApiModel):
    """The training objective. The dataset columns it reads are named in `dataset.columns`."""

    type: TaskType = Field(
        default="causal-lm",
        description=(
            "causal-lm: supervised fine-tuning of a decoder on instructions (prompt/completion) or chats (messages); "
            "loss only on the answer. sequence-classification: one label per text. token-classification: one tag "
            "per token (NER). seq2seq: source → target text (translation, summarisation). question-answering: "
            "extractive answers found in a context."
        ),
    )
    labels: list[str] | None = Field(
        default=None,
        min_length=2,
        max_length=10000,
        description=(
            "The label (or tag) names, in the order of their ids. Required for sequence-classification and "
            "token-classification (e.g. [O, B-PER, I-PER]); not allowed for other tasks."
        ),
    )
    source_prefix: str | None = Field(
        default=None,
        max_length=512,
        description="seq2seq only: text put before every source, e.g. 'translate English to German: '.",
    )
    prompt_format: Literal["auto", "chat", "plain"] = Field(
        default="auto",
        description=(
            "causal-lm prompt/completion rows: chat renders each as a user turn and an assistant turn with the "
            "model's chat template, the format chat and instruct models are served in; plain trains on the prompt "
            "followed by the completion as raw text (base models, completion endpoints); auto is chat when the "
            "model's tokenizer has a chat template, else plain. Chat rows (messages) always use the template."
        ),
    )
    chat_template: str | None = Field(
        default=None,
        max_length=256,
        json_schema_extra={"pattern": r"^(chatml|[A-Za-z0-9_./-]+\.jinja)$"},
        description=(
            "causal-lm: the chat template chats and chat-formatted instructions are rendered with, saved with the "
            "result so serving uses the same format. Unset: the model's own. chatml: the built-in ChatML "
            "(<|im_start|>role ... <|im_end|>). A path ending in .jinja: a file in the dataset's volume (the same "
            "PVC or ConfigMap as dataset.uri), e.g. templates/chat.jinja."
        ),
    )
    loss_on: Literal["assistant", "last-assistant", "completion", "all"] = Field(
        default="assistant",
        description=(
            "causal-lm: which tokens are trained. assistant: every assistant message of a chat (from its text "
            "through the template's end of turn), and the completion of prompt/completion rows. last-assistant: "
            "only the final assistant message. completion: only the completion (of a messages chat, its final "
            "assistant message). all: every token, system and user turns and prompts included. Plain text rows "
            "are trained whole."
        ),
    )

    rules = (
        Rule(
            field="labels",
            message="task.labels is required for sequence-classification and token-classification; list the names",
            check=lambda t: t.type not in LABELLED_TASKS or t.labels is not None,
            cel="!(self.type in ['sequence-classification', 'token-classification']) || has(self.labels)",
        ),
        Rule(
            field="labels",
            message="task.labels only applies to classification tasks; remove it",
            check=lambda t: t.type in LABELLED_TASKS or t.labels is None,
            cel="self.type in ['sequence-classification', 'token-classification'] || !has(self.labels)",
        ),
        Rule(
            field="promptFormat",
            message="task.promptFormat only applies to causal-lm; remove it",
            check=lambda t: t.type == "causal-lm" or t.prompt_format == "auto",
            cel="self.type == 'causal-lm' || self.promptFormat == 'auto'",
        ),
        Rule(
            field="chatTemplate",
            message="task.chatTemplate only applies to causal-lm; remove it",
            check=lambda t: t.type == "causal-lm" or t.chat_template is None,
            cel="self.type == 'causal-lm' || !has(self.chatTemplate)",
        ),
        Rule(
            field="chatTemplate",
            message="task.chatTemplate is chatml or a .jinja path inside the dataset's volume, without '..'",
            check=lambda t: t.chat_template is None or _template_name_ok(t.chat_template),
            cel="!has(self.chatTemplate) || self.chatTemplate == 'chatml' || (self.chatTemplate.endsWith('.jinja') "
            "&& !self.chatTemplate.startsWith('/') && !self.chatTemplate.split('/').exists(p, p == '..'))",
        ),
        Rule(
            field="lossOn",
            message="task.lossOn only applies to causal-lm; remove it",
            check=lambda t: t.type == "causal-lm" or t.loss_on == "assistant",
            cel="self.type == 'causal-lm' || self.lossOn == 'assistant'",
        ),
        Rule(
            field="sourcePrefix",
            message="task.sourcePrefix only applies to seq2seq; remove it",
            check=lambda t: t.type == "seq2seq" or t.source_prefix is None,
            cel="self.type == 'seq2seq' || !has(self.sourcePrefix)",
        ),
    )


def _column(default: str, used_by: str) -> str:
    return Field(default=default, min_length=1, max_length=256, description=f"Column holding {used_by}.")


class ColumnMapping(ApiModel):
    """Names of the dataset columns each task reads. Defaults are the conventional names."""

    text: str = _column("text", "plain text (causal-lm without prompt/completion; sequence-classification)")
    prompt: str = _column(
        "prompt",
        "the instruction (causal-lm): a string, or a list of messages (conversational-prompt-completion)",
    )
    completion: str = _column(
        "completion", "the answer trained on (causal-lm): a string, or a list of the assistant's messages"
    )
    messages: str = _column(
        "messages", "a chat as a list of {role, content} messages (causal-lm; other keys: dataset.chat)"
    )
    label: str = _column("label", "the class name or id (sequence-classification)")
    tokens: str = _column("tokens", "the list of words (token-classification)")
    tags: str = _column("tags", "the list of tag names or ids, one per word (token-classification)")
    source: str = _column("source", "the input text (seq2seq)")
    target: str = _column("target", "the output text (seq2seq)")
    question: str = _column("question", "the question (question-answering)")
    context: str = _column("context", "the passage holding the answer (question-answering)")
    answers: str = _column("answers", "{text: [...], answer_start: [...]} (question-answering)")


class ChatKeys(ApiModel):
    """How the messages of a chat are written, when not as {role, content} (e.g. ShareGPT's {from, value})."""

    role_key: str = Field(
        default="role", min_length=1, max_length=64, description="Key holding a message's role."
    )
    content_key: str = Field(
        default="content", min_length=1, max_length=64, description="Key holding a message's text."
    )
    roles: dict[str, Literal["system", "user", "assistant", "tool"]] = Field(
        default_factory=dict,
        max_length=32,
        description=(
            "The dataset's role names mapped to system, user, assistant or tool, e.g. {human: user, gpt: assistant} "
            "for ShareGPT; names not listed are used as they are."
        ),
    )


class DatasetSpec(ApiModel):
    """Where the training examples come from and how to read them."""

    uri: str = Field(
        max_length=2048,
        json_schema_extra={"pattern": "^(hf|https?|s3|pvc|configmap)://"},
        description=(
            "Location of the data: hf://org/name[@revision] (a Hub dataset), https://… (a public file), "
            "pvc://claim/path (a file or folder on a PersistentVolumeClaim), configmap://name/key (small inline "
            "data) or s3://bucket/key (an object, or a prefix of parquet shards). http(s) URLs to loopback, "
            "link-local, private or metadata addresses are refused."
        ),
    )
    format: Literal["jsonl", "json", "csv", "parquet", "hf"] | None = Field(
        default=None,
        description="File format. When unset it is inferred from the file extension; hf:// URIs read as `hf`.",
    )
    split: str = Field(
        default="train", max_length=128, description="Split to train on (hf:// datasets only)."
    )
    columns: ColumnMapping = Field(
        default_factory=ColumnMapping, description="Column names, when they differ from the defaults."
    )
    shape: Literal[
        "auto", "text", "prompt-completion", "conversational", "conversational-prompt-completion"
    ] = Field(
        default="auto",
        description=(
            "causal-lm row shape, as in TRL: text (plain text), prompt-completion (two strings), conversational "
            "(a list of messages), conversational-prompt-completion (prompt a list of messages, completion the "
            "assistant's message or messages). auto infers it from the first row's columns; the run's first "
            "log line and manifest.json say which. Every row must have the same shape."
        ),
    )
    chat: ChatKeys = Field(
        default_factory=ChatKeys,
        description="Message keys and role names of chats written in another convention, e.g. ShareGPT's "
        "{roleKey: from, contentKey: value, roles: {human: user, gpt: assistant}}.",
    )
    validation_split: float = Field(
        default=0.0,
        ge=0.0,
        le=0.5,
        description="Fraction of examples held out for evaluation (0 disables evaluation). Chosen with `seed`.",
    )
    max_samples: int | None = Field(
        default=None,
        ge=1,
        description="Use at most this many training examples (after shuffling with `seed`).",
    )
    secret_ref: SecretRef | None = Field(
        default=None,
        description=(
            "Secret with credentials to read the data: HF_TOKEN for hf://; AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (optionally AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_REGION) for s3://."
        ),
    )

    @field_validator("uri")
    @classmethod
    def _uri_scheme(cls, uri: str) -> str:
        return check_uri(uri, DATASET_SCHEMES)

    rules = (
        stays_inside("uri", "uri"),
        Rule(
            field="format",
            message="dataset.format hf is for hf:// URIs only; pick jsonl, json, csv or parquet",
            check=lambda d: d.format != "hf" or d.uri.startswith("hf://"),
            cel="!has(self.format) || self.format != 'hf' || self.uri.startsWith('hf://')",
        ),
        Rule(
            field="format",
            message="hf:// datasets are read as hf (the Hub's own format); remove dataset.format or set it to hf",
            check=lambda d: not d.uri.startswith("hf://") or d.format in (None, "hf"),
            cel="!self.uri.startsWith('hf://') || !has(self.format) || self.format == 'hf'",
        ),
        Rule(
            field="split",
            message="dataset.split only applies to hf:// datasets (a file is one split); remove it, or hold out "
            "evaluation rows with validationSplit",
            check=lambda d: d.split == "train" or d.uri.startswith("hf://"),
            cel="self.split == 'train' || self.uri.startsWith('hf://')",
        ),
    )
