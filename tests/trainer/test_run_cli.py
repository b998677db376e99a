"""`finetune run` as a user meets it: one clear line for what cannot run, local files, a live log, a summary."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from finetune_api.trainer import ExitCode
from finetune_cli.main import app
from finetune_trainer import follow, local, tiny
from rich.console import Console
from typer.testing import CliRunner

from tests.invalid_specs import minimal_job
from tests.trainer.trainerkit import INSTRUCTIONS, PRESETS, write_rows


@pytest.fixture(autouse=True)
def _presets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "DEFAULT_CACHE", PRESETS)


def _manifest(tmp_path: Path, *documents: dict[str, Any]) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return path


def _run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["run", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def _job(dataset: str, **more: Any) -> dict[str, Any]:
    job = minimal_job("local-job")
    job["spec"]["dataset"] = {"uri": dataset, **more}
    job["spec"]["training"] = {"perDeviceBatchSize": 2, "maxSeqLength": 32}
    return job


def test_a_configmap_missing_from_the_file_is_one_line(tmp_path: Path) -> None:
    code, output = _run(
        _manifest(tmp_path, _job("configmap://faq/train.jsonl")), "--output", tmp_path / "out"
    )

    assert code == 1
    assert output.splitlines() == [
        f"✗ spec.dataset.uri configmap://faq/train.jsonl: ConfigMap 'faq' is not in {tmp_path / 'job.yaml'}; add "
        "it there as another YAML document (kind: ConfigMap, metadata.name: faq, data: {train.jsonl: ...}) or pass "
        "--dataset FILE"
    ]


def test_two_jobs_in_one_file_validate_but_run_says_one_at_a_time(tmp_path: Path) -> None:
    path = _manifest(tmp_path, minimal_job("a"), minimal_job("b"))

    assert CliRunner().invoke(app, ["validate", str(path)]).exit_code == 0
    code, output = _run(path, "--output", tmp_path / "out")
    assert code == 1
    assert output.splitlines() == [
        f"✗ {path} holds 2 FineTuneJobs; `finetune run` trains exactly one: put each in its own file "
        "(`finetune validate` checks several at once)"
    ]


def test_a_missing_pvc_file_names_both_local_paths_verbatim(tmp_path: Path) -> None:
    uri = "pvc://corpus/train[bold].jsonl"  # rich would read [bold] as a style

    code, output = _run(
        _manifest(tmp_path, _job(uri)), "--output", tmp_path / "out", "--data-dir", tmp_path / "d"
    )

    assert code == 1
    assert output.splitlines() == [
        f"✗ spec.dataset.uri {uri}: neither {tmp_path}/d/corpus/train[bold].jsonl nor {tmp_path}/d/train[bold].jsonl "
        f"exists; pvc://CLAIM/PATH is read from DATA_DIR/CLAIM/PATH or DATA_DIR/PATH (--data-dir, now {tmp_path}/d), "
        "or pass --dataset FILE"
    ]


def test_an_incomplete_local_model_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "smol").mkdir()
    (tmp_path / "smol" / "config.json").write_text("{}")
    write_rows(tmp_path / "train.jsonl", INSTRUCTIONS)
    path = _manifest(tmp_path, _job("configmap://faq/train.jsonl"))

    code, output = _run(path, "--model", tmp_path / "smol", "--dataset", tmp_path / "train.jsonl",
                        "--output", tmp_path / "out")  # fmt: skip

    assert code == 1
    assert output.startswith(f"✗ model folder {tmp_path / 'smol'} is incomplete: missing a tokenizer")


def test_a_plain_path_in_the_manifest_says_how_to_run_it_locally(tmp_path: Path) -> None:
    code, output = _run(_manifest(tmp_path, _job("./train.jsonl")), "--output", tmp_path / "out")

    assert code == 1
    assert "spec.dataset.uri: unsupported URI './train.jsonl'" in output
    assert "`finetune run --dataset FILE`" in output
    assert "pvc://claim/path" in output


def test_pvc_data_from_data_dir_and_a_local_model_folder(tmp_path: Path) -> None:
    (tmp_path / "volumes" / "corpus").mkdir(parents=True)
    write_rows(tmp_path / "volumes" / "corpus" / "train.jsonl", INSTRUCTIONS)
    model = tiny.ensure_tiny_preset("tiny://llama", PRESETS)
    path = _manifest(tmp_path, _job("pvc://corpus/train.jsonl", validationSplit=0.25))
    manifest_text = path.read_text()

    code, output = _run(path, "--data-dir", tmp_path / "volumes", "--model", model, "--max-steps", 3,
                        "--output", tmp_path / "out")  # fmt: skip

    assert code == 0, output
    first, where, digest = output.splitlines()[-3:]
    assert first.startswith("✓ trained local-job: 3 steps in ")
    assert ", eval loss " in first
    assert where == f"  adapter: {tmp_path / 'out'}"
    assert digest.startswith("  digest: sha256:")
    config = json.loads((tmp_path / "out" / ".local" / "trainer-config.json").read_text())
    assert config["spec"]["model"]["uri"] == f"pvc://{local.MODEL_CLAIM}/model"
    assert config["spec"]["model"]["preset"] is None
    assert path.read_text() == manifest_text  # the manifest stays as the cluster will see it
    # The result names the folder --model gave, not the volume that stood for it.
    result = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (result["base_model"]["uri"], result["base_model"]["name"]) == (str(model.resolve()),) * 2
    assert result["data"]["dataset"]["uri"] == "pvc://corpus/train.jsonl"
    adapter = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(model.resolve())


def test_a_local_dataset_file_and_a_failure_summary(tmp_path: Path) -> None:
    data = tmp_path / "my data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n\n" for row in [*INSTRUCTIONS[:3], {"prompt": "no answer"}]))
    path = _manifest(tmp_path, _job("hf://org/name"))

    code, output = _run(path, "--dataset", data, "--max-steps", 1, "--output", tmp_path / "out")

    assert code == ExitCode.INVALID_CONFIG  # a bad row: no retry can fix it
    assert output.splitlines()[-1] == (
        "✗ failed (DataError: line 7: field 'completion' missing (the row has 'prompt'); if another column holds "
        f"it, name that column in dataset.columns); log: {tmp_path}/out/.local/trainer.log"
    )


def test_the_log_file_is_written_line_by_line(tmp_path: Path) -> None:
    log_path = tmp_path / "trainer.log"
    seen: list[str] = []

    def trainer_output() -> Any:
        lines = ["Loading weights\n", '{"event": "start", "total_steps": 2, "resumed_from": null}\n',
                 '{"event": "progress", "time": 1.0, "step": 1, "loss": 2.5, "tokens": 10}\n',
                 '{"event": "step", "time": 2.0, "step": 2, "loss": 2.0, "tokens": 30}\n']  # fmt: skip
        for line in lines:
            yield line
            seen.append(log_path.read_text())  # what `tail -f` shows while the trainer runs on

    with log_path.open("w", encoding="utf-8") as log:
        follower = follow.Follower(log)
        follower.follow(trainer_output(), Console(file=io.StringIO()))

    assert seen[0] == "Loading weights\n"
    assert [len(text.splitlines()) for text in seen] == [1, 2, 3, 4]
    assert follower.tokens_per_second() == 20.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"status": "Succeeded"}', {"status": "Succeeded", "metrics": {}, "digest": None}),
        ('{"status": "Succeeded", "digests": "see manifest.json", "metrics": {"step": 3}}',
         {"status": "Succeeded", "metrics": {"step": 3}, "digests": None}),
        ('{"status": "Failed", "reason": "DataError", "message": "line 2: …", "future": 1}',
         {"status": "Failed", "reason": "DataError", "message": "line 2: …"}),
        ("not json", None),
        ('["Succeeded"]', None),
    ],
    ids=["only-status", "digests-that-did-not-fit", "unknown-key", "not-json", "not-an-object"],
)  # fmt: skip
def test_the_termination_message_is_read_leniently(tmp_path: Path, text: str, expected: Any) -> None:
    path = tmp_path / "termination-log"
    path.write_text(text)

    summary = follow.read_summary(path)

    if expected is None:
        assert summary is None
    else:
        assert summary is not None
        assert {key: getattr(summary, key) for key in expected} == expected
    assert follow.read_summary(tmp_path / "missing") is None


def test_a_chat_template_beside_the_data_in_the_configmap_is_used_and_saved(tmp_path: Path) -> None:
    import transformers
    from finetune_trainer.templates import CHATML

    chats = [{"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]}
             for r in INSTRUCTIONS]  # fmt: skip
    job = _job("configmap://faq/train.jsonl")
    job["spec"]["task"] = {"chatTemplate": "chat.jinja"}
    data = {"train.jsonl": "".join(json.dumps(c) + "\n" for c in chats), "chat.jinja": CHATML}
    path = _manifest(
        tmp_path, job, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "faq"}, "data": data}
    )

    code, output = _run(path, "--max-steps", 1, "--output", tmp_path / "out")

    assert code == 0, output
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "out").chat_template == CHATML


def test_a_failed_run_names_the_file_says_only_why_and_keeps_the_last_log(tmp_path: Path) -> None:
    """The ✗ line names the user's own file; no JSON event or library warning before it; reruns keep one old log."""
    empty = tmp_path / "train.jsonl"
    empty.write_text("")
    path, out = _manifest(tmp_path, _job("hf://org/name")), tmp_path / "out"
    log = out / local.LOCAL_DIR / local.LOG_FILE

    code, output = _run(path, "--dataset", empty, "--max-steps", 1, "--output", out)
    first = log.read_text()
    code_again, output_again = _run(path, "--dataset", empty, "--max-steps", 1, "--output", out)

    assert code == code_again == ExitCode.INVALID_CONFIG
    *before, last = output.strip().splitlines()
    assert last == f"✗ failed (DataError: train.jsonl: the dataset is empty); log: {log}"
    assert [line.split()[0] for line in before] == ["loading"]  # the progress bar, nothing from the log
    assert output_again == output
    assert (out / local.LOCAL_DIR / local.PREVIOUS_LOG_FILE).read_text() == first


def test_truncated_rows_are_said_on_the_terminal(tmp_path: Path) -> None:
    lines = ['{"event": "lengths", "max_seq_length": 32, "truncated": 3, "rows": ["line 9: 40 tokens", '
             '"line 10: 51 tokens"]}\n']  # fmt: skip
    screen = io.StringIO()
    with (tmp_path / "trainer.log").open("w") as log:
        follow.Follower(log).follow(iter(lines), Console(file=screen, width=400))
    assert (
        "⚠ 3 rows are longer than maxSeqLength 32 and were truncated: line 9: 40 tokens; line 10: 51 tokens … "
        "(raise training.maxSeqLength or shorten them)"
    ) in screen.getvalue()
