"""What every child object shares: the owner, its labels and the owner reference (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from finetune_api import GROUP, KIND, VERSION, FineTuneJob

MANAGED_BY = "finetune-operator"
"""`app.kubernetes.io/managed-by` of every child, and the server-side apply field manager."""
LABEL_JOB_NAME = "finetune.io/job-name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
KUEUE_GROUP = "kueue.x-k8s.io"
LABEL_KUEUE_QUEUE = f"{KUEUE_GROUP}/queue-name"
LABEL_KUEUE_PRIORITY = f"{KUEUE_GROUP}/priority-class"


@dataclass(frozen=True)
class Owner:
    """A created FineTuneJob: its identity on the server and its parsed spec."""

    name: str
    namespace: str
    uid: str
    job: FineTuneJob

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Owner:
        """From the object as the API server returns it (raises pydantic.ValidationError on a bad spec)."""
        meta = body["metadata"]
        document = {key: body[key] for key in ("apiVersion", "kind", "metadata", "spec")}
        return cls(meta["name"], meta["namespace"], meta["uid"], FineTuneJob.model_validate(document))

    @property
    def gpus(self) -> int:
        """GPUs each training pod requests (`FineTuneJobSpec.gpus_per_node`)."""
        return self.job.spec.gpus_per_node


def labels(owner: Owner, component: str) -> dict[str, str]:
    """Labels of a child object; `finetune.io/job-name` ties it to its FineTuneJob."""
    return {
        "app.kubernetes.io/name": "finetune-trainer",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: component,
        LABEL_JOB_NAME: owner.name,
    }


def owner_reference(owner: Owner) -> dict[str, Any]:
    """Makes the child garbage-collected with its FineTuneJob."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(owner: Owner, name: str, component: str, owned: bool = True) -> dict[str, Any]:
    """Metadata of a child; `owned=False` leaves it out of garbage collection (the output PVC)."""
    meta: dict[str, Any] = {"name": name, "namespace": owner.namespace, "labels": labels(owner, component)}
    if owned:
        meta["ownerReferences"] = [owner_reference(owner)]
    return meta
