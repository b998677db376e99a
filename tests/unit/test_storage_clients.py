"""The pure parts of the s3:// and oci:// clients: references, credentials per role, plain HTTP, media types."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from finetune_api.references import S3_VARIABLES
from finetune_trainer import oci, remote, s3

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("uri", "expected", "target"),
    [
        ("oci://ghcr.io/team/adapters:v1", oci.Reference("ghcr.io", "team/adapters", "v1", None),
         "ghcr.io/team/adapters:v1"),
        ("oci://127.0.0.1:5000/m", oci.Reference("127.0.0.1:5000", "m", None, None), "127.0.0.1:5000/m:latest"),
        (f"oci://reg.io:443/a/b@{DIGEST}", oci.Reference("reg.io:443", "a/b", None, DIGEST), f"reg.io:443/a/b@{DIGEST}"),
    ],
)  # fmt: skip
def test_oci_references(uri: str, expected: oci.Reference, target: str) -> None:
    assert oci.Reference.parse(uri) == expected
    assert expected.target == target


@pytest.mark.parametrize(
    ("registry", "listed", "plain"),
    [("127.0.0.1:5000", "", True), ("localhost:5000", "", True), ("[::1]:5000", "", True),
     ("ghcr.io", "", False), ("registry.lab:5000", "registry.lab:5000,other", True), ("registry.lab", "x", False)],
)  # fmt: skip
def test_plain_http_only_for_loopback_and_listed_registries(registry: str, listed: str, plain: bool) -> None:
    assert oci.plain_http(registry, {remote.INSECURE_REGISTRIES: listed}) is plain


def test_docker_config_credentials_by_auth_or_by_fields(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    auth = base64.b64encode(b"robot:pa:ss").decode()
    config.write_text(
        json.dumps(
            {"auths": {"https://ghcr.io": {"auth": auth}, "reg.io": {"username": "u", "password": "p"}}}
        )
    )
    assert oci.basic_credentials(config, "ghcr.io") == ("robot", "pa:ss")
    assert oci.basic_credentials(config, "reg.io") == ("u", "p")
    assert oci.basic_credentials(config, "other.io") is None
    assert oci.basic_credentials(None, "ghcr.io") is None


def test_each_role_reads_its_prefixed_variables_then_the_plain_ones(tmp_path: Path) -> None:
    env = {"FINETUNE_OUTPUT_AWS_ACCESS_KEY_ID": "out", "AWS_ACCESS_KEY_ID": "plain", "AWS_REGION": "eu-west-1",
           "FINETUNE_MODEL_DOCKER_CONFIG": str(tmp_path)}  # fmt: skip
    assert remote.role_env("output", S3_VARIABLES, env) == {
        "AWS_ACCESS_KEY_ID": "out",
        "AWS_REGION": "eu-west-1",
    }
    assert remote.role_env("dataset", S3_VARIABLES, env)["AWS_ACCESS_KEY_ID"] == "plain"
    assert remote.docker_config("model", env) is None  # the folder has no config.json
    (tmp_path / "config.json").write_text("{}")
    assert remote.docker_config("model", env) == tmp_path / "config.json"


def test_s3_uris_split_into_bucket_and_key() -> None:
    assert s3.split("s3://bucket/a/b/") == ("bucket", "a/b")
    assert s3.split("s3://bucket") == ("bucket", "")


def test_an_endpoint_that_is_not_a_url_is_named() -> None:
    with pytest.raises(remote.StorageError, match="AWS_ENDPOINT_URL 'ftp://x' is not an http"):
        s3.client("model", {"AWS_ENDPOINT_URL": "ftp://x"})


def test_layer_media_types_by_extension() -> None:
    assert oci.media_type("adapter_model.safetensors") == "application/vnd.safetensors"
    assert oci.media_type("manifest.json") == "application/json"
    assert oci.media_type("tokenizer.model") == "application/octet-stream"
