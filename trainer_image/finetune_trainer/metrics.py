"""Progress reporting: Prometheus gauges, JSON-lines logs, and the end-of-run termination message.

Called by the recipe: `Reporter` is opened as a context manager around the whole run (rank 0 only serves and
logs; other ranks get a silent reporter). Each log line is one JSON object on stdout with an `event` key
(`start`, `progress`, `step`, `eval`, `checkpoint`, `done`, `failed`, `warning`; fields in trainer_image/README.md):
a full `step` line every `logging_steps`, a short `progress` line on the steps between, so `local.run_local`'s
progress bar moves every step; the operator's log tailing can parse them too. The termination message is what Kubernetes copies into the pod status
(at most 4096 bytes), so it is compact JSON: the artifact location, digests and final metrics, or the failure.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from prometheus_client import CollectorRegistry, Gauge, start_http_server

TERMINATION_MESSAGE_LIMIT = 4096
"""Kubernetes truncates termination messages to 4 KiB."""

_GAUGES = {
    "step": "Optimizer steps completed.",
    "total_steps": "Optimizer steps the run will take.",
    "epoch": "Current epoch (fractional).",
    "loss": "Training loss of the last step, averaged over ranks.",
    "eval_loss": "Loss on the held-out split at the last evaluation.",
    "learning_rate": "Learning rate of the last step.",
    "grad_norm": "Gradient L2 norm before clipping, at the last step.",
    "tokens_per_second": "Training throughput over the last logging window, all ranks.",
    "eta_seconds": "Estimated seconds until the last step.",
    "gpu_memory_allocated_bytes": "GPU memory held by tensors on this rank.",
    "gpu_memory_peak_bytes": "Peak GPU memory held by tensors on this rank.",
}


def log_event(event: str, **fields: Any) -> None:
    """Write one JSON log line to stdout."""
    sys.stdout.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}) + "\n")
    sys.stdout.flush()


class Reporter:
    """Rank 0's view of the run for humans (logs) and Prometheus (gauges on `port`)."""

    def __init__(self, enabled: bool, port: int, total_steps: int, logging_steps: int):
        self.enabled = enabled
        self.port = port
        self.total_steps = total_steps
        self.logging_steps = logging_steps
        self.registry = CollectorRegistry()
        self.gauges = {
            name: Gauge(f"finetune_trainer_{name}", doc, registry=self.registry)
            for name, doc in _GAUGES.items()
        }
        self.gauges["total_steps"].set(total_steps)
        self._server: Any = None
        self._cuda = torch.cuda.is_available()
        self._window = (time.perf_counter(), 0, 0)  # (time, step, tokens) at the last log line

    def __enter__(self) -> Reporter:
        if self.enabled and self.port:
            self._server, _ = start_http_server(self.port, registry=self.registry)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.shutdown()

    def resume(self, step: int, tokens: int) -> None:
        """Start the throughput window at a restored position."""
        self._window = (time.perf_counter(), step, tokens)

    def step(self, step: int, epoch: float, loss: float, lr: float, grad_norm: float, tokens: int) -> None:
        """Record a finished optimizer step: a `step` line every `logging_steps` and at the last, else `progress`."""
        if not self.enabled:
            return
        for name, value in (("step", step), ("epoch", epoch), ("loss", loss), ("learning_rate", lr),
                            ("grad_norm", grad_norm)):  # fmt: skip
            self.gauges[name].set(value)
        if self._cuda:
            self.gauges["gpu_memory_allocated_bytes"].set(torch.cuda.memory_allocated())
            self.gauges["gpu_memory_peak_bytes"].set(torch.cuda.max_memory_allocated())
        if step % self.logging_steps and step != self.total_steps:
            log_event("progress", step=step, total_steps=self.total_steps, loss=loss, tokens=tokens)
            return
        started, first_step, first_tokens = self._window
        now = time.perf_counter()
        rate = (tokens - first_tokens) / max(now - started, 1e-9)
        eta = (now - started) / max(step - first_step, 1) * (self.total_steps - step)
        self.gauges["tokens_per_second"].set(rate)
        self.gauges["eta_seconds"].set(eta)
        self._window = (now, step, tokens)
        log_event("step", step=step, total_steps=self.total_steps, epoch=round(epoch, 4), loss=loss, learning_rate=lr,
                  grad_norm=grad_norm, tokens=tokens, tokens_per_second=round(rate, 1),
                  eta_seconds=round(eta, 1))  # fmt: skip

    def eval(self, step: int, eval_loss: float) -> None:
        """Record an evaluation."""
        if self.enabled:
            self.gauges["eval_loss"].set(eval_loss)
            log_event("eval", step=step, eval_loss=eval_loss)

    def event(self, event: str, **fields: Any) -> None:
        """Log any other event from rank 0."""
        if self.enabled:
            log_event(event, **fields)


def termination_message_path(configured: str) -> Path:
    """$TERMINATION_MESSAGE_PATH when set (tests, local runs), else the configured path."""
    return Path(os.environ.get("TERMINATION_MESSAGE_PATH") or configured)


def write_termination_message(path: Path, summary: dict[str, Any]) -> None:
    """Write `summary` as compact JSON, dropping per-file digests first if it exceeds the 4 KiB limit."""
    text = json.dumps(summary, separators=(",", ":"))
    if len(text.encode()) > TERMINATION_MESSAGE_LIMIT and "digests" in summary:
        text = json.dumps({**summary, "digests": "see manifest.json"}, separators=(",", ":"))
    try:
        path.write_text(text.encode()[:TERMINATION_MESSAGE_LIMIT].decode(errors="ignore"))
    except OSError as exc:  # outside Kubernetes /dev/termination-log may not be writable: say so, don't fail
        log_event("warning", message=f"cannot write termination message to {path}: {exc}")
