"""What a FineTuneJob refers to outside itself, each with the field that names it.

Secrets (always in the job's own namespace: a `SecretRef` has no namespace) and http(s) URLs. The admission webhook
checks them against the cluster and the network (`finetune_operator.admission`); the API alone cannot. What keys a
Secret must hold follows from the scheme of the URI it is for (`missing_keys`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from finetune_api.common import SecretRef
from finetune_api.job import FineTuneJobSpec
from finetune_api.trainer import StorageRole
from finetune_api.uris import scheme_of

S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
"""What an s3:// Secret must hold (AWS_SESSION_TOKEN, AWS_ENDPOINT_URL and AWS_REGION are optional)."""
S3_VARIABLES = (*S3_KEYS, "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION",
                "AWS_DEFAULT_REGION")  # fmt: skip
"""Every variable the trainer reads from an s3:// Secret: the pod gets these keys and no others."""
HF_TOKEN = "HF_TOKEN"
"""The variable the trainer (huggingface_hub) reads a Hugging Face token from."""
DOCKER_CONFIG_KEY = ".dockerconfigjson"
"""The key of a kubernetes.io/dockerconfigjson Secret: what an oci:// Secret must hold (unless it names another)."""


class SecretUse(NamedTuple):
    """A Secret the job names: the field naming it, the reference, the storage role and the scheme it is for."""

    field: str
    ref: SecretRef
    role: StorageRole
    scheme: str


def secret_refs(spec: FineTuneJobSpec) -> list[SecretUse]:
    """Each Secret the job names, with the scheme of the URI it authenticates ("" for a preset model); the dataset's
    Secret once more when it also authenticates an `evaluation.datasetUri` of another scheme."""
    eval_uri = spec.evaluation.dataset_uri
    named: tuple[tuple[str, SecretRef | None, StorageRole, str | None], ...] = (
        ("spec.model.accessSecretRef", spec.model.access_secret_ref, "model", spec.model.uri),
        ("spec.dataset.secretRef", spec.dataset.secret_ref, "dataset", spec.dataset.uri),
        ("spec.output.pushSecretRef", spec.output.push_secret_ref, "output", spec.output.uri),
    )
    if eval_uri is not None and scheme_of(eval_uri) != scheme_of(spec.dataset.uri):
        named += (("spec.dataset.secretRef", spec.dataset.secret_ref, "dataset", eval_uri),)
    return [
        SecretUse(field, ref, role, scheme_of(uri or ""))
        for field, ref, role, uri in named
        if ref is not None
    ]


class Exposed(NamedTuple):
    """One Secret key as the pod gets it: a variable the trainer reads, never one the Secret's author chose."""

    variable: str
    key: str
    optional: bool


def exposed(use: SecretUse) -> list[Exposed]:
    """The keys of `use`'s Secret the pod gets, each as its own variable (oci:// Secrets are mounted instead): for
    s3:// the S3_VARIABLES (only S3_KEYS required), otherwise HF_TOKEN (from `key` when set, then required)."""
    if use.scheme == "s3":
        return [Exposed(name, name, name not in S3_KEYS) for name in S3_VARIABLES]
    return [Exposed(HF_TOKEN, use.ref.key or HF_TOKEN, use.ref.key is None)]


def missing_keys(use: SecretUse, keys: Collection[str]) -> str | None:
    """Why the Secret of `use`, holding `keys`, cannot authenticate its scheme (None when it can)."""
    name = use.ref.name
    if use.scheme == "s3":
        if use.ref.key is not None:
            return f"{use.field}.key: s3:// reads {' and '.join(S3_KEYS)} from the whole Secret; remove key"
        lacking = [key for key in S3_KEYS if key not in keys]
        if lacking:
            return (
                f"{use.field}.name: Secret {name!r} lacks {', '.join(lacking)}, which s3:// needs; add "
                f"{' and '.join(S3_KEYS)} (and AWS_ENDPOINT_URL, AWS_REGION for an S3-compatible store)"
            )
    if use.scheme == "oci" and (use.ref.key or DOCKER_CONFIG_KEY) not in keys:
        return (
            f"{use.field}.name: Secret {name!r} has no {use.ref.key or DOCKER_CONFIG_KEY} key; oci:// needs a "
            f"kubernetes.io/dockerconfigjson Secret (kubectl create secret docker-registry {name} "
            "--docker-server=REGISTRY --docker-username=USER --docker-password=PASSWORD)"
        )
    return None


def web_urls(spec: FineTuneJobSpec) -> list[tuple[str, str]]:
    """(field, URL) for each http(s) URL the trainer will download."""
    named = (
        ("spec.dataset.uri", spec.dataset.uri),
        ("spec.evaluation.datasetUri", spec.evaluation.dataset_uri),
    )
    return [(field, url) for field, url in named if url is not None and scheme_of(url) in ("http", "https")]
