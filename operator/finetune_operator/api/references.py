"""What a FineTuneJob refers to outside itself, each with the field that names it.

Secrets (always in the job's own namespace: a `SecretRef` has no namespace) and http(s) URLs. The admission webhook
checks them against the cluster and the network (`finetune_operator.admission`); the API alone cannot.
"""

from __future__ import annotations

from finetune_operator.api.common import SecretRef
from finetune_operator.api.job import FineTuneJobSpec
from finetune_operator.api.uris import scheme_of


def secret_refs(spec: FineTuneJobSpec) -> list[tuple[str, SecretRef]]:
    """(field, reference) for each Secret the job names."""
    named = (
        ("spec.model.accessSecretRef", spec.model.access_secret_ref),
        ("spec.dataset.secretRef", spec.dataset.secret_ref),
        ("spec.output.pushSecretRef", spec.output.push_secret_ref),
    )
    return [(field, ref) for field, ref in named if ref is not None]


def web_urls(spec: FineTuneJobSpec) -> list[tuple[str, str]]:
    """(field, URL) for each http(s) URL the trainer will download."""
    named = (("spec.dataset.uri", spec.dataset.uri),)
    return [(field, url) for field, url in named if scheme_of(url) in ("http", "https")]
