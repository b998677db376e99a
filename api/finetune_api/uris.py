"""Parsing and checking of the storage URIs used by `model`, `dataset` and `output`.

Each field accepts a fixed set of schemes. http(s) URLs are checked against server-side request forgery: a URL
whose host is a loopback, link-local, private, reserved or cloud-metadata address is refused, whatever notation
the address is written in (dotted, decimal, hex, IPv6). Names are not resolved here (this runs offline): the
admission webhook and the trainer check the addresses a name resolves to with `resolved_problem`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Literal
from urllib.parse import urlsplit

Scheme = Literal["hf", "pvc", "s3", "oci", "http", "https", "configmap"]

MODEL_SCHEMES: tuple[Scheme, ...] = ("hf", "pvc", "s3", "oci")
DATASET_SCHEMES: tuple[Scheme, ...] = ("hf", "https", "http", "s3", "pvc", "configmap")
OUTPUT_SCHEMES: tuple[Scheme, ...] = ("pvc", "oci", "s3")

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SHAPES: dict[str, tuple[re.Pattern[str], str]] = {
    "hf": (re.compile(r"^hf://[A-Za-z0-9][\w.-]*(/[\w.-]+)?(@[\w./-]+)?$"), "hf://org/name[@revision]"),
    "pvc": (re.compile(rf"^pvc://{_DNS_LABEL}(/[^\s]*)?$"), "pvc://claim-name/path"),
    "s3": (re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$"), "s3://bucket/prefix"),
    "oci": (
        re.compile(
            r"^oci://[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+(:[\w][\w.-]{0,127}|@sha256:[a-f0-9]{64})?$"
        ),
        "oci://registry/repository[:tag]",
    ),
    "configmap": (re.compile(rf"^configmap://{_DNS_LABEL}/[-._a-zA-Z0-9]+$"), "configmap://name/key"),
}

LOCAL_PATH_HINT = (
    "; a pod cannot read a local path: put it on a volume (pvc://claim/path), which `finetune run` reads from a "
    "local folder, or train locally with `finetune run --dataset FILE` / `--model DIR` (see `finetune run --help`)"
)
"""Added to the refusal of a plain path."""

_BLOCKED_HOSTS = {"localhost", "metadata", "metadata.google.internal", "instance-data", "kubernetes.default"}
_BLOCKED_SUFFIXES = (".localhost", ".internal", ".local", ".svc", ".cluster.local")


def scheme_of(uri: str) -> str:
    """The scheme of `uri` ("" when there is none)."""
    return uri.split("://", 1)[0] if "://" in uri else ""


PARENT_SEGMENT = r"(^|/)\.\.(/|$)"
"""A `..` path segment, which would leave the claim, bucket, prefix or folder a URI names."""


def climbs(uri: str | None) -> bool:
    """True when a path segment of `uri` (after scheme://) is `..`."""
    return uri is not None and re.search(PARENT_SEGMENT, uri.split("://", 1)[-1]) is not None


def check_uri(uri: str, allowed: tuple[Scheme, ...]) -> str:
    """Return `uri` if it is well-formed for one of `allowed` schemes, else raise ValueError saying how to fix it."""
    if climbs(uri):
        raise ValueError(
            f"{uri!r} has a '..' segment, which would leave what it names; give the path inside it"
        )
    scheme = scheme_of(uri)
    if scheme not in allowed:
        shapes = ", ".join(f"{s}://…" for s in allowed)
        local = "" if scheme else LOCAL_PATH_HINT
        raise ValueError(f"unsupported URI {uri!r}; use one of {shapes}{local}")
    if scheme in ("http", "https"):
        _check_public_url(uri)
        return uri
    pattern, shape = _SHAPES[scheme]
    if not pattern.match(uri):
        raise ValueError(f"malformed {scheme} URI {uri!r}; expected {shape}")
    return uri


def _check_public_url(url: str) -> None:
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise ValueError(f"URL {url!r} has no host")
    if parts.username or parts.password:
        raise ValueError("credentials in URLs are not allowed; put them in a Secret and set secretRef")
    if host in _BLOCKED_HOSTS or host.endswith(_BLOCKED_SUFFIXES):
        raise ValueError(f"URL host {host!r} is internal; only public http(s) URLs are allowed")
    address = _as_ip(host)
    if address is not None and not address.is_global:
        raise ValueError(
            f"URL host {host!r} is a loopback, link-local, private or reserved address; "
            "only public http(s) URLs are allowed"
        )


def _as_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse every notation an HTTP client would accept as an IP literal (dotted, decimal, hex, octal, IPv6)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(re.fullmatch(r"0x[0-9a-f]+|[0-9]+", p) for p in parts):
        return None
    numbers = [
        int(p, 16) if p.startswith("0x") else int(p, 8) if len(p) > 1 and p[0] == "0" else int(p)
        for p in parts
    ]
    value = 0
    for n in numbers[:-1]:
        value = value * 256 + n
    value = value * 256 ** (5 - len(numbers)) + numbers[-1]
    return ipaddress.IPv4Address(value % 2**32)


def resolved_problem(url: str, addresses: Iterable[str]) -> str | None:
    """Why `url` is refused, given the addresses its host resolves to; None when every one is public."""
    host = urlsplit(url).hostname or ""
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is not an address
        if not address.is_global:
            return (
                f"URL host {host!r} resolves to the non-public address {address}; "
                "only public http(s) URLs are allowed"
            )
    return None
