"""Helpers for the end-to-end tests on kind: FineTuneJobs from examples/, watching their status, reading pods and
copying a job's output volume to the host."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.helpers import GROUP, PLURAL, ROOT, VERSION, Kube, wait_until

CLUSTER = os.environ.get("FINETUNE_KIND_CLUSTER", "finetune")
KUBECONFIG = ROOT / ".cache" / "kind" / CLUSTER / "kubeconfig"
RELEASE_NAMESPACE, RELEASE = "finetune-system", "finetune-operator"  # hack/kind/install.sh
JOB_LABEL = "finetune.io/job-name"
TRAIN_TIMEOUT_S = 20 * 60  # a pod start, PyTorch imports and a few hundred CPU steps on a busy 2-core machine


def cluster_exists() -> bool:
    """Whether the kind cluster's control-plane container is running (not when Docker Engine is not installed yet:
    a fresh machine gets it from hack/kind/install.sh, through hack/docker/start-dockerd.sh)."""
    if not Path("/usr/bin/docker").exists():
        return False
    found = subprocess.run(
        ["/usr/bin/docker", "inspect", "-f", "{{.State.Running}}", f"{CLUSTER}-control-plane"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() == "true"


def example(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The FineTuneJob in examples/<name>.yaml and the other objects the file holds (e.g. its data)."""
    docs = [d for d in yaml.safe_load_all((ROOT / "examples" / f"{name}.yaml").read_text()) if d]
    jobs = [d for d in docs if d["kind"] == "FineTuneJob"]
    assert len(jobs) == 1, f"examples/{name}.yaml holds {len(jobs)} FineTuneJobs"
    return jobs[0], [d for d in docs if d["kind"] != "FineTuneJob"]


def tiny_lora(name: str, **spec: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """examples/tiny-lora.yaml renamed, asking for one (fake) GPU per node like a production job, with `spec` keys
    replaced."""
    job, others = example("tiny-lora")
    job = copy.deepcopy(job)
    job["metadata"] = {"name": name}
    job["spec"]["resources"] = {"gpu": {"count": 1}}
    job["spec"].update(spec)
    return job, others


def apply(kube: Kube, namespace: str, job: dict[str, Any], others: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
    """Creates the ConfigMaps of `others`, then the FineTuneJob."""
    for obj in others:
        assert obj["kind"] == "ConfigMap", f"kindkit.apply creates ConfigMaps only, not {obj['kind']}"
        try:
            kube.core.create_namespaced_config_map(namespace, obj)
        except ApiException as exc:
            if exc.status != 409:
                raise
    kube.create_finetunejob(namespace, job)


def get_job(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return dict(kube.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))


def condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition of type `kind`, if any."""
    return next((c for c in job.get("status", {}).get("conditions", []) if c["type"] == kind), None)


@dataclass
class Watch:
    """Polls a FineTuneJob's status, remembering every progress step seen while it was Running."""

    kube: Kube
    namespace: str
    name: str
    steps: list[int] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)

    def poll(self) -> dict[str, Any]:
        job = get_job(self.kube, self.namespace, self.name)
        status = job.get("status", {})
        phase = status.get("phase", "")
        if not self.phases or self.phases[-1] != phase:
            self.phases.append(phase)
        step = status.get("progress", {}).get("step")
        if phase == "Running" and step is not None and (not self.steps or self.steps[-1] != step):
            self.steps.append(step)
        return job

    def until_phase(self, *phases: str, timeout: float = TRAIN_TIMEOUT_S) -> dict[str, Any]:
        """Polls until the phase is one of `phases`; returns the job then."""

        def reached() -> dict[str, Any] | None:
            job = self.poll()
            return job if job.get("status", {}).get("phase") in phases else None

        return wait_until(f"{self.name} to reach {'/'.join(phases)} (seen: {self.phases})", reached, timeout)

    def until_step(self, at_least: int, timeout: float = TRAIN_TIMEOUT_S) -> dict[str, Any]:
        """Polls until status.progress.step reaches `at_least` while Running."""

        def reached() -> dict[str, Any] | None:
            job = self.poll()
            status = job.get("status", {})
            step = status.get("progress", {}).get("step") or 0
            return job if status.get("phase") == "Running" and step >= at_least else None

        return wait_until(f"{self.name} to pass step {at_least} (steps seen: {self.steps})", reached, timeout)


def pods(kube: Kube, namespace: str, job_name: str) -> list[Any]:
    """The training pods of a FineTuneJob."""
    return list(kube.core.list_namespaced_pod(namespace, label_selector=f"{JOB_LABEL}={job_name}").items)


def logs(kube: Kube, namespace: str, pod: str) -> str:
    return str(kube.core.read_namespaced_pod_log(pod, namespace))


def events(log: str) -> list[dict[str, Any]]:
    """The trainer's JSON event lines (`{"event": ...}`) in a pod log."""
    found = []
    for line in log.splitlines():
        if line.startswith('{"event"'):
            found.append(json.loads(line))
    return found


def trainer_image(kube: Kube) -> str:
    """The trainer image the installed operator gives its pods (hack/kind/install.sh tags it by content)."""
    deployment = client.AppsV1Api(kube.api).read_namespaced_deployment(RELEASE, RELEASE_NAMESPACE)
    env = deployment.spec.template.spec.containers[0].env
    return str(next(e.value for e in env if e.name == "FINETUNE_TRAINER_IMAGE"))


def copy_volume(kube: Kube, namespace: str, pvc: str, dest: Path) -> Path:
    """Copies the contents of PersistentVolumeClaim `pvc` to `dest` through a pod that mounts it read-only."""
    pod = f"copy-{pvc}"[:63]
    kube.core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": pod},
            "spec": {
                "restartPolicy": "Never",
                # The volume lives on the fake-GPU node (local-path): the pod goes where it is.
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "containers": [
                    {
                        "name": "copy",
                        "image": trainer_image(kube),
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", "tar -C /volume -cf - . | base64"],
                        "volumeMounts": [{"name": "volume", "mountPath": "/volume", "readOnly": True}],
                    }
                ],
                "volumes": [
                    {"name": "volume", "persistentVolumeClaim": {"claimName": pvc, "readOnly": True}}
                ],
            },
        },
    )

    def finished() -> bool:
        phase = kube.core.read_namespaced_pod(pod, namespace).status.phase
        assert phase != "Failed", f"pod {pod} copying {pvc} failed"
        return phase == "Succeeded"

    wait_until(f"pod {pod} to copy {pvc}", finished, timeout=300)
    # The pod's log is the tar stream in base64 (container logs are lines of text).
    raw = base64.b64decode(kube.core.read_namespaced_pod_log(pod, namespace))
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
        archive.extractall(dest, filter="data")
    kube.core.delete_namespaced_pod(pod, namespace)
    return dest
