"""Kueue for the integration tests: its CRDs and its manager, the pinned release built from source, as a local process.

`hack/cluster/build.sh --kueue` builds `kueue` (sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION, cached like the
cluster's binaries) and links `.cache/cluster/kueue-crds` to the CRDs in that Go module. The CRDs are installed as
Kueue's release installs them: the bases, with the conversion-webhook stanza its kustomization patches in. The
manager runs against the integration cluster's kubeconfig with:

- the batch/Job integration only, in namespaces labelled `finetune.io/kueue: "true"` (`managedJobsNamespaceSelector`;
  other tests' Jobs are left alone);
- its internal certificate management, which fills the Secret `kueue-webhook-server-cert`; the fixture then plays
  the kubelet's Secret volume and writes the certificate into the webhook server's directory. No webhook
  configurations are installed: the API server never calls Kueue (our Jobs are created suspended already, and only
  v1beta2, the stored version, is used, so no conversion is needed); the certificate rotator skips them;
- no leader election, no metrics server, no visibility API server (it needs an APIService and the aggregator).

Ready means its /readyz answers 200 (its webhook server listens once the certificates are in place).
"""

from __future__ import annotations

import base64
import copy
import signal
import subprocess
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.rest import ApiException

from tests.integration.helpers import KUBECONFIG, ROOT, Kube, crd_documents, install_crds, wait_until
from tests.integration.operator_process import free_port, http_status

GROUP = "kueue.x-k8s.io"
VERSION = "v1beta2"
NAMESPACE = "kueue-system"
MANAGED = {"finetune.io/kueue": "true"}
"""The label of the namespaces whose Jobs this Kueue manages."""
WEBHOOK_SERVICE = "kueue-webhook-service"
WEBHOOK_SECRET = "kueue-webhook-server-cert"
CRD_LINK = ROOT / ".cache" / "cluster" / "kueue-crds"
"""Set by hack/cluster/build.sh --kueue: config/components/crd/bases of the Kueue module."""
READY_TIMEOUT_S = 120


def crds(bases: Path = CRD_LINK) -> list[dict[str, Any]]:
    """Kueue's CRDs as its release installs them: each base, plus the conversion webhook its kustomization adds."""
    kustomization = yaml.safe_load((bases.resolve().parent / "kustomization.yaml").read_text())
    conversions = {}
    for entry in kustomization.get("patches") or []:
        patch = yaml.safe_load((bases.resolve().parent / entry["path"]).read_text())
        conversion = copy.deepcopy(patch["spec"]["conversion"])
        conversion["webhook"]["clientConfig"]["service"].update(name=WEBHOOK_SERVICE, namespace=NAMESPACE)
        conversions[patch["metadata"]["name"]] = conversion
    docs = crd_documents(bases)
    for doc in docs:
        if doc["metadata"]["name"] in conversions:
            doc["spec"]["conversion"] = conversions[doc["metadata"]["name"]]
    return docs


def config(workdir: Path, health_port: int, webhook_port: int) -> dict[str, Any]:
    """The manager's configuration file (config.kueue.x-k8s.io/v1beta2 Configuration)."""
    return {
        "apiVersion": f"config.{GROUP}/v1beta2", "kind": "Configuration", "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(workdir / "certs")},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": True, "webhookServiceName": WEBHOOK_SERVICE,
                                   "webhookSecretName": WEBHOOK_SECRET},
        "managedJobsNamespaceSelector": {"matchLabels": MANAGED},
        "integrations": {"frameworks": ["batch/job"]},
        "featureGates": {"VisibilityOnDemand": False},
    }  # fmt: skip


class KueueProcess:
    """The Kueue manager against the integration cluster: install its CRDs, start, wait until ready, stop."""

    def __init__(self, kube: Kube, binary: Path, workdir: Path) -> None:
        self.kube, self.binary, self.workdir = kube, binary, workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "kueue.log"
        self.health_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def install(self) -> None:
        """Kueue's CRDs, its namespace and the (empty) Secret its certificate rotator fills."""
        install_crds(self.kube, crds())
        for create, body in (
            (self.kube.core.create_namespace, {"metadata": {"name": NAMESPACE}}),
            (lambda b: self.kube.core.create_namespaced_secret(NAMESPACE, b), {"metadata": {"name": WEBHOOK_SECRET}}),
        ):  # fmt: skip
            try:
                create(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise

    def start(self) -> None:
        config_path = self.workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config(self.workdir, self.health_port, free_port())))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), f"--config={config_path}", f"--kubeconfig={KUBECONFIG}"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
            )  # fmt: skip
        self._mount_certificate(self.workdir / "certs")
        wait_until("Kueue's /readyz", self._ready, timeout=READY_TIMEOUT_S)

    def _mount_certificate(self, directory: Path) -> None:
        """Writes the certificate Kueue put in its Secret where its webhook server reads it (as a Secret volume)."""

        def filled() -> dict[str, str] | None:
            self._alive()
            data = self.kube.core.read_namespaced_secret(WEBHOOK_SECRET, NAMESPACE).data or {}
            return data if {"tls.crt", "tls.key"} <= data.keys() else None

        data = wait_until(
            f"Kueue to fill the Secret {NAMESPACE}/{WEBHOOK_SECRET}", filled, timeout=READY_TIMEOUT_S
        )
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("tls.key", "tls.crt"):  # the rotator waits for tls.crt: written last
            (directory / f"{name}.tmp").write_bytes(base64.b64decode(data[name]))
            (directory / f"{name}.tmp").replace(directory / name)

    def _alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"Kueue exited with {self.process.returncode}:\n{self.log_tail()}")

    def _ready(self) -> bool:
        self._alive()
        try:
            return http_status(f"http://127.0.0.1:{self.health_port}/readyz") == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Queues:
    """One test's Kueue setup: a ResourceFlavor, a ClusterQueue with a GPU quota admitting only the test's namespace,
    its LocalQueue there, and WorkloadPriorityClasses; the cluster-scoped objects are deleted by `cleanup`."""

    LOCAL_QUEUE = "gpus"

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.name = namespace  # cluster-scoped objects are named after the (unique) namespace
        self._created: list[tuple[str, str]] = []
        kube.core.patch_namespace(namespace, {"metadata": {"labels": MANAGED}})

    def _create(self, plural: str, body: dict[str, Any]) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", **body}
        self.kube.custom.create_cluster_custom_object(GROUP, VERSION, plural, body)
        self._created.append((plural, body["metadata"]["name"]))

    def create(self, gpus: int, preemption: bool = False) -> None:
        """The flavor, a ClusterQueue of `gpus` nvidia.com/gpu (preempting lower priorities when asked) and the
        LocalQueue `gpus`."""
        self._create("resourceflavors", {"kind": "ResourceFlavor", "metadata": {"name": self.name}})
        quota = {"name": self.name, "resources": [{"name": "nvidia.com/gpu", "nominalQuota": gpus}]}
        spec: dict[str, Any] = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.namespace}},
            "resourceGroups": [{"coveredResources": ["nvidia.com/gpu"], "flavors": [quota]}],
        }
        if preemption:
            spec["preemption"] = {"withinClusterQueue": "LowerPriority"}
        self._create("clusterqueues", {"kind": "ClusterQueue", "metadata": {"name": self.name}, "spec": spec})
        self.kube.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "localqueues", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "LocalQueue",
            "metadata": {"name": self.LOCAL_QUEUE}, "spec": {"clusterQueue": self.name},
        })  # fmt: skip

    def priority_class(self, suffix: str, value: int) -> str:
        """A WorkloadPriorityClass `<namespace>-<suffix>` of `value`; returns its name."""
        name = f"{self.name}-{suffix}"
        self._create("workloadpriorityclasses", {"kind": "WorkloadPriorityClass", "metadata": {"name": name},
                                                 "value": value})  # fmt: skip
        return name

    def workload(self, job_uid: str) -> dict[str, Any] | None:
        """The Workload Kueue made for the Job with `job_uid`, once it exists."""
        found = self.kube.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "workloads")
        for item in found["items"]:
            if any(ref.get("uid") == job_uid for ref in item["metadata"].get("ownerReferences") or []):
                return dict(item)
        return None

    def cleanup(self) -> None:
        for plural, name in reversed(self._created):
            try:
                self.kube.custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
