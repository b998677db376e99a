"""URI shapes and the SSRF guard for http(s) datasets."""

from __future__ import annotations

import pytest
from finetune_api.uris import DATASET_SCHEMES, MODEL_SCHEMES, OUTPUT_SCHEMES, check_uri


@pytest.mark.parametrize(
    "url",
    [
        "https://huggingface.co/datasets/x/resolve/main/train.jsonl",
        "http://93.184.215.14/data.csv",
        "https://data.example.com:8443/a.parquet",
        "https://[2606:4700::1111]/x.jsonl",
    ],
)
def test_public_urls_pass(url: str) -> None:
    assert check_uri(url, DATASET_SCHEMES) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://127.1/x",
        "http://2130706433/x",
        "http://0x7f000001/x",
        "http://017700000001/x",
        "http://0.0.0.0/x",
        "http://[::]/x",
        "http://[fe80::1]/x",
        "http://[fd00::1]/x",
        "http://192.168.0.1/x",
        "http://172.16.5.4/x",
        "http://100.64.0.1/x",
        "http://169.254.169.254/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://LOCALHOST/x",
        "http://api.localhost/x",
        "http://metadata/x",
        "http://foo.internal/x",
        "http://kubernetes.default.svc/x",
        "http://localhost./x",
    ],
)
def test_internal_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"internal|loopback"):
        check_uri(url, DATASET_SCHEMES)


@pytest.mark.parametrize(
    ("uri", "schemes"),
    [
        ("hf://microsoft/Phi-3-mini-4k-instruct@main", MODEL_SCHEMES),
        ("hf://gpt2", MODEL_SCHEMES),
        ("pvc://models/org/base", MODEL_SCHEMES),
        ("s3://my-bucket/prefix/", MODEL_SCHEMES),
        ("oci://ghcr.io/org/model:v1", MODEL_SCHEMES),
        ("configmap://data/train.jsonl", DATASET_SCHEMES),
        ("oci://registry.local:5000/adapters/x@sha256:" + "a" * 64, OUTPUT_SCHEMES),
    ],
)
def test_well_formed(uri: str, schemes: tuple[str, ...]) -> None:
    assert check_uri(uri, schemes) == uri  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("uri", "schemes", "hint"),
    [
        ("hf://", MODEL_SCHEMES, "hf://org/name"),
        ("pvc://Bad_Claim/x", MODEL_SCHEMES, "pvc://claim-name"),
        ("https://x.example.com/m", MODEL_SCHEMES, "use one of"),
        ("configmap://name", DATASET_SCHEMES, "name/key"),
        ("s3://b/x", OUTPUT_SCHEMES, "s3://bucket"),
        ("/local/path", DATASET_SCHEMES, "use one of"),
    ],
)
def test_malformed_says_how_to_fix(uri: str, schemes: tuple[str, ...], hint: str) -> None:
    with pytest.raises(ValueError, match=r"use one of|expected") as info:
        check_uri(uri, schemes)  # type: ignore[arg-type]
    assert hint in str(info.value)
