"""Names of the objects the operator creates for a FineTuneJob, derived in this one place.

A FineTuneJob name is a DNS subdomain of at most 50 characters (`api.job.MAX_NAME_LENGTH`): it may hold dots or
start with a digit, which Services (DNS-1035 labels) and pod hostnames (DNS-1123 labels) refuse. `base()` maps it
to a DNS-1035 label of at most 50 characters; when it had to change the name it appends a hash of the original, so
`a.b` and `a-b` in one namespace never share children. Child objects are namespaced, so the same job name in two
namespaces never collides. Every suffix below keeps the longest name, plus an Indexed Job's pod index, within 63.
"""

from __future__ import annotations

import hashlib
import re

from finetune_api.job import MAX_NAME_LENGTH

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

JOB_SUFFIX = "-train"
SERVICE_SUFFIX = "-nodes"
CONFIG_SUFFIX = "-config"
OUTPUT_SUFFIX = "-output"
# `distributed.nodes` is at most 256, so pod hostnames `<job>-<index>` add at most 4 characters to the Job's name.


def _hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:6]


def base(job_name: str) -> str:
    """A DNS-1035 label (≤ 50 characters) for `job_name`, unique per distinct job name."""
    if _DNS_1035.match(job_name) and len(job_name) <= MAX_NAME_LENGTH:
        return job_name
    cleaned = re.sub(r"[^a-z0-9-]", "-", job_name.lower())
    if not cleaned[:1].isalpha():
        cleaned = "j" + cleaned
    cleaned = cleaned[: MAX_NAME_LENGTH - 7].strip("-")
    return f"{cleaned}-{_hash(job_name)}"


def job(job_name: str) -> str:
    """The batch Job (and the prefix of its pods' hostnames)."""
    return base(job_name) + JOB_SUFFIX


def service(job_name: str) -> str:
    """The headless Service giving multi-node pods stable DNS names."""
    return base(job_name) + SERVICE_SUFFIX


def config_map(job_name: str) -> str:
    """The ConfigMap holding the trainer config."""
    return base(job_name) + CONFIG_SUFFIX


def output_pvc(job_name: str) -> str:
    """The PersistentVolumeClaim for results and checkpoints when `spec.output.uri` is unset."""
    return base(job_name) + OUTPUT_SUFFIX


def pod_hostname(job_name: str, index: int) -> str:
    """Hostname of the Indexed Job's pod `index` (Kubernetes names it `<job>-<index>`)."""
    return f"{job(job_name)}-{index}"


def master_address(job_name: str, namespace: str) -> str:
    """Stable DNS name of node 0 for the multi-node rendezvous."""
    return f"{pod_hostname(job_name, 0)}.{service(job_name)}.{namespace}.svc"
