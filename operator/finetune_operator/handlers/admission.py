"""The validating admission webhook (Kopf's `on.validate`, served over TLS by the leading replica).

The verdict is `admission.review`'s; this is the glue: on CREATE, and on UPDATE when the spec changed (a label or
annotation change of an admitted job is never refused because, say, its Secret was deleted since), refuse with
every problem in one message, and pass the warnings to kubectl.
"""

from __future__ import annotations

import functools
from typing import Any

import kopf
from finetune_api import GROUP, PLURAL, VERSION

from finetune_operator import admission
from finetune_operator.kubeapi import KubeApi

WEBHOOK_ID = "validate-finetunejob"
"""The handler's id, which is also the URL path Kopf serves it at: the chart's webhook configuration names it."""


def register(registry: kopf.OperatorRegistry, kube: KubeApi) -> None:
    """Register the webhook's handler on `registry` (main.py configures Kopf's webhook server)."""

    @kopf.on.validate(
        GROUP, VERSION, PLURAL, id=WEBHOOK_ID, operations=["CREATE", "UPDATE"], registry=registry
    )
    def validate_finetunejob(
        body: kopf.Body, namespace: str | None, warnings: list[str], **kwargs: Any
    ) -> None:
        old: kopf.Body | None = kwargs.get("old")
        if old is not None and old.get("spec") == body.get("spec"):
            return
        namespace = namespace or "default"
        verdict = admission.review(
            dict(body), namespace, functools.partial(kube.secret_keys, namespace), admission.resolve_host
        )
        warnings.extend(verdict.warnings)
        if verdict.problems:
            raise kopf.AdmissionError(verdict.message(), code=422)
