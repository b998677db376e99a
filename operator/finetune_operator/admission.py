"""The admission verdict on a FineTuneJob: the rules of `finetune validate`, plus those that need the cluster or DNS.

One rule set: what the API's models refuse (`api.parse`, the same lines the CRD's CEL and `finetune validate` give),
the GPU-fit verdict (`api.fit`), then what only a running operator can check:

- every Secret the job names exists in the job's namespace and holds the key named (a `SecretRef` has no namespace
  field, so a reference can never cross namespaces), and what its scheme needs: AWS_ACCESS_KEY_ID and
  AWS_SECRET_ACCESS_KEY for s3://, `.dockerconfigjson` for oci:// (`api.references.missing_keys`);
- every http(s) host resolves to public addresses only (the API refuses private literals; a name that resolves to
  10.0.0.5 or 169.254.169.254 is refused here). A host that does not resolve from the operator is a warning, not a
  refusal: the trainer resolves it again, and refuses it then, before downloading.

The lookups are passed in (`SecretKeys`, `Resolve`), so the verdict is pure given them; `finetune validate` passes
no Secret lookup (it runs offline) and the webhook handler passes `Kube.secret_keys`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import finetune_api as api
from finetune_api import fit
from finetune_api.job import FineTuneJobSpec
from finetune_api.references import missing_keys, secret_refs, web_urls
from finetune_api.uris import resolved_problem
from pydantic import ValidationError

SecretKeys = Callable[[str], Collection[str] | None]
"""The data keys of the Secret with this name in the job's namespace; None when there is no such Secret."""
Resolve = Callable[[str], Sequence[str]]
"""The addresses a host name resolves to; raises OSError when it does not resolve."""
RESOLVE_TIMEOUT_S = 3.0
"""Per host: the API server gives the whole webhook call 10 s (the chart's timeoutSeconds)."""
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="resolve")


@dataclass(frozen=True)
class Review:
    """What admission answers: refused when there are problems; warnings are shown by kubectl either way."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def message(self) -> str:
        """The refusal, one `field: what and how to fix it` per problem."""
        return "; ".join(self.problems)


def review(
    document: dict[str, Any],
    namespace: str,
    secret_keys: SecretKeys | None,
    resolve: Resolve | None,
    gpu_fit: bool = True,
    allow_remote_code: bool = True,
) -> Review:
    """The verdict on one FineTuneJob manifest in `namespace`; a check whose lookup is None is skipped, and the
    GPU-fit verdict without `gpu_fit` (`finetune run` trains on this machine, not on the GPUs asked for).
    `allow_remote_code` is the installation's `allow_trust_remote_code` (`finetune validate` knows no cluster)."""
    try:
        spec = api.parse(document).spec
    except ValidationError as exc:
        return Review(problems=api.describe(exc))
    found = fit.problem(spec) if gpu_fit else None
    problems = [found] if found is not None else []
    if (refused := remote_code_problem(spec, allow_remote_code)) is not None:
        problems.append(refused)
    if secret_keys is not None:
        problems += secret_problems(spec, namespace, secret_keys)
    warnings: list[str] = []
    if resolve is not None:
        for name, url in web_urls(spec):
            host = urlsplit(url).hostname or ""
            try:
                problem = resolved_problem(url, resolve(host))
            except OSError as exc:
                warnings.append(
                    f"{name}: {host!r} does not resolve here ({exc}); the trainer checks it again"
                )
                continue
            if problem is not None:
                problems.append(f"{name}: {problem}")
    return Review(problems, warnings)


def remote_code_problem(spec: FineTuneJobSpec, allowed: bool) -> str | None:
    """Why the job may not run its model repository's code here (None when it does not ask to, or may)."""
    if not spec.model.trust_remote_code or allowed:
        return None
    return (
        "spec.model.trustRemoteCode: this installation does not run code from model repositories (the chart's "
        "trainer.allowTrustRemoteCode is false); use a model that transformers loads without remote code, or ask "
        "the platform team to allow it"
    )


def secret_problems(spec: FineTuneJobSpec, namespace: str, secret_keys: SecretKeys) -> list[str]:
    """A line for each Secret the job names that is missing from `namespace`, lacks the key named, or lacks what
    its URI's scheme needs (once each: the dataset's Secret may serve two URIs)."""
    problems: list[str] = []
    for use in secret_refs(spec):
        name, ref = use.field, use.ref
        keys = secret_keys(ref.name)
        if keys is None:
            problems.append(
                f"{name}.name: Secret {ref.name!r} not found in namespace {namespace!r}; create it there first "
                f"(kubectl create secret generic {ref.name} -n {namespace} --from-literal=KEY=VALUE)"
            )
        elif ref.key is not None and ref.key not in keys:
            problems.append(
                f"{name}.key: Secret {ref.name!r} has no key {ref.key!r} (it has: "
                f"{', '.join(sorted(keys)) or 'none'}); name one of them or add the key to the Secret"
            )
        elif (problem := missing_keys(use, keys)) is not None:
            problems.append(problem)
    return list(dict.fromkeys(problems))


def resolve_host(host: str) -> list[str]:
    """The addresses `host` resolves to, within RESOLVE_TIMEOUT_S; raises OSError otherwise."""
    lookup = _resolver.submit(socket.getaddrinfo, host, None)
    try:
        infos = lookup.result(timeout=RESOLVE_TIMEOUT_S)
    except FutureTimeout:
        raise OSError(f"no answer within {RESOLVE_TIMEOUT_S:g} s") from None
    except socket.gaierror as exc:
        raise OSError(exc.strerror or str(exc)) from None
    return sorted({str(info[4][0]) for info in infos})
