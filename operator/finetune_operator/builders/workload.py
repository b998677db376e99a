"""The trainer's ConfigMap, the batch Job and, for multi-node runs, the headless Service (pure).

One node: a plain Job with one pod. `distributed.nodes > 1`: an Indexed Job (completions = parallelism = nodes)
whose pods get stable DNS names `<job>-<index>.<service>` from the headless Service, and the rendezvous environment
the trainer's launcher reads (node 0's name, the port, `JOB_COMPLETION_INDEX` from Kubernetes).

Run policy: `backoffLimit` with a pod failure policy under which disruptions (preemption, node drain: the
DisruptionTarget condition) and the trainer's checkpointed stop on SIGTERM (exit 143) are not counted, and its exit
code 2 (InvalidConfig) fails the job at once;
`activeDeadlineSeconds`; `suspend`; `queueName` labels the Job for Kueue and creates it suspended (Kueue admits it),
`workloadPriorityClass` labels it with Kueue's WorkloadPriorityClass. The pods carry `karpenter.sh/do-not-disrupt`:
Karpenter does not consolidate, expire or replace a node while training runs on it (it may once the pods end).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from finetune_api.trainer import (
    CONFIG_FILE_NAME,
    DEFAULT_MASTER_PORT,
    ENV_MASTER_ADDR,
    ENV_MASTER_PORT,
    ExitCode,
    trainer_config,
)

from finetune_operator import names
from finetune_operator.builders import pod, storage
from finetune_operator.builders.meta import (
    LABEL_JOB_NAME,
    LABEL_KUEUE_PRIORITY,
    LABEL_KUEUE_QUEUE,
    Owner,
    labels,
    metadata,
)
from finetune_operator.config import Settings

KARPENTER_DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
"""Karpenter leaves a node alone while a pod with this annotation runs on it (ignored without Karpenter)."""


def config_map(owner: Owner) -> dict[str, Any]:
    """The ConfigMap holding the trainer config (the spec and the pod paths; no secrets)."""
    config = trainer_config(owner.job, storage.paths(owner))
    config = config.model_copy(update={"name": owner.name, "namespace": owner.namespace, "uid": owner.uid})
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, names.config_map(owner.name), "config"),
        "data": {CONFIG_FILE_NAME: config.model_dump_json(by_alias=True, exclude_none=True)},
    }


def service(owner: Owner) -> dict[str, Any] | None:
    """The headless Service of a multi-node job (None for one node)."""
    if owner.job.spec.distributed.nodes == 1:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, names.service(owner.name), "rendezvous"),
        "spec": {
            "clusterIP": "None",
            "selector": {LABEL_JOB_NAME: owner.name, "app.kubernetes.io/component": "trainer"},
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rendezvous", "port": DEFAULT_MASTER_PORT, "targetPort": DEFAULT_MASTER_PORT}],
        },
    }


def _rendezvous_env(owner: Owner) -> list[dict[str, Any]]:
    if owner.job.spec.distributed.nodes == 1:
        return []
    return [
        {"name": ENV_MASTER_ADDR, "value": names.master_address(owner.name, owner.namespace)},
        {"name": ENV_MASTER_PORT, "value": str(DEFAULT_MASTER_PORT)},
    ]


def pod_failure_policy() -> dict[str, Any]:
    """InvalidConfig fails the job at once; disruptions and SIGTERM stops are not counted against backoffLimit."""
    return {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": pod.CONTAINER, "operator": "In",
                                                  "values": [int(ExitCode.INVALID_CONFIG)]}},
            {"action": "Ignore", "onExitCodes": {"containerName": pod.CONTAINER, "operator": "In",
                                                 "values": [int(ExitCode.INTERRUPTED)]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }  # fmt: skip


def pod_annotations(owner: Owner, settings: Settings) -> dict[str, str]:
    """The job's annotations whose keys start with one of `Settings.propagate_annotation_prefixes`."""
    prefixes = settings.propagate_annotation_prefixes
    annotations = owner.job.metadata.annotations
    return {key: value for key, value in annotations.items() if prefixes and key.startswith(prefixes)}


def job(owner: Owner, settings: Settings) -> dict[str, Any]:
    """The batch Job running the trainer (Indexed for several nodes)."""
    spec, nodes = owner.job.spec, owner.job.spec.distributed.nodes
    policy = spec.run_policy
    annotations = {KARPENTER_DO_NOT_DISRUPT: "true", **pod_annotations(owner, settings)}
    template_meta: dict[str, Any] = {"labels": labels(owner, "trainer"), "annotations": annotations}
    pod_spec = pod.pod_spec(owner, settings, _rendezvous_env(owner))
    job_spec: dict[str, Any] = {
        "completions": nodes,
        "parallelism": nodes,
        "backoffLimit": policy.backoff_limit,
        "podFailurePolicy": pod_failure_policy(),
        "suspend": policy.suspend or policy.queue_name is not None,
        "template": {"metadata": template_meta, "spec": pod_spec},
    }
    if nodes > 1:
        job_spec["completionMode"] = "Indexed"
        pod_spec["subdomain"] = names.service(owner.name)
    if policy.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = policy.active_deadline_seconds
    meta = metadata(owner, names.job(owner.name), "trainer")
    if policy.queue_name is not None:
        meta["labels"][LABEL_KUEUE_QUEUE] = policy.queue_name
    if policy.workload_priority_class is not None:
        meta["labels"][LABEL_KUEUE_PRIORITY] = policy.workload_priority_class
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


@dataclass(frozen=True)
class Children:
    """The objects a FineTuneJob needs; the PVC (an output.volume claim of the user's) and the Service (one node)
    may be absent."""

    pvc: dict[str, Any] | None
    config_map: dict[str, Any]
    service: dict[str, Any] | None
    job: dict[str, Any]

    def before_job(self) -> list[dict[str, Any]]:
        """What the Job's pods mount or resolve, in creation order."""
        return [obj for obj in (self.pvc, self.config_map, self.service) if obj is not None]


def children(owner: Owner, settings: Settings) -> Children:
    """Every object the job needs."""
    return Children(
        storage.output_pvc(owner, settings), config_map(owner), service(owner), job(owner, settings)
    )


def desired(owner: Owner, settings: Settings) -> list[dict[str, Any]]:
    """Every object the job needs, in creation order (the Job last: its pods mount the others)."""
    built = children(owner, settings)
    return [*built.before_job(), built.job]
