"""Rank 0's Prometheus endpoint, JSON log lines and termination message."""

from __future__ import annotations

import json
import socket
import sys
import urllib.request
from pathlib import Path

import pytest
from finetune_api.trainer import TERMINATION_MESSAGE_LIMIT, Metric, TerminationMessage
from finetune_trainer import metrics

from tests.trainer.trainerkit import INSTRUCTIONS, make_config, start, wait_for_step, write_config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        name: float(value)
        for name, value in (
            line.split(" ", 1) for line in text.splitlines() if line.startswith("finetune_trainer_")
        )
    }


def test_gauges_are_served_and_logged(capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    with metrics.Reporter(enabled=True, port=port, total_steps=10, logging_steps=5) as reporter:
        for step in range(1, 6):
            reporter.step(step, epoch=step / 5, loss=2.0 / step, lr=1e-4, grad_norm=0.5, tokens=100 * step)
        reporter.eval(5, eval_loss=0.75)
        served = _scrape(port)

    assert served["finetune_trainer_step"] == 5
    assert served["finetune_trainer_total_steps"] == 10
    assert served["finetune_trainer_loss"] == pytest.approx(0.4)
    assert served["finetune_trainer_eval_loss"] == 0.75
    assert served["finetune_trainer_tokens_per_second"] > 0
    assert served["finetune_trainer_eta_seconds"] >= 0
    assert {"finetune_trainer_learning_rate", "finetune_trainer_grad_norm", "finetune_trainer_epoch",
            "finetune_trainer_gpu_memory_peak_bytes"} <= set(served)  # fmt: skip
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["event"], line["step"]) for line in lines] == [
        *(("progress", step) for step in range(1, 5)),
        ("step", 5),
        ("eval", 5),
    ]  # a short line every step (for progress bars), the full one every logging_steps
    assert lines[0]["loss"] == 2.0
    assert lines[0]["tokens"] == 100
    assert lines[4]["loss"] == pytest.approx(0.4)
    assert lines[4]["tokens"] == 500


def test_other_ranks_stay_silent(capsys: pytest.CaptureFixture[str]) -> None:
    with metrics.Reporter(enabled=False, port=_free_port(), total_steps=2, logging_steps=1) as reporter:
        reporter.step(1, epoch=0.5, loss=1.0, lr=1e-4, grad_norm=1.0, tokens=10)
        reporter.event("checkpoint", step=1)
    assert capsys.readouterr().out == ""


def test_termination_message_fits_in_4k(tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    digests = {f"merged/model-{i:05}.safetensors": "0" * 64 for i in range(100)}
    message = TerminationMessage(
        status="Succeeded", digest="sha256:" + "1" * 64, metrics={"loss": 1.0}, digests=digests
    )
    metrics.write_termination_message(path, message)

    assert len(path.read_bytes()) <= TERMINATION_MESSAGE_LIMIT
    summary = TerminationMessage.model_validate_json(path.read_text())
    assert summary.digests is None  # per-file digests are in manifest.json; its own digest stays
    assert summary.digest == message.digest


def test_a_real_run_serves_its_planned_total_steps(tmp_path: Path) -> None:
    # 1000 epochs of 2 steps: the total is planned from the data, and the run is still going when scraped.
    spec = {"model": {"preset": "tiny-llama"}, "training": {"maxSteps": None, "epochs": 1000}}
    cfg = make_config(tmp_path, spec, INSTRUCTIONS).model_copy(update={"metrics_port": _free_port()})
    process = start([sys.executable, "-m", "finetune_trainer", "--config", str(write_config(cfg))],
                    tmp_path / "stderr.log")  # fmt: skip
    try:
        logged = wait_for_step(process, 2)
        served = _scrape(cfg.metrics_port)
    finally:
        process.terminate()
        process.communicate(timeout=120)

    assert logged["total_steps"] == 2000
    assert served[Metric.TOTAL_STEPS] == 2000
    assert served[Metric.STEP] >= 2
    assert served[Metric.EPOCH] == pytest.approx(served[Metric.STEP] / 2)
    assert served[Metric.LOSS] > 0
