"""The one module that talks to the Kubernetes API (through the `kubernetes` client; Kopf does the watching).

Writes are few and explicit: server-side apply of the ConfigMap, Service and PVC (field manager
`finetune-operator`), a create of the Job (never re-applied: after creation Kueue owns `suspend` for queued jobs),
merge patches of the Job's `suspend` (never of a queued Job), a Job delete to restart with new resources or to
hold a queued job, merge patches of the FineTuneJob's status subresource, and Events. Leader election holds a
coordination.k8s.io Lease. Reads: whether an API is served (discovery), Karpenter's Events on pods while they wait for
nodes (`provisioning.py`), and the key names of the Secrets a job names (the admission webhook).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from finetune_api import GROUP, KIND, PLURAL, VERSION
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from finetune_operator import karpenter
from finetune_operator.builders.meta import MANAGED_BY

logger = logging.getLogger(__name__)
APPLY = "application/apply-patch+yaml"
REQUEST_TIMEOUT_S = 30
POOL_SIZE = 32
"""HTTP connections to the API server: at least the handler threads plus the poller's."""
USER_AGENT = "finetune-operator"
"""Of the operator's writes (Kopf's watches say `kopf/<version>`): audit logs tell them apart."""


def load_config() -> None:
    """In-cluster config when running in a pod, else the current kubeconfig ($KUBECONFIG)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def _namespace_terminating(exc: ApiException) -> bool:
    """True for the 403 the API server answers to a create in a namespace being deleted (nothing to do)."""
    return exc.status == 403 and "NamespaceTerminating" in str(exc.body)


class Kube:
    """`kubeapi.KubeApi` over the kubernetes client: each method's meaning is documented there."""

    def __init__(self, api: client.ApiClient | None = None) -> None:
        if api is None:
            configuration = client.Configuration.get_default_copy()
            configuration.connection_pool_maxsize = POOL_SIZE
            api = client.ApiClient(configuration)
        self.api = api
        self.api.user_agent = USER_AGENT
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def apply(self, obj: dict[str, Any]) -> None:
        patch: dict[str, Callable[..., Any]] = {
            "ConfigMap": self.core.patch_namespaced_config_map,
            "Service": self.core.patch_namespaced_service,
            "PersistentVolumeClaim": self.core.patch_namespaced_persistent_volume_claim,
        }
        meta = obj["metadata"]
        try:
            patch[obj["kind"]](meta["name"], meta["namespace"], obj, field_manager=MANAGED_BY, force=True,
                               _content_type=APPLY, _request_timeout=REQUEST_TIMEOUT_S)  # fmt: skip
        except ApiException as exc:
            if not _namespace_terminating(exc):
                raise

    def secret_keys(self, namespace: str, name: str) -> set[str] | None:
        try:
            secret = self.core.read_namespaced_secret(name, namespace, _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return set(secret.data or {})  # stringData is write-only: the API server stores it in data

    def create_job(self, job: dict[str, Any]) -> bool:
        try:
            self.batch.create_namespaced_job(job["metadata"]["namespace"], job, field_manager=MANAGED_BY,
                                             _request_timeout=REQUEST_TIMEOUT_S)  # fmt: skip
        except ApiException as exc:
            if exc.status == 409 or _namespace_terminating(exc):
                return False
            raise
        return True

    def suspend_job(self, namespace: str, name: str, suspend: bool) -> None:
        self.batch.patch_namespaced_job(name, namespace, {"spec": {"suspend": suspend}}, field_manager=MANAGED_BY,
                                        _content_type="application/merge-patch+json")  # fmt: skip

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": status}, field_manager=MANAGED_BY,
                _content_type="application/merge-patch+json",
            )  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report on
                raise

    def post_event(self, owner: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta, now = owner["metadata"], datetime.now(UTC)
        event = {
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"]},
            "type": kind, "reason": reason, "message": message[:1024], "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": MANAGED_BY}, "reportingComponent": MANAGED_BY,
        }  # fmt: skip
        try:
            self.core.create_namespaced_event(meta["namespace"], event)
        except ApiException as exc:
            logger.warning("could not record event %s on %s: %s", reason, meta["name"], exc.reason)

    def serves(self, group: str, version: str, plural: str) -> bool:
        try:
            found = self.custom.get_api_resources(group, version, _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return any(resource.name == plural for resource in found.resources)

    def karpenter_events(self, namespace: str) -> list[karpenter.PodEvent]:
        found = self.core.list_namespaced_event(
            namespace, field_selector=f"source={karpenter.EVENT_SOURCE},involvedObject.kind=Pod",
            _request_timeout=REQUEST_TIMEOUT_S,
        )  # fmt: skip
        return [_pod_event(event) for event in found.items]


def _pod_event(event: client.CoreV1Event) -> karpenter.PodEvent:
    moment = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
    return karpenter.PodEvent(
        pod=event.involved_object.name, reason=event.reason or "", message=event.message or "",
        time=moment.astimezone(UTC).isoformat() if moment is not None else "",
    )  # fmt: skip


def run_as_leader(name: str, namespace: str, lead: Callable[[], None]) -> bool:
    """Block until this process holds the Lease `namespace/name`, then run `lead()` in this thread.

    Stand-by replicas wait here. When the leader cannot renew the Lease within the deadline, the process gets a
    SIGTERM (Kopf stops as on any SIGTERM: a threading stop flag would leave one of its threads blocked) and this
    returns True, so that the caller exits non-zero and Kubernetes restarts the replica as a stand-by.
    """
    identity = f"{socket.gethostname()}-{os.getpid()}"
    leading, lost = threading.Event(), threading.Event()

    def stopped_leading() -> None:
        lost.set()
        os.kill(os.getpid(), signal.SIGTERM)

    cfg = electionconfig.Config(
        LeaseLock(name, namespace, identity), lease_duration=15, renew_deadline=10, retry_period=2,
        onstarted_leading=leading.set, onstopped_leading=stopped_leading,
    )  # fmt: skip
    threading.Thread(
        target=leaderelection.LeaderElection(cfg).run, name="leader-election", daemon=True
    ).start()
    logger.info("waiting for the Lease %s/%s as %s", namespace, name, identity)
    leading.wait()
    logger.info("leading as %s", identity)
    lead()
    return lost.is_set()
