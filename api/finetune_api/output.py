"""`spec.output` and `spec.runPolicy`: where the result goes, and how the run is started, retried and stopped."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator

from finetune_api.base import ApiModel, Rule
from finetune_api.common import DNS_LABEL, DNS_SUBDOMAIN, SecretRef, stays_inside
from finetune_api.uris import OUTPUT_SCHEMES, check_uri

ExportFormat = Literal["merged", "onnx"]
"""What `output.formats` may list, in the order the trainer writes them (onnx is exported from the merged model)."""

ONNX_UNSUPPORTED_TASKS: dict[str, str] = {
    "seq2seq": "an encoder-decoder model is served as separate encoder and decoder graphs with a generation loop, "
    "which the ONNX export (one graph: token ids in, logits out) does not write",
}
"""task.type → why `output.formats` onnx cannot serve it."""


class OutputSpec(ApiModel):
    """Where the trained adapter or model, its manifest and the checkpoints are written."""

    uri: str | None = Field(
        default=None,
        max_length=2048,
        json_schema_extra={"pattern": "^(pvc|oci|s3)://"},
        description=(
            "Destination: pvc://claim/path, s3://bucket/prefix (manifest.json uploaded last) or "
            "oci://registry/repository[:tag] (pushed as one ORAS artifact). When unset, or for s3:// and oci:// "
            "(its checkpoints, so a restarted pod resumes, and the result before upload), results go to a "
            "PersistentVolumeClaim the operator creates, named after the job."
        ),
    )
    push_secret_ref: SecretRef | None = Field(
        default=None,
        description=(
            "Secret with credentials for the destination: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (optionally "
            "AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_REGION) for s3://; a kubernetes.io/dockerconfigjson Secret "
            "for oci://."
        ),
    )
    merge_adapter: bool = Field(
        default=False,
        description="Also write the base model with the adapter merged in (lora, qlora, dora), ready to serve. The "
        "same as listing merged in formats (kept for compatibility).",
    )
    formats: list[ExportFormat] | None = Field(
        default=None,
        max_length=len(get_args(ExportFormat)),
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description=(
            "Extra formats to write next to the adapter (or model), each in its own folder with its files and "
            "sha256 in manifest.json: merged (merged/: the base model with the adapter merged in, loadable with "
            "transformers; lora, qlora and dora only) and onnx (onnx/model.onnx: the merged, or fully "
            "fine-tuned, model for ONNX Runtime, token ids in and logits out, without a KV cache; every task but "
            "seq2seq). Each is loaded back after writing and its logits checked against the trained model's on "
            "the same rows; a mismatch fails the run and publishes nothing."
        ),
    )

    rules = (stays_inside("uri", "uri"),)

    @field_validator("uri")
    @classmethod
    def _uri_scheme(cls, uri: str | None) -> str | None:
        return None if uri is None else check_uri(uri, OUTPUT_SCHEMES)

    @field_validator("formats")
    @classmethod
    def _formats_once(cls, formats: list[ExportFormat] | None) -> list[ExportFormat] | None:
        if formats is not None and len(set(formats)) != len(formats):
            raise ValueError("list each format once")
        return formats

    def export_formats(self) -> tuple[ExportFormat, ...]:
        """The formats to write: `formats`, plus merged when `mergeAdapter` is set, in `ExportFormat` order."""
        wanted = set(self.formats or ()) | ({"merged"} if self.merge_adapter else set())
        return tuple(f for f in get_args(ExportFormat) if f in wanted)


def _onnx_task_rule(task: str, why: str) -> Rule:
    return Rule(
        field="output.formats",
        message=f"output.formats onnx cannot export task.type {task}: {why}; remove onnx (merged works)",
        check=lambda s: s.task.type != task or "onnx" not in (s.output.formats or ()),
        cel=f"self.task.type != '{task}' || !has(self.output.formats) || !('onnx' in self.output.formats)",
    )


EXPORT_RULES: tuple[Rule, ...] = (
    Rule(
        field="output.formats",
        message="output.formats merged needs an adapter method (lora, qlora, dora): a full fine-tune is already a "
        "whole model; remove merged",
        check=lambda s: s.method.type != "full" or "merged" not in (s.output.formats or ()),
        cel="self.method.type != 'full' || !has(self.output.formats) || !('merged' in self.output.formats)",
    ),
    *(_onnx_task_rule(task, why) for task, why in ONNX_UNSUPPORTED_TASKS.items()),
)
"""Rules of the whole spec (`FineTuneJobSpec`) on `output.formats`: what each format can export."""


class RunPolicy(ApiModel):
    """Start, retry and stop behaviour. These fields may change at any time."""

    suspend: bool = Field(
        default=False,
        description="Stop the run (pods are deleted, checkpoints kept) while true; resumes from a checkpoint when set back.",
    )
    backoff_limit: int = Field(
        default=3, ge=0, le=100, description="Pod failures tolerated before the job fails."
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Fail the run once it has been active this long, in seconds."
    )
    queue_name: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS_LABEL,
        description="Kueue LocalQueue to admit the workload through (label kueue.x-k8s.io/queue-name).",
    )
    resume_from_checkpoint: bool = Field(
        default=True,
        description="After a pod loss or suspension, continue from the newest complete checkpoint.",
    )
    workload_priority_class: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS_SUBDOMAIN,
        description=(
            "Kueue WorkloadPriorityClass (label kueue.x-k8s.io/priority-class): the workload's place in its queue "
            "and which admitted workloads it may preempt. Needs queueName."
        ),
    )

    rules = (
        Rule(
            field="workloadPriorityClass",
            message="runPolicy.workloadPriorityClass needs runPolicy.queueName (Kueue admits queued jobs only)",
            check=lambda p: p.workload_priority_class is None or p.queue_name is not None,
            cel="!has(self.workloadPriorityClass) || has(self.queueName)",
        ),
    )
