"""The operator's settings: read once from the environment (the Helm chart sets them), passed to the builders.

Every field has a `FINETUNE_<NAME>` environment variable (e.g. `FINETUNE_TRAINER_IMAGE`). Builders take the
settings as an argument, so they stay pure and tests pass their own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Annotated, Literal

from finetune_api.placement import Toleration
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

ENV_PREFIX = "FINETUNE_"


def _split(value: object) -> object:
    return (
        tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value
    )


CommaSeparated = Annotated[tuple[str, ...], BeforeValidator(_split)]
"""A tuple of strings, written in the environment as `a,b,c`."""


def _json(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(f"expected JSON ({err})") from None


Labels = Annotated[dict[str, str], BeforeValidator(_json)]
"""Node labels, written in the environment as a JSON object."""
Tolerations = Annotated[tuple[Toleration, ...], BeforeValidator(_json)]
"""Pod tolerations, written in the environment as a JSON list (the core API's field names)."""


class Settings(BaseModel):
    """What a platform team configures once per installation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trainer_image: str = Field(
        default="finetune-trainer:dev", description="Image of the training pods (the trainer_image/ build)."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Pull policy of the training pods."
    )
    image_pull_secrets: CommaSeparated = Field(
        default=(),
        description="Secrets in the job's namespace for pulling the trainer image (comma-separated names).",
    )
    service_account: str | None = Field(
        default=None,
        description="ServiceAccount of the training pods (none needs API access); default: the namespace's.",
    )
    allow_trust_remote_code: bool = Field(
        default=False,
        description="Whether jobs may set model.trustRemoteCode, which runs the model repository's Python in the "
        "training pod; when false (the default) the webhook and the operator refuse such jobs.",
    )
    insecure_registries: CommaSeparated = Field(
        default=(),
        description="Registries (host or host:port) the training pods reach over plain HTTP for oci:// models and "
        "outputs (comma-separated); loopback addresses always are. For in-cluster registries without TLS.",
    )
    trainer_node_selector: Labels = Field(
        default_factory=dict,
        description="Node labels every training pod requires, e.g. a training node pool (JSON object); a job's "
        "resources.nodeSelector adds to them and wins on a shared key.",
    )
    trainer_tolerations: Tolerations = Field(
        default=(),
        description="Tolerations of every training pod (JSON list), before the job's own resources.tolerations.",
    )
    namespaces: CommaSeparated = Field(
        default=(), description="Namespaces to watch (comma-separated); empty watches the whole cluster."
    )
    output_storage_size: str = Field(
        default="20Gi",
        description="Size of the output PVC the operator creates when spec.output.uri is unset.",
    )
    output_storage_class: str | None = Field(
        default=None, description="StorageClass of that PVC; default: the cluster's default class."
    )
    multi_node_access_mode: Literal["ReadWriteMany", "ReadWriteOnce"] = Field(
        default="ReadWriteMany",
        description="Access mode of the output PVC for multi-node jobs: every rank writes its checkpoint shard.",
    )
    stall_after_seconds: float = Field(
        default=300.0, ge=0, description="Pods unschedulable this long turn the job Stalled."
    )
    progress_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often a running job's metrics are polled; status is written at most this often.",
    )
    propagate_annotation_prefixes: CommaSeparated = Field(
        default=(),
        description="FineTuneJob annotations with these key prefixes are copied to the training pods (comma-separated).",
    )
    leader_election: bool = Field(
        default=True, description="Run only while holding the Lease (one active replica)."
    )
    lease_name: str = Field(default="finetune-operator", description="Name of the leader-election Lease.")
    lease_namespace: str = Field(
        default="default", description="Namespace of the Lease (the operator's own)."
    )
    health_port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="Probe port (/healthz liveness, /readyz readiness); 0 disables.",
    )
    metrics_port: int = Field(
        default=8000, ge=0, le=65535, description="The operator's Prometheus port; 0 disables."
    )
    webhook_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="HTTPS port of the validating admission webhook (served by the leader); 0 disables it.",
    )
    webhook_cert_dir: str = Field(
        default="/etc/finetune-operator/webhook",
        description="Folder with the webhook's tls.crt and tls.key (a kubernetes.io/tls Secret), re-read on change.",
    )
    watch_timeout_seconds: int = Field(
        default=300,
        ge=10,
        description="Server-side timeout of each watch request; watches are re-opened after it.",
    )
    log_format: Literal["json", "plain"] = Field(default="json", description="Log line format.")


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `FINETUNE_*` variables; raises ValueError naming the variable on a bad value."""
    environ = os.environ if environ is None else environ
    values = {
        name: environ[ENV_PREFIX + name.upper()]
        for name in Settings.model_fields
        if ENV_PREFIX + name.upper() in environ
    }
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"bad operator setting: {problems}") from None
