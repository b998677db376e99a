"""The FineTuneJob kind: its spec, the rules that span several parts of it, and the whole object."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from finetune_api.base import ApiModel, Rule
from finetune_api.common import DNS_SUBDOMAIN
from finetune_api.data import DatasetSpec, TaskSpec
from finetune_api.evaluation import (
    ENTITY_METRICS,
    ENTITY_TAG,
    EVALUATION_RULES,
    TASK_METRICS,
    EvaluationSpec,
)
from finetune_api.model import MethodSpec, ModelSpec
from finetune_api.output import EXPORT_RULES, OutputSpec, RunPolicy
from finetune_api.placement import ResourcesSpec
from finetune_api.presets import FAMILY_TASKS, PRESETS, Family, TaskType, presets_of, real_presets
from finetune_api.status import FineTuneJobStatus
from finetune_api.training import DistributedSpec, TrainingSpec

GROUP = "finetune.io"
VERSION = "v1alpha1"
KIND = "FineTuneJob"
PLURAL = "finetunejobs"
MAX_NAME_LENGTH = 50
"""Child objects append suffixes such as `-worker-0` to the job's name; 50 keeps them within 63 characters."""
_SUFFIXES = "child objects are named after the job plus suffixes such as `-worker-0` and must fit Kubernetes' 63-character limit"
NAME_TOO_LONG = f"metadata.name must be at most {MAX_NAME_LENGTH} characters: {_SUFFIXES}"
GENERATE_NAME_LENGTH = MAX_NAME_LENGTH - 5
"""The API server appends 5 random characters to `generateName`."""


def _block(model: type[ApiModel], description: str) -> Any:
    """An optional block of the spec: defaults to the model's defaults, which the CRD spells out as well.

    The API server checks a default against the block's CEL rules, so the CRD default must be complete, not {}.
    """
    default: JsonDict = {"default": model().to_wire()}
    return Field(default_factory=model, json_schema_extra=default, description=description)


def _cel_list(items: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{i}'" for i in items) + "]"


def _family_rule(family: Family) -> Rule:
    names, tasks = presets_of(family), FAMILY_TASKS[family]
    return Rule(
        field="task.type",
        message=f"{family} presets ({', '.join(names)}) support task.type {', '.join(tasks)} only; "
        "change task.type or model.preset",
        check=lambda s: s.model.preset not in names or s.task.type in tasks,
        cel=f"!(has(self.model.preset) && self.model.preset in {_cel_list(names)}) "
        f"|| self.task.type in {_cel_list(tasks)}",
    )


def _eval_metrics_rule(task: TaskType) -> Rule:
    allowed = TASK_METRICS[task]
    return Rule(
        field="evaluation.metrics",
        message=f"evaluation.metrics for task.type {task} are {', '.join(allowed)}; remove the others",
        check=lambda s: (
            s.task.type != task or s.evaluation.metrics is None or set(s.evaluation.metrics) <= set(allowed)
        ),
        cel=f"self.task.type != '{task}' || !has(self.evaluation.metrics) "
        f"|| self.evaluation.metrics.all(m, m in {_cel_list(allowed)})",
    )


def _entity_tags_ok(spec: FineTuneJobSpec) -> bool:
    """False when entity-level metrics would be computed from labels that are not BIO tags."""
    task, evaluation = spec.task, spec.evaluation
    if task.type != "token-classification" or not evaluation.enabled or task.labels is None:
        return True
    if not set(evaluation.metrics_for(task.type)) & set(ENTITY_METRICS):
        return True
    return all(re.match(ENTITY_TAG, label) for label in task.labels)


_CEL_GPUS_PER_NODE = (
    "(has(self.resources.gpu) ? self.resources.gpu.count : "
    f"(has(self.model.preset) && !(self.model.preset in {_cel_list(real_presets())}) ? 0 : 1))"
)
"""`FineTuneJobSpec.gpus_per_node` in CEL."""


class FineTuneJobSpec(ApiModel):
    """What to fine-tune, on which data, how, where it runs and where the result goes."""

    model: ModelSpec = Field(description="The base model: a preset name or a URI.")
    method: MethodSpec = _block(MethodSpec, "lora (default), qlora, dora or full, with their settings.")
    task: TaskSpec = _block(
        TaskSpec, "The training objective; causal-lm (instruction or chat SFT) by default."
    )
    dataset: DatasetSpec = Field(description="The training examples.")
    training: TrainingSpec = _block(TrainingSpec, "Hyperparameters of the training loop.")
    distributed: DistributedSpec = _block(DistributedSpec, "Nodes, processes per node and DeepSpeed ZeRO.")
    resources: ResourcesSpec = _block(ResourcesSpec, "GPUs, CPU, memory and placement of the training pods.")
    output: OutputSpec = _block(OutputSpec, "Where the adapter or model is written.")
    evaluation: EvaluationSpec = _block(
        EvaluationSpec, "Scores of the base model before training and of the result after; off by default."
    )
    run_policy: RunPolicy = _block(RunPolicy, "Suspension, retries, deadline and queueing (Kueue).")

    immutable = ("model", "method", "task", "dataset", "training", "distributed", "output", "evaluation")
    """Fields that define the training (resources and runPolicy may change)."""

    @property
    def gpus_per_node(self) -> int:
        """GPUs each training pod requests: `resources.gpu.count`, else 0 for tiny presets (they train on CPU), else 1
        (real presets and model URIs)."""
        if self.resources.gpu is not None:
            return self.resources.gpu.count
        return 0 if self.model.preset is not None and self.model.preset not in real_presets() else 1

    @property
    def lora_targets(self) -> tuple[str, ...] | None:
        """The linears the adapters go on: `method.lora.targetModules`, else the preset's list; None for every linear
        layer (`[all-linear]`, and the default of a model given by URI)."""
        targets = self.method.lora_settings.target_modules
        if targets is None:
            preset = PRESETS.get(self.model.preset or "")
            return preset.target_modules if preset is not None else None
        return None if targets == ["all-linear"] else tuple(targets)

    @property
    def processes_per_node(self) -> int:
        """Training processes per pod: `distributed.processesPerNode`, else one per GPU, else one (CPU)."""
        return self.distributed.processes_per_node or self.gpus_per_node or 1

    rules = (
        *(_family_rule(family) for family in FAMILY_TASKS),
        Rule(
            field="training.packing",
            message="training.packing only applies to task.type causal-lm; set it to false",
            check=lambda s: not s.training.packing or s.task.type == "causal-lm",
            cel="!self.training.packing || self.task.type == 'causal-lm'",
        ),
        Rule(
            field="training.batching",
            message="training.batching padding-free only applies to task.type causal-lm; use auto, length-grouped "
            "or padded",
            check=lambda s: s.training.batching != "padding-free" or s.task.type == "causal-lm",
            cel="self.training.batching != 'padding-free' || self.task.type == 'causal-lm'",
        ),
        Rule(
            field="dataset.shape",
            message="dataset.shape only applies to task.type causal-lm; remove it (the task names its columns)",
            check=lambda s: s.dataset.shape == "auto" or s.task.type == "causal-lm",
            cel="self.dataset.shape == 'auto' || self.task.type == 'causal-lm'",
        ),
        Rule(
            field="task.chatTemplate",
            message="a task.chatTemplate file is read from the dataset's volume; use a pvc:// or configmap:// "
            "dataset, or chatTemplate chatml (or none: the model's own)",
            check=lambda s: (
                s.task.chat_template in (None, "chatml") or s.dataset.uri.startswith(("pvc:", "configmap:"))
            ),
            cel="!has(self.task.chatTemplate) || self.task.chatTemplate == 'chatml' || "
            "self.dataset.uri.startsWith('pvc://') || self.dataset.uri.startsWith('configmap://')",
        ),
        Rule(
            field="output.mergeAdapter",
            message="output.mergeAdapter needs an adapter method (lora, qlora, dora); full fine-tuning has none",
            check=lambda s: not s.output.merge_adapter or s.method.type != "full",
            cel="!self.output.mergeAdapter || self.method.type != 'full'",
        ),
        *EXPORT_RULES,
        *EVALUATION_RULES,
        *(_eval_metrics_rule(task) for task in TASK_METRICS),
        Rule(
            field="task.labels",
            message="entity-level evaluation (seqeval) reads task.labels as BIO tags: O, B-<type>, I-<type> (or E-, "
            "S-); rename the labels, or set evaluation.metrics to [loss]",
            check=_entity_tags_ok,
            server=False,  # a regex over up to 10,000 label names of any length is beyond CEL's cost budget
        ),
        Rule(
            field="training.optimizer",
            message="DeepSpeed ZeRO (zeroStage 1-3, and its CPU offload) runs training.optimizer adamw only; set "
            "it to adamw, or distributed.deepspeed.zeroStage to 0 (or remove deepspeed) to keep sgd or an 8-bit "
            "optimizer",
            check=lambda s: (
                s.distributed.deepspeed is None
                or s.distributed.deepspeed.zero_stage == 0
                or s.training.optimizer == "adamw"
            ),
            cel="!has(self.distributed.deepspeed) || self.distributed.deepspeed.zeroStage == 0 "
            "|| self.training.optimizer == 'adamw'",
        ),
        Rule(
            field="resources.gpu.count",
            message="real model presets need a GPU: set resources.gpu.count ≥ 1 or use a tiny-* preset",
            check=lambda s: s.model.preset not in real_presets() or s.gpus_per_node != 0,
            cel=f"!(has(self.model.preset) && self.model.preset in {_cel_list(real_presets())}) "
            "|| !has(self.resources.gpu) || self.resources.gpu.count >= 1",
        ),
        Rule(
            field="distributed.processesPerNode",
            message="distributed.processesPerNode may not exceed the GPUs per node (one process per GPU): "
            "resources.gpu.count, which is 1 when unset for a real preset or a model URI; raise "
            "resources.gpu.count or lower processesPerNode",
            check=lambda s: (
                s.distributed.processes_per_node is None
                or s.gpus_per_node == 0
                or s.distributed.processes_per_node <= s.gpus_per_node
            ),
            cel=f"!has(self.distributed.processesPerNode) || {_CEL_GPUS_PER_NODE} == 0 "
            f"|| self.distributed.processesPerNode <= {_CEL_GPUS_PER_NODE}",
        ),
    )


class ObjectMeta(ApiModel):
    """The parts of metadata a manifest sets; everything the API server adds is kept as is."""

    model_config = ConfigDict(extra="allow")

    # Lengths are rules, not max_length: pydantic's "at most 50 characters" would not say why.
    name: str | None = Field(default=None, min_length=1, pattern=DNS_SUBDOMAIN)
    generate_name: str | None = Field(default=None)
    namespace: str | None = Field(default=None, max_length=63)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    rules = (
        Rule(
            field="name",
            message="metadata.name is required",
            check=lambda m: m.name is not None or m.generate_name is not None,
            server=False,
        ),
        Rule(
            field="generateName",
            message=f"metadata.generateName must be at most {GENERATE_NAME_LENGTH} characters: the API server "
            f"appends 5 random ones to make metadata.name, which may have {MAX_NAME_LENGTH} ({_SUFFIXES})",
            check=lambda m: m.generate_name is None or len(m.generate_name) <= GENERATE_NAME_LENGTH,
            server=False,  # the API server fills in metadata.name first, and the rule below checks that
        ),
    )


class FineTuneJob(ApiModel):
    """A FineTuneJob fine-tunes a base model (LoRA, QLoRA, DoRA or full) on a dataset and writes the result.

    The operator runs it as training pods (multi-node with DeepSpeed ZeRO when asked) and reports progress,
    results and conditions in status.
    """

    api_version: Literal["finetune.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["FineTuneJob"]
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: FineTuneJobSpec
    status: FineTuneJobStatus | None = None

    rules = (
        Rule(
            field="metadata.name",
            message=NAME_TOO_LONG,
            check=lambda j: j.metadata.name is None or len(j.metadata.name) <= MAX_NAME_LENGTH,
            cel=f"!has(self.metadata.name) || self.metadata.name.size() <= {MAX_NAME_LENGTH}",
        ),
    )


def parse(document: dict[str, Any]) -> FineTuneJob:
    """Validate one manifest; raises pydantic.ValidationError (see `errors.describe`)."""
    return FineTuneJob.model_validate(document)
