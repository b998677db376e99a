"""Where the pods read and write: the output PVC, the volumes and mounts, and the trainer's paths (pure).

- Output and checkpoints: `spec.output.uri` pvc://claim/path mounts that claim at /output and writes under
  `/output/<path>`; when unset, a PVC the operator creates (`names.output_pvc`) is mounted at /output. It is not
  owned by the FineTuneJob: deleting the job keeps the trained result (delete the PVC to clean up). Multi-node jobs
  need storage every rank can reach (ZeRO checkpoints are written per rank), so their PVC asks for
  `Settings.multi_node_access_mode` (ReadWriteMany by default). s3:// and oci:// outputs use that PVC too, owned by
  the job this time (it holds only the checkpoints and the result before upload): the trainer writes the result
  there, then uploads or pushes it, and a pod that is lost resumes from the checkpoints on it.
- Registry auth of oci:// URIs: the role's kubernetes.io/dockerconfigjson Secret mounted read-only as
  `registry_auth_dir(role)/config.json` (`registry_auth`).
- pvc:// datasets (`dataset.uri`, `evaluation.datasetUri`) and models: the claim mounted read-only at
  /data/<claim>; configmap:// datasets: the ConfigMap mounted at /data/<name>. The trainer looks up `<dataDir>/<claim>/<path>` (see trainer_image/README.md).
- The config at `CONFIG_MOUNT_DIR`, memory-backed /dev/shm, and emptyDirs for the cache and /tmp (the root
  filesystem is read-only).
"""

from __future__ import annotations

from typing import Any

from finetune_api.references import DOCKER_CONFIG_KEY, secret_refs
from finetune_api.trainer import CONFIG_FILE_NAME, CONFIG_MOUNT_DIR, TrainerPaths, registry_auth_dir
from finetune_api.uris import scheme_of

from finetune_operator import names
from finetune_operator.builders.meta import Owner, metadata
from finetune_operator.config import Settings

OUTPUT_MOUNT = "/output"
DATA_MOUNT = "/data"
CACHE_MOUNT = "/cache"


def _claim_and_path(uri: str) -> tuple[str, str]:
    claim, _, path = uri.split("://", 1)[1].partition("/")
    return claim, path.strip("/")


def _operator_claim(owner: Owner) -> bool:
    """Whether the operator creates the output PVC: no output.uri, or an s3:// / oci:// one (staging, checkpoints)."""
    uri = owner.job.spec.output.uri
    return uri is None or scheme_of(uri) in ("s3", "oci")


def output_claim(owner: Owner) -> str:
    """The claim mounted at /output: the pvc:// output's, else the one the operator creates."""
    uri = owner.job.spec.output.uri
    return (
        _claim_and_path(uri)[0]
        if uri is not None and scheme_of(uri) == "pvc"
        else names.output_pvc(owner.name)
    )


def paths(owner: Owner) -> TrainerPaths:
    """The trainer's paths inside the pod."""
    uri = owner.job.spec.output.uri
    inner = _claim_and_path(uri)[1] if uri is not None and scheme_of(uri) == "pvc" else ""
    output = f"{OUTPUT_MOUNT}/{inner}".rstrip("/")
    return TrainerPaths(output_dir=output, checkpoint_dir=f"{output}/checkpoints", cache_dir=CACHE_MOUNT,
                        data_dir=DATA_MOUNT)  # fmt: skip


def output_pvc(owner: Owner, settings: Settings) -> dict[str, Any] | None:
    """The PVC the operator creates when `spec.output.uri` is unset (the results: kept after the job) or s3:// or
    oci:// (checkpoints and staging: deleted with the job)."""
    if not _operator_claim(owner):
        return None
    multi_node = owner.job.spec.distributed.nodes > 1
    spec: dict[str, Any] = {
        "accessModes": [settings.multi_node_access_mode if multi_node else "ReadWriteOnce"],
        "resources": {"requests": {"storage": settings.output_storage_size}},
    }
    if settings.output_storage_class:
        spec["storageClassName"] = settings.output_storage_class
    meta = metadata(
        owner, names.output_pvc(owner.name), "output", owned=owner.job.spec.output.uri is not None
    )
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}


def _input_volumes(owner: Owner) -> list[tuple[str, dict[str, Any]]]:
    """(mount name, volume source) of each distinct pvc:// or configmap:// input."""
    spec, found = owner.job.spec, {}
    for uri in (spec.model.uri, spec.dataset.uri, spec.evaluation.dataset_uri):
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
    volumes.append({"name": "output", "persistentVolumeClaim": {"claimName": output_claim(owner)}})
    mounts.append({"name": "output", "mountPath": OUTPUT_MOUNT})
    auth_volumes, auth_mounts = registry_auth(owner)
    volumes += auth_volumes
    mounts += auth_mounts
    for index, (name, source) in enumerate(_input_volumes(owner)):
        volumes.append({"name": f"input-{index}", **source})
        mounts.append({"name": f"input-{index}", "mountPath": f"{DATA_MOUNT}/{name}", "readOnly": True})
    return volumes, mounts


def registry_auth(owner: Owner) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) putting each oci:// role's Secret at `registry_auth_dir(role)/config.json`."""
    volumes, mounts = [], []
    for use in secret_refs(owner.job.spec):
        if use.scheme != "oci":
            continue
        item = {"key": use.ref.key or DOCKER_CONFIG_KEY, "path": "config.json"}
        volumes.append(
            {"name": f"registry-{use.role}", "secret": {"secretName": use.ref.name, "items": [item]}}
        )
        mounts.append(
            {"name": f"registry-{use.role}", "mountPath": registry_auth_dir(use.role), "readOnly": True}
        )
    return volumes, mounts
