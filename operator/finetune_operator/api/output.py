"""`spec.output` and `spec.runPolicy`: where the result goes, and how the run is started, retried and stopped."""

from __future__ import annotations

from pydantic import Field, field_validator

from finetune_operator.api.base import ApiModel, Rule
from finetune_operator.api.common import DNS_LABEL, DNS_SUBDOMAIN, SecretRef
from finetune_operator.api.uris import OUTPUT_SCHEMES, check_uri


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
        description="Also write the base model with the adapter merged in (lora, qlora, dora), ready to serve.",
    )

    @field_validator("uri")
    @classmethod
    def _uri_scheme(cls, uri: str | None) -> str | None:
        return None if uri is None else check_uri(uri, OUTPUT_SCHEMES)


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
