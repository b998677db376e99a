"""The trainer's config: the JSON the operator writes into a ConfigMap and `finetune run` writes to a temp file.

It carries the job's spec unchanged (so the operator and the trainer cannot disagree about a field) plus the
run-time facts the spec leaves open: where to read and write inside the pod, and which port serves metrics.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from finetune_operator.api.job import FineTuneJob, FineTuneJobSpec

CONFIG_FILE_NAME = "trainer-config.json"


class TrainerPaths(BaseModel):
    """Where the trainer reads and writes. Pods mount volumes at these paths; `finetune run` uses local folders."""

    model_config = ConfigDict(extra="forbid")

    output_dir: str = Field(default="/output", description="Final adapter or model, manifest.json.")
    checkpoint_dir: str = Field(default="/output/checkpoints", description="Resumable checkpoints.")
    cache_dir: str = Field(
        default="/cache", description="Downloaded models and datasets, built tiny presets."
    )
    data_dir: str = Field(default="/data", description="Mount point of pvc:// and configmap:// datasets.")
    termination_message_path: str = Field(
        default="/dev/termination-log", description="Where the end-of-run summary JSON is written."
    )


class TrainerConfig(BaseModel):
    """Everything the trainer needs to run one FineTuneJob."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The FineTuneJob's name.")
    namespace: str = Field(default="default", description="The FineTuneJob's namespace.")
    spec: FineTuneJobSpec
    paths: TrainerPaths = Field(default_factory=TrainerPaths)
    metrics_port: int = Field(
        default=9400, ge=0, le=65535, description="Prometheus port on rank 0 (0 disables)."
    )
    max_steps_override: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many steps whatever the spec says (`finetune run --max-steps`).",
    )


def trainer_config(job: FineTuneJob, paths: TrainerPaths | None = None) -> TrainerConfig:
    """The trainer config for `job` (pure)."""
    return TrainerConfig(
        name=job.metadata.name or job.metadata.generate_name or "finetunejob",
        namespace=job.metadata.namespace or "default",
        spec=job.spec,
        paths=paths or TrainerPaths(),
    )
