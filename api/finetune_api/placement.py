"""`spec.resources`: what each training pod asks for and where it may run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from finetune_api.base import ApiModel, Rule
from finetune_api.common import DnsSubdomain, Quantity


class GpuSpec(ApiModel):
    """GPUs per node."""

    count: int = Field(default=1, ge=0, le=16, description="GPUs per node (nvidia.com/gpu). 0 trains on CPU.")
    product: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9][-_.A-Za-z0-9]*$",
        description="Required GPU model, matched against the node label nvidia.com/gpu.product, e.g. NVIDIA-A100-SXM4-80GB.",
    )
    min_memory_gib: int | None = Field(
        default=None,
        ge=1,
        alias="minMemoryGiB",
        le=4096,
        description="Least memory per GPU in GiB, matched against the node label nvidia.com/gpu.memory.",
    )


class Toleration(ApiModel):
    """A pod toleration (same fields as the core API's Toleration)."""

    key: str | None = Field(
        default=None, max_length=316, description="Taint key; empty with Exists tolerates all."
    )
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(default=None, max_length=63, description="Taint value to match with Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="How long a NoExecute taint is tolerated."
    )


class ResourcesSpec(ApiModel):
    """Compute per node and placement. May change while the job is suspended; applies on the next start."""

    gpu: GpuSpec | None = Field(
        default=None,
        description="GPUs per node. When unset: 1 GPU for real presets and URIs, none for tiny presets.",
    )
    cpu: Quantity | None = Field(default=None, description="CPU request and limit per node, e.g. 8 or 7500m.")
    memory: Quantity | None = Field(default=None, description="Memory request and limit per node, e.g. 64Gi.")
    shared_memory_size: Quantity = Field(
        default="2Gi", description="Size of /dev/shm (memory-backed), used by data loaders and NCCL."
    )
    instance_type: str | None = Field(
        default=None,
        max_length=128,
        description="Required node instance type (label node.kubernetes.io/instance-type), e.g. Standard_NC24ads_A100_v4.",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, max_length=64, description="Extra node labels the pods require."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=64,
        description="Extra tolerations. A toleration for the nvidia.com/gpu taint is added whenever GPUs are requested.",
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
        description="A core/v1 Affinity for the pods, merged with the affinity the GPU fields produce.",
    )
    priority_class_name: DnsSubdomain | None = Field(default=None, description="PriorityClass of the pods.")

    rules = (
        Rule(
            field="gpu",
            message="resources.gpu.product and minMemoryGiB need resources.gpu.count ≥ 1",
            check=lambda r: (
                r.gpu is None or r.gpu.count > 0 or (r.gpu.product is None and r.gpu.min_memory_gib is None)
            ),
            cel="!has(self.gpu) || self.gpu.count > 0 || (!has(self.gpu.product) && !has(self.gpu.minMemoryGiB))",
        ),
    )
