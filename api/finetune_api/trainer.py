"""The pod contract: what the operator and the trainer agree on, imported by both sides (pydantic only).

- The trainer config: the JSON the operator writes into a ConfigMap (mounted at `CONFIG_PATH`) and `finetune run`
  writes to a temp file. It carries the job's spec unchanged (so the two sides cannot disagree about a field) plus
  the run-time facts the spec leaves open: where to read and write inside the pod, and which port serves metrics.
  camelCase throughout, like the spec it embeds.
- The termination message: the trainer's end-of-run summary, which Kubernetes copies into the pod status and the
  operator parses into `status.result` or a Failed condition.
- Exit codes, metric names, the metrics port and the rendezvous environment of multi-node runs.
- Where s3:// and oci:// credentials reach the trainer: per storage role (model, dataset, output), so that each may
  name its own Secret (`credential_prefix`, `registry_auth_dir`).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Literal

from pydantic import Field

from finetune_api.base import ApiModel
from finetune_api.job import FineTuneJob, FineTuneJobSpec

CONFIG_FILE_NAME = "trainer-config.json"
CONFIG_MOUNT_DIR = "/etc/finetune"
CONFIG_PATH = f"{CONFIG_MOUNT_DIR}/{CONFIG_FILE_NAME}"
"""Where the pods find the trainer config (the image's default `--config`)."""

METRICS_PORT = 9400
"""Rank 0's Prometheus port in the pods; the operator polls it for `status.progress`."""

TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4096
"""Kubernetes keeps at most 4 KiB of a termination message."""

ENV_TERMINATION_MESSAGE_PATH = "TERMINATION_MESSAGE_PATH"
"""Overrides `paths.terminationMessagePath` (tests and local runs)."""

# Multi-node rendezvous: the operator's Indexed Job and headless Service provide these; `launch.py` reads them.
ENV_MASTER_ADDR = "MASTER_ADDR"
"""Stable DNS name of node 0 (pod index 0 under the headless Service)."""
ENV_MASTER_PORT = "MASTER_PORT"
ENV_NODE_RANK = "JOB_COMPLETION_INDEX"
"""Set by Kubernetes on every pod of an Indexed Job."""
ENV_NODE_RANK_FALLBACK = "NODE_RANK"
DEFAULT_MASTER_PORT = 29500

StorageRole = Literal["model", "dataset", "output"]
"""Which field a storage URI and its Secret belong to: spec.model, spec.dataset or spec.output."""

INSECURE_REGISTRIES_ENV = "FINETUNE_INSECURE_REGISTRIES"
"""Comma-separated registry hosts (host or host:port) the trainer speaks plain HTTP to; loopback hosts always are.
The operator's setting of the same name is passed to every training pod."""

REGISTRY_AUTH_ROOT = "/var/run/finetune/registry"
"""Where the pods mount each role's kubernetes.io/dockerconfigjson Secret, as `<role>/config.json`."""


def credential_prefix(role: StorageRole) -> str:
    """The prefix of the environment variables carrying `role`'s credentials, e.g. FINETUNE_OUTPUT_: the operator
    exposes an s3:// Secret's keys as FINETUNE_OUTPUT_AWS_ACCESS_KEY_ID..., and an oci:// Secret's folder as
    FINETUNE_OUTPUT_DOCKER_CONFIG. The trainer falls back to the plain names (AWS_*, DOCKER_CONFIG), which is how
    `finetune run` passes the local environment."""
    return f"FINETUNE_{role.upper()}_"


def registry_auth_dir(role: StorageRole) -> str:
    """The folder holding `role`'s docker config.json in the pods (a DOCKER_CONFIG folder)."""
    return f"{REGISTRY_AUTH_ROOT}/{role}"


class ExitCode(IntEnum):
    """The trainer's exit codes; the operator's pod failure policy keys on them."""

    SUCCEEDED = 0
    FAILED = 1
    """The run failed; the termination message says why. Retried up to runPolicy.backoffLimit."""
    INVALID_CONFIG = 2
    """The config (or data) can never work: retrying is pointless, the job fails at once."""
    INTERRUPTED = 143
    """Stopped by SIGTERM (suspension, preemption, node drain) after saving a checkpoint: not a failure of the run.

    Never 0, or the Job controller would count the deleted pod as a completion (a deleted pod whose containers
    exit 0 ends Succeeded). 143 = 128 + SIGTERM, what a shell reports for a process SIGTERM ended.
    """


class Metric(StrEnum):
    """Prometheus gauges served by rank 0 on the metrics port."""

    STEP = "finetune_trainer_step"
    TOTAL_STEPS = "finetune_trainer_total_steps"
    EPOCH = "finetune_trainer_epoch"
    LOSS = "finetune_trainer_loss"
    EVAL_LOSS = "finetune_trainer_eval_loss"
    LEARNING_RATE = "finetune_trainer_learning_rate"
    GRAD_NORM = "finetune_trainer_grad_norm"
    TOKENS_PER_SECOND = "finetune_trainer_tokens_per_second"
    ETA_SECONDS = "finetune_trainer_eta_seconds"
    GPU_MEMORY_ALLOCATED_BYTES = "finetune_trainer_gpu_memory_allocated_bytes"
    GPU_MEMORY_PEAK_BYTES = "finetune_trainer_gpu_memory_peak_bytes"


class TrainerPaths(ApiModel):
    """Where the trainer reads and writes. Pods mount volumes at these paths; `finetune run` uses local folders."""

    output_dir: str = Field(default="/output", description="Final adapter or model, manifest.json.")
    checkpoint_dir: str = Field(default="/output/checkpoints", description="Resumable checkpoints.")
    cache_dir: str = Field(
        default="/cache", description="Downloaded models and datasets, built tiny presets."
    )
    data_dir: str = Field(default="/data", description="Mount point of pvc:// and configmap:// datasets.")
    termination_message_path: str = Field(
        default=TERMINATION_MESSAGE_PATH, description="Where the end-of-run summary JSON is written."
    )


class TrainerConfig(ApiModel):
    """Everything the trainer needs to run one FineTuneJob."""

    name: str = Field(description="The FineTuneJob's name (its real name, also for generateName jobs).")
    namespace: str = Field(default="default", description="The FineTuneJob's namespace.")
    uid: str | None = Field(
        default=None, description="The FineTuneJob's metadata.uid: which run a checkpoint belongs to."
    )
    spec: FineTuneJobSpec
    paths: TrainerPaths = Field(default_factory=TrainerPaths)
    metrics_port: int = Field(
        default=METRICS_PORT, ge=0, le=65535, description="Prometheus port on rank 0 (0 disables)."
    )
    max_steps_override: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many steps whatever the spec says (`finetune run --max-steps`).",
    )
    origins: dict[str, str] | None = Field(
        default=None,
        description="The local files `finetune run --model DIR` and `--dataset FILE` stand in for: their volume URI "
        "→ the absolute path, which the result then names instead (`finetune_trainer.provenance`).",
    )


class TerminationMessage(ApiModel):
    """The trainer's end-of-run summary (compact JSON, at most `TERMINATION_MESSAGE_LIMIT` bytes).

    Succeeded: `output` (the exact location written: the folder, s3://bucket/prefix, or for oci:// the reference
    with the manifest's digest), `digest` (what a user pulls or verifies by: for oci:// the OCI manifest's digest,
    otherwise the sha256 of manifest.json), `metrics`, and per-file `digests` when they fit. Failed: `reason` (CamelCase, e.g. InvalidConfig, DataError) and `message`.
    """

    status: Literal["Succeeded", "Failed"]
    output: str | None = None
    digest: str | None = None
    metrics: dict[str, float | None] = Field(default_factory=dict)
    digests: dict[str, str] | None = None
    reason: str | None = None
    message: str | None = None

    def to_json(self) -> str:
        """Compact JSON within the limit: per-file digests are dropped first, then the message is cut."""
        text = self.model_dump_json(exclude_none=True)
        if len(text.encode()) > TERMINATION_MESSAGE_LIMIT and self.digests is not None:
            text = self.model_copy(update={"digests": None}).model_dump_json(exclude_none=True)
        if len(text.encode()) > TERMINATION_MESSAGE_LIMIT and self.message:
            over = len(text.encode()) - TERMINATION_MESSAGE_LIMIT
            cut = self.message.encode()[: max(0, len(self.message.encode()) - over - 3)]
            short = cut.decode(errors="ignore") + "…"
            text = self.model_copy(update={"message": short}).model_dump_json(exclude_none=True)
        return text


def failed(reason: str, message: str) -> TerminationMessage:
    """A Failed termination message."""
    return TerminationMessage(status="Failed", reason=reason, message=message)


def trainer_config(job: FineTuneJob, paths: TrainerPaths | None = None) -> TrainerConfig:
    """The trainer config for a created `job` (pure). Needs the real name: the API server's, for generateName."""
    if not job.metadata.name:
        raise ValueError("trainer_config needs the job's name (for generateName jobs: the name it was given)")
    uid = (job.metadata.model_extra or {}).get("uid")
    return TrainerConfig(
        name=job.metadata.name,
        namespace=job.metadata.namespace or "default",
        uid=uid if isinstance(uid, str) else None,
        spec=job.spec,
        paths=paths or TrainerPaths(),
    )
