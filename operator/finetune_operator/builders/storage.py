"""Where the pods read and write: the output PVC, the volumes and mounts, and the trainer's paths (pure).

- Output and checkpoints: `spec.output.uri` pvc://claim/path mounts that claim at /output and writes under
  `/output/<path>`; when unset, a PVC the operator creates (`names.output_pvc`) is mounted at /output. It is not
  owned by the FineTuneJob: deleting the job keeps the trained result (delete the PVC to clean up). Multi-node jobs
  need storage every rank can reach (ZeRO checkpoints are written per rank), so their PVC asks for
  `Settings.multi_node_access_mode` (ReadWriteMany by default). s3:// and oci:// outputs are staged in an emptyDir
  at /output before the trainer uploads them.
- pvc:// datasets and models: the claim mounted read-only at /data/<claim>; configmap:// datasets: the ConfigMap
  mounted at /data/<name>. The trainer looks up `<dataDir>/<claim>/<path>` (see trainer_image/README.md).
- The config at `CONFIG_MOUNT_DIR`, memory-backed /dev/shm, and emptyDirs for the cache and /tmp (the root
  filesystem is read-only).
"""

from __future__ import annotations

from typing import Any

from finetune_operator import names
from finetune_operator.api.trainer import CONFIG_FILE_NAME, CONFIG_MOUNT_DIR, TrainerPaths
from finetune_operator.api.uris import scheme_of
from finetune_operator.builders.meta import Owner, metadata
from finetune_operator.config import Settings

OUTPUT_MOUNT = "/output"
DATA_MOUNT = "/data"
CACHE_MOUNT = "/cache"


def _claim_and_path(uri: str) -> tuple[str, str]:
    claim, _, path = uri.split("://", 1)[1].partition("/")
    return claim, path.strip("/")


def output_claim(owner: Owner) -> str | None:
    """The claim results go to, or None when they go to s3:// or oci:// (uploaded by the trainer)."""
    uri = owner.job.spec.output.uri
    if uri is None:
        return names.output_pvc(owner.name)
    return _claim_and_path(uri)[0] if scheme_of(uri) == "pvc" else None


def paths(owner: Owner) -> TrainerPaths:
    """The trainer's paths inside the pod."""
    uri = owner.job.spec.output.uri
    inner = _claim_and_path(uri)[1] if uri is not None and scheme_of(uri) == "pvc" else ""
    output = f"{OUTPUT_MOUNT}/{inner}".rstrip("/")
    return TrainerPaths(output_dir=output, checkpoint_dir=f"{output}/checkpoints", cache_dir=CACHE_MOUNT,
                        data_dir=DATA_MOUNT)  # fmt: skip


def output_pvc(owner: Owner, settings: Settings) -> dict[str, Any] | None:
    """The PVC the operator creates for results when `spec.output.uri` is unset (kept after the job)."""
    if owner.job.spec.output.uri is not None:
        return None
    multi_node = owner.job.spec.distributed.nodes > 1
    spec: dict[str, Any] = {
        "accessModes": [settings.multi_node_access_mode if multi_node else "ReadWriteOnce"],
        "resources": {"requests": {"storage": settings.output_storage_size}},
    }
    if settings.output_storage_class:
        spec["storageClassName"] = settings.output_storage_class
    meta = metadata(owner, names.output_pvc(owner.name), "output", owned=False)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}


def _input_volumes(owner: Owner) -> list[tuple[str, dict[str, Any]]]:
    """(mount name, volume source) of each distinct pvc:// or configmap:// input."""
    spec, found = owner.job.spec, {}
    for uri in (spec.model.uri, spec.dataset.uri):
        if uri is None or scheme_of(uri) not in ("pvc", "configmap"):
            continue
        volume = _claim_and_path(uri)[0]
        if scheme_of(uri) == "pvc":
            found[volume] = {"persistentVolumeClaim": {"claimName": volume, "readOnly": True}}
        else:
            found[volume] = {"configMap": {"name": volume}}
    return sorted(found.items())


def volumes_and_mounts(owner: Owner) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes and the trainer container's mounts."""
    shm = owner.job.spec.resources.shared_memory_size
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": names.config_map(owner.name),
                                         "items": [{"key": CONFIG_FILE_NAME, "path": CONFIG_FILE_NAME}]}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
        {"name": "cache", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]  # fmt: skip
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_MOUNT_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "cache", "mountPath": CACHE_MOUNT},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    claim = output_claim(owner)
    source = {"persistentVolumeClaim": {"claimName": claim}} if claim else {"emptyDir": {}}  # s3/oci: staging
    volumes.append({"name": "output", **source})
    mounts.append({"name": "output", "mountPath": OUTPUT_MOUNT})
    for index, (name, source) in enumerate(_input_volumes(owner)):
        volumes.append({"name": f"input-{index}", **source})
        mounts.append({"name": f"input-{index}", "mountPath": f"{DATA_MOUNT}/{name}", "readOnly": True})
    return volumes, mounts
