"""Small types shared by several parts of the spec: names, secret references, quantities."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, WithJsonSchema

from finetune_api.base import ApiModel, Rule
from finetune_api.uris import PARENT_SEGMENT, climbs

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"

DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, min_length=1, max_length=63)]
DnsSubdomain = Annotated[str, Field(pattern=DNS_SUBDOMAIN, min_length=1, max_length=253)]


def _quantity_to_str(value: object) -> object:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity_to_str),
    Field(pattern=QUANTITY, max_length=64),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY,
        }
    ),
]
"""A Kubernetes resource quantity such as `4`, `500m`, `16Gi`; numbers are accepted and kept as strings."""


class SecretRef(ApiModel):
    """A reference to a Secret in the FineTuneJob's namespace. Secrets are never written inline."""

    name: DnsSubdomain = Field(description="Name of the Secret, in the same namespace as the FineTuneJob.")
    key: str | None = Field(
        default=None,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description=(
            "Key inside the Secret. The pod only gets the keys the trainer reads, each as its own variable (never the "
            "whole Secret): for hf:// and presets the key holding the Hugging Face token (default HF_TOKEN), exposed "
            "as HF_TOKEN; for s3:// leave it unset (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, optional "
            "AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_REGION, AWS_DEFAULT_REGION); for oci:// "
            "the key holding the docker config.json (default .dockerconfigjson), mounted as a file."
        ),
    )


def stays_inside(field: str, attribute: str) -> Rule:
    """The rule that URI field `field` (the model attribute `attribute`) has no `..` segment, for the API server too
    (the offline twin is `uris.check_uri`'s)."""
    cel_pattern = PARENT_SEGMENT.replace("\\", "\\\\")
    return Rule(
        field=field,
        message=f"{field} may not have a '..' segment (it would leave the claim, bucket or folder it names); give "
        "the path inside it",
        check=lambda obj: not climbs(getattr(obj, attribute)),
        cel=f"!has(self.{field}) || !self.{field}.matches('{cel_pattern}')",
    )
