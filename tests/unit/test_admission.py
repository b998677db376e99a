"""The admission verdict (`admission.review`): the same lines as `finetune validate`, plus Secrets and resolved hosts.

The lookups are fakes here (pure logic); tests/integration/test_admission.py runs the webhook behind a real API
server, with real Secrets and real name resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import finetune_api as api
import pytest
import yaml
from finetune_api.uris import resolved_problem
from finetune_cli.main import app, validate_file
from finetune_operator import admission
from finetune_operator.admission import review
from finetune_trainer import storage
from pydantic import ValidationError
from typer.testing import CliRunner

from tests.invalid_specs import DELETE, INVALID_SPECS, InvalidSpec, merge, minimal_job

SECRETS = {
    "hf": {"HF_TOKEN"},
    "aws": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
    "aws-half": {"AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL"},
    "pull": {".dockerconfigjson"},
}


def secret_keys(name: str) -> set[str] | None:
    return SECRETS.get(name)


def resolve(addresses: dict[str, Sequence[str]]) -> admission.Resolve:
    def lookup(host: str) -> Sequence[str]:
        if host not in addresses:
            raise OSError("Name or service not known")
        return addresses[host]

    return lookup


def job(**spec: object) -> dict[str, object]:
    return merge(minimal_job(), {"spec": spec})


@pytest.mark.parametrize("case", INVALID_SPECS, ids=[c.id for c in INVALID_SPECS])
def test_invalid_specs_are_refused_with_the_validate_lines(case: InvalidSpec) -> None:
    verdict = review(case.manifest, "default", secret_keys, resolve({}))
    assert verdict.problems and any(case.field in line for line in verdict.problems), verdict
    if not case.gpu_fit:
        with pytest.raises(ValidationError) as info:
            api.parse(case.manifest)
        assert verdict.problems == api.describe(info.value)


def test_a_valid_job_is_admitted_without_warnings() -> None:
    assert review(minimal_job(), "default", secret_keys, resolve({})) == admission.Review()


def test_a_missing_secret_is_named_with_its_namespace_and_the_fix() -> None:
    verdict = review(job(model={"preset": "tiny-llama", "accessSecretRef": {"name": "hf-token"}}), "team-a",
                     secret_keys, resolve({}))  # fmt: skip
    assert verdict.problems == [
        "spec.model.accessSecretRef.name: Secret 'hf-token' not found in namespace 'team-a'; create it there first "
        "(kubectl create secret generic hf-token -n team-a --from-literal=KEY=VALUE)"
    ]


def test_a_missing_key_lists_the_keys_the_secret_has() -> None:
    spec = {"dataset": {"uri": "configmap://data/train.jsonl", "secretRef": {"name": "aws", "key": "TOKEN"}}}
    verdict = review(job(**spec), "default", secret_keys, resolve({}))
    assert verdict.problems == [
        "spec.dataset.secretRef.key: Secret 'aws' has no key 'TOKEN' (it has: AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY); name one of them or add the key to the Secret"
    ]


def test_every_secret_reference_is_checked_and_present_ones_pass() -> None:
    spec = {
        "model": {"preset": "tiny-llama", "accessSecretRef": {"name": "hf", "key": "HF_TOKEN"}},
        "dataset": {"uri": "configmap://data/train.jsonl", "secretRef": {"name": "aws"}},
        "output": {"uri": "pvc://results/run", "pushSecretRef": {"name": "registry"}},
    }
    verdict = review(job(**spec), "default", secret_keys, resolve({}))
    assert [line.split(":")[0] for line in verdict.problems] == ["spec.output.pushSecretRef.name"]
    assert review(job(**spec), "default", None, None).problems == [], "offline: Secrets are not looked up"


S3_MODEL = {"preset": DELETE, "uri": "s3://models/base"}
OCI_OUTPUT = {"uri": "oci://registry.example.com/team/adapters:v1"}


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"model": {**S3_MODEL, "accessSecretRef": {"name": "aws-half"}}},
         "spec.model.accessSecretRef.name: Secret 'aws-half' lacks AWS_SECRET_ACCESS_KEY, which s3:// needs; add "
         "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL, AWS_REGION for an S3-compatible store)"),
        ({"model": {**S3_MODEL, "accessSecretRef": {"name": "aws", "key": "AWS_ACCESS_KEY_ID"}}},
         "spec.model.accessSecretRef.key: s3:// reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the whole "
         "Secret; remove key"),
        ({"output": {**OCI_OUTPUT, "pushSecretRef": {"name": "aws"}}},
         "spec.output.pushSecretRef.name: Secret 'aws' has no .dockerconfigjson key; oci:// needs a "
         "kubernetes.io/dockerconfigjson Secret (kubectl create secret docker-registry aws "
         "--docker-server=REGISTRY --docker-username=USER --docker-password=PASSWORD)"),
    ],
    ids=["s3-lacks-a-key", "s3-with-one-key", "oci-without-docker-config"],
)  # fmt: skip
def test_a_storage_secret_must_hold_what_its_scheme_needs(spec: dict[str, object], problem: str) -> None:
    assert review(job(**spec), "default", secret_keys, resolve({})).problems == [problem]


def test_storage_secrets_that_hold_what_their_scheme_needs_pass() -> None:
    spec = {
        "model": {**S3_MODEL, "accessSecretRef": {"name": "aws"}},
        "dataset": {"uri": "s3://corpora/train.jsonl", "secretRef": {"name": "aws"}},
        "output": {**OCI_OUTPUT, "pushSecretRef": {"name": "pull"}},
    }
    assert review(job(**spec), "default", secret_keys, resolve({})).problems == []


@pytest.mark.parametrize("address", ["10.0.0.5", "169.254.169.254", "127.0.0.1", "fe80::1%eth0", "fd00::7"])
def test_a_host_resolving_to_a_private_address_is_refused(address: str) -> None:
    url = "https://data.example.net/train.jsonl"
    verdict = review(
        job(dataset={"uri": url}), "default", None, resolve({"data.example.net": ["93.184.215.14", address]})
    )
    assert len(verdict.problems) == 1
    assert verdict.problems[0].startswith(
        "spec.dataset.uri: URL host 'data.example.net' resolves to the non-public"
    )


def test_a_public_host_passes_and_an_unresolvable_one_is_a_warning() -> None:
    url = "https://data.example.net/train.jsonl"
    public = review(
        job(dataset={"uri": url}), "default", None, resolve({"data.example.net": ["93.184.215.14"]})
    )
    assert public == admission.Review()
    unknown = review(job(dataset={"uri": url}), "default", None, resolve({}))
    assert unknown.problems == []
    assert unknown.warnings == [
        "spec.dataset.uri: 'data.example.net' does not resolve here (Name or service not known); "
        "the trainer checks it again"
    ]


def test_the_gpu_fit_verdict_can_be_left_out() -> None:
    case = next(c for c in INVALID_SPECS if c.gpu_fit)
    assert review(case.manifest, "default", None, None).problems
    assert review(case.manifest, "default", None, None, gpu_fit=False).problems == []


def test_resolve_host_really_resolves() -> None:
    assert "127.0.0.1" in admission.resolve_host("localhost")
    with pytest.raises(OSError):
        admission.resolve_host("no-such-host.invalid")  # RFC 6761: never resolves


def test_the_trainer_refuses_with_the_same_rule() -> None:
    url = "http://localhost/train.jsonl"
    problem = resolved_problem(url, admission.resolve_host("localhost"))
    with pytest.raises(storage.StorageError) as info:
        storage._check_public(url)
    assert str(info.value) == f"refusing {url}: {problem}"


def test_validate_prints_warnings_and_still_passes(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job(dataset={"uri": "https://no-such-host.invalid/train.jsonl"})))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"✓ {path}" in result.output
    assert "spec.dataset.uri: 'no-such-host.invalid' does not resolve here" in result.output
    assert validate_file(path, resolve=None).warnings == []


def test_remote_code_is_refused_unless_the_installation_allows_it() -> None:
    remote = job(model={"preset": DELETE, "uri": "hf://org/custom", "trustRemoteCode": True})
    refused = review(remote, "default", None, resolve({}), allow_remote_code=False)
    assert refused.problems == [admission.remote_code_problem(api.parse(remote).spec, False)]
    assert refused.problems[0].startswith("spec.model.trustRemoteCode: this installation does not run code")
    assert review(remote, "default", None, resolve({}), allow_remote_code=True).problems == []
