"""The training pod template: container, resources, placement, security and secrets (pure).

- GPUs: `nvidia.com/gpu` requests = limits; the product and the least memory per GPU are matched to the labels
  the NVIDIA GPU feature discovery puts on nodes (`nvidia.com/gpu.product`, `nvidia.com/gpu.memory` in MiB, while
  the spec says GiB); the `nvidia.com/gpu` taint is tolerated whenever GPUs are requested.
- The installation's trainer nodeSelector and tolerations (Settings) come first; the user's nodeSelector (which
  wins on a shared label), tolerations, affinity and priorityClassName are kept; the GPU rules are added to every
  required node-selector term of the user's affinity (terms are ORed, so each one must carry them).
- The restricted Pod Security Standard: uid 10001 (the image's user), no privilege escalation, no capabilities,
  seccomp RuntimeDefault, a read-only root filesystem with emptyDirs where the trainer writes.
- Secrets reach the container only as `secretKeyRef`/`envFrom` of the named Secret, or as a mounted file: never
  copied anywhere. An s3:// Secret's keys get the role's prefix (FINETUNE_OUTPUT_AWS_ACCESS_KEY_ID...), so the
  model, the dataset and the output may each use their own; an oci:// Secret (kubernetes.io/dockerconfigjson) is
  mounted as `<registry_auth_dir(role)>/config.json` (`storage.registry_auth`) and named by
  FINETUNE_<ROLE>_DOCKER_CONFIG.
"""

from __future__ import annotations

import copy
from typing import Any

from finetune_api.references import SecretUse, exposed, secret_refs
from finetune_api.trainer import (
    CONFIG_PATH,
    INSECURE_REGISTRIES_ENV,
    TERMINATION_MESSAGE_PATH,
    credential_prefix,
    registry_auth_dir,
)

from finetune_operator.builders import storage
from finetune_operator.builders.meta import Owner
from finetune_operator.config import Settings

CONTAINER = "trainer"
TRAINER_UID = 10001
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


def _resources(owner: Owner) -> dict[str, Any]:
    res = owner.job.spec.resources
    amounts: dict[str, str] = {}
    if owner.gpus:
        amounts[GPU_RESOURCE] = str(owner.gpus)
    if res.cpu is not None:
        amounts["cpu"] = res.cpu
    if res.memory is not None:
        amounts["memory"] = res.memory
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def _node_selector(owner: Owner, settings: Settings) -> dict[str, str]:
    res = owner.job.spec.resources
    selector = {**settings.trainer_node_selector, **res.node_selector}
    if res.gpu is not None and res.gpu.product is not None:
        selector[GPU_PRODUCT_LABEL] = res.gpu.product
    if res.instance_type is not None:
        selector[INSTANCE_TYPE_LABEL] = res.instance_type
    return selector


def _affinity(owner: Owner) -> dict[str, Any] | None:
    res = owner.job.spec.resources
    affinity = copy.deepcopy(res.affinity) if res.affinity else None
    if res.gpu is None or res.gpu.min_memory_gib is None:
        return affinity
    # Gt is strict: at least N GiB is more than N*1024 - 1 MiB.
    rule = {"key": GPU_MEMORY_LABEL, "operator": "Gt", "values": [str(res.gpu.min_memory_gib * 1024 - 1)]}
    affinity = affinity or {}
    node = affinity.setdefault("nodeAffinity", {})
    required = node.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.setdefault("nodeSelectorTerms", []) or [{}]
    for term in terms:
        term.setdefault("matchExpressions", []).append(rule)
    required["nodeSelectorTerms"] = terms
    return affinity


def _tolerations(owner: Owner, settings: Settings) -> list[dict[str, Any]]:
    tolerations = [t.model_dump(mode="json", by_alias=True, exclude_none=True)
                   for t in (*settings.trainer_tolerations, *owner.job.spec.resources.tolerations)]  # fmt: skip
    gpu_taint = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    if owner.gpus and gpu_taint not in tolerations:
        tolerations.append(gpu_taint)
    return tolerations


def _secret_env(uses: list[SecretUse]) -> list[dict[str, Any]]:
    """The variables exposing the referenced Secrets, each key by its own `secretKeyRef` (never `envFrom`: a Secret
    cannot set LD_PRELOAD, PATH or a proxy): s3:// keys under the role's prefix, oci:// Secrets by the path of their
    mounted docker config."""
    env: list[dict[str, Any]] = []
    seen: set[str] = set()
    for use in uses:
        prefix = credential_prefix(use.role)
        if use.scheme == "oci":
            env.append({"name": f"{prefix}DOCKER_CONFIG", "value": registry_auth_dir(use.role)})
            continue
        for item in exposed(use):
            name = (prefix if use.scheme == "s3" else "") + item.variable
            if name in seen:
                continue
            seen.add(name)
            ref = {"name": use.ref.name, "key": item.key, **({"optional": True} if item.optional else {})}
            env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    return env


def _env(owner: Owner, extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "HF_HOME", "value": f"{storage.CACHE_MOUNT}/hf"},
        {"name": "FINETUNE_JOB_NAME", "value": owner.name},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    return base + extra


def _settings_env(settings: Settings) -> list[dict[str, Any]]:
    """Installation settings the trainer itself reads."""
    if not settings.insecure_registries:
        return []
    return [{"name": INSECURE_REGISTRIES_ENV, "value": ",".join(settings.insecure_registries)}]


def container_security() -> dict[str, Any]:
    """The restricted Pod Security Standard for the trainer container."""
    return {
        "runAsNonRoot": True,
        "runAsUser": TRAINER_UID,
        "runAsGroup": TRAINER_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


PLACEMENT_KEYS = ("nodeSelector", "tolerations", "affinity", "priorityClassName")
"""The pod spec's fields `spec.resources` decides, besides the container's resources."""


def placement(owner: Owner, settings: Settings) -> dict[str, Any]:
    """What `spec.resources` decides of a training pod: the container's `resources` and PLACEMENT_KEYS (None or
    empty when unset)."""
    return {
        "resources": _resources(owner),
        "nodeSelector": _node_selector(owner, settings),
        "tolerations": _tolerations(owner, settings),
        "affinity": _affinity(owner),
        "priorityClassName": owner.job.spec.resources.priority_class_name,
    }


def placement_matches(pod: dict[str, Any], owner: Owner, settings: Settings) -> bool:
    """Whether an existing pod spec (a Job's template) is placed as `spec.resources` now asks (empty = unset)."""
    found = {
        "resources": pod["containers"][0].get("resources"),
        **{key: pod.get(key) for key in PLACEMENT_KEYS},
    }
    wanted = placement(owner, settings)
    return all((found[key] or None) == (wanted[key] or None) for key in wanted)


def pod_spec(owner: Owner, settings: Settings, extra_env: list[dict[str, Any]]) -> dict[str, Any]:
    """The training pod's spec; `extra_env` carries the multi-node rendezvous."""
    spec = owner.job.spec
    volumes, mounts = storage.volumes_and_mounts(owner)
    secret_env = _secret_env(secret_refs(spec))
    where = placement(owner, settings)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": ["--config", CONFIG_PATH],
        "env": _env(owner, extra_env + secret_env + _settings_env(settings)),
        "resources": where.pop("resources"),
        "volumeMounts": mounts,
        "securityContext": container_security(),
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "securityContext": {"runAsNonRoot": True, "fsGroup": TRAINER_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 120,
    }  # fmt: skip
    optional: dict[str, Any] = {
        **where,
        "serviceAccountName": settings.service_account,
        "imagePullSecrets": [{"name": name} for name in settings.image_pull_secrets],
    }
    pod.update({key: value for key, value in optional.items() if value})
    return pod
