"""`status`: what the operator reports back. Written only by the operator, through the status subresource."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import Field

from finetune_api.base import ApiModel

Phase = Literal["Pending", "Queued", "Running", "Succeeded", "Failed", "Suspended"]
PHASES: tuple[Phase, ...] = get_args(Phase)

ConditionType = Literal[
    "Ready",
    "Reconciling",
    "Stalled",
    "Admitted",
    "Training",
    "Complete",
    "Failed",
    "Suspended",
    "Provisioning",
]
"""Ready/Reconciling/Stalled follow kstatus (read by Flux and Argo CD); the others are this kind's own (Provisioning
only where Karpenter runs)."""
CONDITION_TYPES: tuple[ConditionType, ...] = get_args(ConditionType)


class Condition(ApiModel):
    """A metav1.Condition."""

    type: str = Field(max_length=316, description=f"Condition type, one of {', '.join(CONDITION_TYPES)}.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this reflects."
    )
    last_transition_time: datetime = Field(description="When the status last changed.")
    reason: str = Field(
        max_length=1024,
        pattern=r"^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$",
        description="CamelCase reason for the last transition.",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details.")


class Progress(ApiModel):
    """Training progress, scraped from the trainer's metrics."""

    step: int | None = Field(default=None, ge=0, description="Optimizer steps done.")
    total_steps: int | None = Field(default=None, ge=0, description="Optimizer steps the run will take.")
    epoch: float | None = Field(default=None, ge=0, description="Epochs done (fractional).")
    loss: float | None = Field(default=None, description="Latest training loss.")
    eval_loss: float | None = Field(default=None, description="Latest evaluation loss.")
    learning_rate: float | None = Field(default=None, ge=0, description="Current learning rate.")
    tokens_per_second: float | None = Field(
        default=None, ge=0, description="Training throughput over all ranks."
    )
    eta_seconds: int | None = Field(default=None, ge=0, description="Estimated seconds to completion.")
    percent: int | None = Field(default=None, ge=0, le=100, description="step / totalSteps as a percentage.")
    last_updated: datetime | None = Field(default=None, description="When these numbers were read.")


class Result(ApiModel):
    """What a successful run produced."""

    artifact_uri: str | None = Field(
        default=None,
        description=(
            "Exactly where the adapter or model was written: the folder on the output volume, s3://bucket/prefix, "
            "or oci://registry/repository@sha256:… (the pushed manifest's digest)."
        ),
    )
    digest: str | None = Field(
        default=None,
        description=(
            "What to fetch or verify the result by: for oci:// the OCI manifest's digest (pull by it), otherwise "
            "the sha256 of the result's manifest.json."
        ),
    )
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Final metrics: train_loss, eval_loss, …"
    )


class Workload(ApiModel):
    """Names of the objects the operator created for this job."""

    job_name: str | None = Field(default=None, description="The batch Job (or JobSet) running the trainer.")
    config_map_name: str | None = Field(default=None, description="The ConfigMap holding the trainer config.")
    service_name: str | None = Field(
        default=None, description="The headless Service for multi-node rendezvous."
    )
    pvc_name: str | None = Field(
        default=None, description="The PersistentVolumeClaim for output and checkpoints."
    )


class MemoryEstimate(ApiModel):
    """The GPU-fit estimate (`api/memory.py`): peak memory per GPU, and whether it fits the GPUs asked for."""

    gpu_memory_gib: float = Field(
        alias="gpuMemoryGiB", ge=0, description="Estimated peak memory of one GPU during training, in GiB."
    )
    capacity_gib: float | None = Field(
        default=None,
        alias="capacityGiB",
        ge=0,
        description="Memory of one GPU as the spec asks for it: the larger of resources.gpu.minMemoryGiB and the product's.",
    )
    fits: bool | None = Field(
        default=None,
        description="Whether the estimate fits capacityGiB; unset when the spec names neither.",
    )


class FineTuneJobStatus(ApiModel):
    """Observed state of a FineTuneJob."""

    phase: Phase | None = Field(
        default=None, description="Pending, Queued, Running, Succeeded, Failed or Suspended."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Latest observations, one per type.",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation last acted on."
    )
    start_time: datetime | None = Field(default=None, description="When training started.")
    completion_time: datetime | None = Field(default=None, description="When the run succeeded or failed.")
    progress: Progress | None = Field(default=None, description="Training progress.")
    result: Result | None = Field(
        default=None,
        description="Artifacts and final metrics of a successful run. Absent when the trainer wrote none (its pod was killed after the last step, or the image is not finetune-trainer): the Ready and Complete conditions then have reason ResultMissing, a Warning Event ResultMissing is posted, and Argo CD and Flux read the job as Degraded and Failed (gitops/README.md).",
    )
    workload: Workload | None = Field(default=None, description="Objects created for this job.")
    estimate: MemoryEstimate | None = Field(
        default=None,
        description="The GPU-fit estimate: peak memory per GPU (jobs on GPUs with a preset model; none for model.uri).",
    )
    message: str | None = Field(
        default=None, max_length=32768, description="Human-readable summary of the state."
    )
