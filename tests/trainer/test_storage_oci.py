"""oci:// against a real registry (CNCF distribution with htpasswd auth, `tests/storage_servers.py`): model pulled,
adapter pushed as an ORAS artifact and pulled back with oras and loaded with PEFT; each failure with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from finetune_api.trainer import ExitCode, credential_prefix
from finetune_trainer import oci

from tests.storage_servers import Registry
from tests.trainer.storagekit import assert_no_secret, base_model, files_of, load_adapter, run_job

WRONG = "wrong-registry-password-0123"


def docker_configs(
    registry: Registry, tmp: Path, monkeypatch: pytest.MonkeyPatch, output_password: str = ""
) -> None:
    """The model's and the output's registry auth, as the pod gets them from their Secrets."""
    monkeypatch.setenv(
        credential_prefix("model") + "DOCKER_CONFIG", str(registry.docker_config(tmp / "model-auth"))
    )
    output = registry.docker_config(tmp / "output-auth", output_password or None)
    monkeypatch.setenv(credential_prefix("output") + "DOCKER_CONFIG", str(output))


def push_base_model(registry: Registry, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"oci://{registry.host}/models/tiny-llama:v1"
    docker_configs(registry, tmp, monkeypatch)
    oci.push(base_model(), files_of(base_model()), uri, "model", oci.MODEL_ARTIFACT_TYPE)
    return uri


def test_model_from_oci_adapter_to_oci_pulled_back_with_peft(
    oci_registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = push_base_model(oci_registry, tmp_path, monkeypatch)
    target = f"{oci_registry.host}/adapters/tiny-llama-lora"

    run = run_job(
        tmp_path / "run", {"model": {"uri": model}, "output": {"uri": f"oci://{target}:v1"}}, capsys
    )

    assert run.rc == ExitCode.SUCCEEDED, run.summary
    digest = run.summary["digest"]
    assert run.summary["output"] == f"oci://{target}@{digest}"
    pulled_by_tag = oci_registry.client().get_manifest(f"{target}:v1")
    assert pulled_by_tag["artifactType"] == oci.ADAPTER_ARTIFACT_TYPE
    assert pulled_by_tag["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    titles = [layer["annotations"][oci.TITLE] for layer in pulled_by_tag["layers"]]
    assert titles == [*json.loads((run.output / "manifest.json").read_text())["digests"], "manifest.json"]
    files = oci_registry.client().pull(target=f"{target}@{digest}", outdir=str(tmp_path / "pulled"))
    assert sorted(Path(f).name for f in files) == sorted(titles)
    assert load_adapter(base_model(), tmp_path / "pulled").shape[-1] > 0
    assert_no_secret(run, [oci_registry.password])


def test_a_missing_model_repository_fails_with_the_uri(
    oci_registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docker_configs(oci_registry, tmp_path, monkeypatch)
    uri = f"oci://{oci_registry.host}/models/nothing-here:v1"

    run = run_job(tmp_path / "run", {"model": {"uri": uri}}, capsys)

    assert run.rc == ExitCode.FAILED
    assert run.summary["reason"] == "StorageError"
    assert run.summary["message"].startswith(
        f"{uri}: the registry refused the manifest (no such repository or tag?): HTTP 404 MANIFEST_UNKNOWN: manifest unknown"
    ), run.summary["message"]


def test_wrong_credentials_fail_before_training(
    oci_registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docker_configs(oci_registry, tmp_path, monkeypatch, output_password=WRONG)
    uri = f"oci://{oci_registry.host}/adapters/refused:v1"

    run = run_job(tmp_path / "run", {"model": {"preset": "tiny-llama"}, "output": {"uri": uri}}, capsys)

    assert run.rc == ExitCode.FAILED
    assert run.summary["message"] == f"{uri}: the registry refused the credentials for {oci_registry.host}"
    assert not any(e["event"] == "step" for e in run.events), "it failed before training"
    assert_no_secret(run, [oci_registry.password, WRONG])


def test_a_registry_that_refuses_pushes_fails_before_training_and_leaves_no_artifact(
    readonly_registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docker_configs(readonly_registry, tmp_path, monkeypatch)
    target = f"{readonly_registry.host}/adapters/refused"

    run = run_job(
        tmp_path / "run", {"model": {"preset": "tiny-llama"}, "output": {"uri": f"oci://{target}:v1"}}, capsys
    )

    assert run.rc == ExitCode.FAILED
    assert run.summary["reason"] == "StorageError"
    assert run.summary["message"].startswith(f"oci://{target}:v1: the registry refused a push: HTTP 405"), (
        run.summary
    )
    assert not any(e["event"] == "step" for e in run.events), "it failed before training"
    with pytest.raises(ValueError):
        readonly_registry.client().get_manifest(f"{target}:v1")
    assert_no_secret(run, [readonly_registry.password])
