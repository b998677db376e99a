"""s3:// against a real S3 gateway (versitygw, `tests/storage_servers.py`): model and dataset in, adapter out,
each failure with its reason, and resume after a lost pod with the checkpoints on the output volume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from finetune_api.trainer import ExitCode, credential_prefix
from finetune_cli.main import app
from finetune_trainer import checkpoint, local, remote, s3
from typer.testing import CliRunner

from tests.invalid_specs import minimal_job
from tests.storage_servers import ObjectStore
from tests.trainer.storagekit import (
    assert_no_secret,
    base_model,
    load_adapter,
    put_folder,
    run_config,
    run_job,
)
from tests.trainer.trainerkit import INSTRUCTIONS, make_config, run_until_killed, write_config, write_rows

ROLES = ("model", "dataset", "output")


@pytest.fixture
def store(object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    """The store with the buckets `models`, `corpora` and `results`, each role's credentials under its prefix."""
    client = object_store.client()
    for bucket in ("models", "corpora", "results"):
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
    for role in ROLES:
        for name, value in object_store.env(credential_prefix(role)).items():
            monkeypatch.setenv(name, value)
    return object_store


def test_model_and_dataset_from_s3_adapter_to_s3(
    store: ObjectStore, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = store.client()
    put_folder(client, "models", "tiny-llama", base_model())
    write_rows(tmp_path / "train.jsonl", INSTRUCTIONS)
    client.fput_object("corpora", "instructions/train.jsonl", str(tmp_path / "train.jsonl"))
    spec = {"model": {"uri": "s3://models/tiny-llama"}, "dataset": {"uri": "s3://corpora/instructions/train.jsonl"},
            "output": {"uri": "s3://results/adapters/run-1"}}  # fmt: skip

    run = run_job(tmp_path / "run", spec, capsys, rows=False)

    assert run.rc == ExitCode.SUCCEEDED, run.summary
    assert run.summary["output"] == "s3://results/adapters/run-1"
    fetched = s3.download(
        "s3://results/adapters/run-1", tmp_path / "fetched", "output"
    )  # sizes and digests checked
    manifest = json.loads((fetched / "manifest.json").read_text())
    assert run.summary["digest"] == "sha256:" + remote.sha256_of(fetched / "manifest.json")
    assert sorted(manifest["digests"]) == sorted(
        p.name for p in fetched.iterdir() if p.name != "manifest.json"
    )
    assert manifest["base_model"]["uri"] == "s3://models/tiny-llama"
    assert load_adapter(base_model(), fetched).shape[-1] > 0
    assert_no_secret(run, [store.secret_key])


@pytest.mark.parametrize(
    ("spec", "role_secret", "message"),
    [
        ({"output": {"uri": "s3://no-such-bucket/run"}}, None,
         "s3://no-such-bucket/run: bucket 'no-such-bucket' does not exist; create it or fix the URI"),
        ({"output": {"uri": "s3://results/run"}}, "output",
         "s3://results/run: AccessDenied: Access denied (check the Secret's AWS_ACCESS_KEY_ID and "
         "AWS_SECRET_ACCESS_KEY)"),
        ({"dataset": {"uri": "s3://corpora/missing.jsonl"}}, None,
         "s3://corpora/missing.jsonl: no such object, and no objects under it"),
        ({"model": {"uri": "s3://models/missing"}}, None, "s3://models/missing: no such object, and no objects"),
    ],
    ids=["missing-bucket", "wrong-credentials", "missing-object", "missing-model"],
)  # fmt: skip
def test_failures_name_the_uri_and_the_cause(
    store: ObjectStore, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    spec: dict[str, object], role_secret: str | None, message: str,
) -> None:  # fmt: skip
    wrong = "wrong-secret-key-for-the-test-0123456789"
    if role_secret is not None:
        monkeypatch.setenv(credential_prefix(role_secret) + "AWS_SECRET_ACCESS_KEY", wrong)  # type: ignore[arg-type]
    run = run_job(tmp_path / "run", {"model": {"preset": "tiny-llama"}, **spec}, capsys)

    assert run.rc == ExitCode.FAILED
    assert run.summary["reason"] == "StorageError"
    assert run.summary["message"].startswith(message), run.summary["message"]
    assert not (run.output / "manifest.json").exists()
    assert_no_secret(run, [store.secret_key, wrong])


def test_a_store_that_refuses_writes_fails_before_training(
    readonly_object_store: ObjectStore, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    for name, value in readonly_object_store.env(credential_prefix("output")).items():
        monkeypatch.setenv(name, value)
    spec = {"model": {"preset": "tiny-llama"}, "output": {"uri": "s3://results/adapters/refused"}}

    run = run_job(tmp_path / "run", spec, capsys)

    assert run.rc == ExitCode.FAILED
    assert run.summary["reason"] == "StorageError"
    assert run.summary["message"].startswith(
        "s3://results/adapters/refused: the store refused a write (AccessDenied); the output's credentials need"
    ), run.summary["message"]
    assert not any(e["event"] == "step" for e in run.events), "it failed before training"
    assert not list(readonly_object_store.client().list_objects("results", recursive=True))
    assert_no_secret(run, [readonly_object_store.secret_key])


def test_a_lost_pod_resumes_from_the_checkpoints_on_the_output_volume(
    store: ObjectStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {"model": {"preset": "tiny-llama"}, "output": {"uri": "s3://results/resumed"},
            "training": {"maxSteps": 8, "checkpointSteps": 2}}  # fmt: skip
    cfg = make_config(tmp_path / "run", spec, INSTRUCTIONS)

    run_until_killed(write_config(cfg), kill_at=5)  # the pod is lost before the upload
    saved = checkpoint.complete_checkpoints(Path(cfg.paths.checkpoint_dir))
    assert saved, "no checkpoint before the kill"
    assert not list(store.client().list_objects("results", prefix="resumed/")), "nothing uploaded yet"
    resumed = run_config(cfg, capsys)  # the next pod mounts the same output volume

    assert resumed.rc == ExitCode.SUCCEEDED, resumed.summary
    assert resumed.event("start")["resumed_from"] == int(saved[-1].name.split("-")[1])
    assert resumed.summary["metrics"]["step"] == 8
    names = {o.object_name for o in store.client().list_objects("results", prefix="resumed/", recursive=True)}
    assert "resumed/manifest.json" in names
    assert not any("checkpoint" in name for name in names), "checkpoints stay on the volume"


def test_finetune_run_reads_and_writes_s3_with_the_shell_s_credentials(
    object_store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in object_store.env().items():  # plain AWS_*, as in a user's shell
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(local, "DEFAULT_CACHE", tmp_path / "cache")
    client = object_store.client()
    for bucket in ("corpora", "results"):
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
    write_rows(tmp_path / "train.jsonl", INSTRUCTIONS)
    client.fput_object("corpora", "local/train.jsonl", str(tmp_path / "train.jsonl"))
    job = minimal_job("local-s3")
    job["spec"].update(
        dataset={"uri": "s3://corpora/local/train.jsonl"}, output={"uri": "s3://results/local"}
    )
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))

    result = CliRunner().invoke(app, ["run", str(tmp_path / "job.yaml"), "--output", str(tmp_path / "out"),
                                      "--max-steps", "2"])  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "adapter: s3://results/local" in result.output
    assert client.stat_object("results", "local/manifest.json").size > 0
    assert object_store.secret_key not in result.output


@pytest.mark.parametrize("key", ["../escape.txt", "a/../../escape.txt", "/../../etc/passwd"])
def test_an_object_key_cannot_write_outside_the_download_folder(tmp_path: Path, key: str) -> None:
    from finetune_trainer import s3

    dest = tmp_path / "download"
    with pytest.raises(s3.StorageError, match="points outside the download folder"):
        s3.target_in(dest, key, "s3://bucket/prefix")
    assert s3.target_in(dest, "sub/ok.txt", "s3://bucket/prefix") == (dest / "sub" / "ok.txt").resolve()
