"""Progress reporting: Prometheus gauges, JSON-lines logs, and the end-of-run termination message.

Called by the recipe: `Reporter` is opened as a context manager around the whole run (rank 0 only serves and
logs; other ranks get a silent reporter). Each log line is one JSON object on stdout with an `event` key
(`start`, `progress`, `step`, `eval`, `checkpoint`, `stopped`, `done`, `failed`, `warning`; fields in
trainer_image/README.md): a full `step` line every `logging_steps`, a short `progress` line on the steps between, so
`local.run_local`'s progress bar moves every step; the operator's log tailing can parse them too. Gauge names, the
termination message and its size limit are the pod contract (`finetune_api.trainer`): the operator scrapes
the gauges and parses the message.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from finetune_api.trainer import ENV_TERMINATION_MESSAGE_PATH, Metric, TerminationMessage
from prometheus_client import CollectorRegistry, Gauge, start_http_server

_HELP: dict[Metric, str] = {
    Metric.STEP: "Optimizer steps completed.",
    Metric.TOTAL_STEPS: "Optimizer steps the run will take.",
    Metric.EPOCH: "Current epoch (fractional).",
    Metric.LOSS: "Training loss of the last step, averaged over ranks.",
    Metric.EVAL_LOSS: "Loss on the held-out split at the last evaluation.",
    Metric.LEARNING_RATE: "Learning rate of the last step.",
    Metric.GRAD_NORM: "Gradient L2 norm before clipping, at the last step.",
    Metric.TOKENS_PER_SECOND: "Training throughput over the last logging window, all ranks.",
    Metric.ETA_SECONDS: "Estimated seconds until the last step.",
    Metric.GPU_MEMORY_ALLOCATED_BYTES: "GPU memory held by tensors on this rank.",
    Metric.GPU_MEMORY_PEAK_BYTES: "Peak GPU memory held by tensors on this rank.",
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
        self.logging_steps = logging_steps
        self.registry = CollectorRegistry()
        self.gauges = {
            metric: Gauge(metric.value, doc, registry=self.registry) for metric, doc in _HELP.items()
        }
        for gauge in self.gauges.values():  # NaN until measured: a scrape must not read 0 as an eval loss
            gauge.set(math.nan)
        self.total_steps = total_steps
        self._server: Any = None
        self._cuda = torch.cuda.is_available()
        self._window = (time.perf_counter(), 0, 0)  # (time, step, tokens) at the last log line

    @property
    def total_steps(self) -> int:
        """Optimizer steps the run will take; known only once the data is read, so settable (gauge included)."""
        return self._total_steps

    @total_steps.setter
    def total_steps(self, value: int) -> None:
        self._total_steps = value
        self.gauges[Metric.TOTAL_STEPS].set(value)

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
        for metric, value in ((Metric.STEP, step), (Metric.EPOCH, epoch), (Metric.LOSS, loss),
                              (Metric.LEARNING_RATE, lr), (Metric.GRAD_NORM, grad_norm)):  # fmt: skip
            self.gauges[metric].set(value)
        if self._cuda:
            self.gauges[Metric.GPU_MEMORY_ALLOCATED_BYTES].set(torch.cuda.memory_allocated())
            self.gauges[Metric.GPU_MEMORY_PEAK_BYTES].set(torch.cuda.max_memory_allocated())
        if step % self.logging_steps and step != self.total_steps:
            log_event("progress", step=step, total_steps=self.total_steps, loss=loss, tokens=tokens)
            return
        started, first_step, first_tokens = self._window
        now = time.perf_counter()
        rate = (tokens - first_tokens) / max(now - started, 1e-9)
        eta = (now - started) / max(step - first_step, 1) * (self.total_steps - step)
        self.gauges[Metric.TOKENS_PER_SECOND].set(rate)
        self.gauges[Metric.ETA_SECONDS].set(eta)
        self._window = (now, step, tokens)
        log_event("step", step=step, total_steps=self.total_steps, epoch=round(epoch, 4), loss=loss, learning_rate=lr,
                  grad_norm=grad_norm, tokens=tokens, tokens_per_second=round(rate, 1),
                  eta_seconds=round(eta, 1))  # fmt: skip

    def eval(self, step: int, eval_loss: float) -> None:
        """Record an evaluation."""
        if self.enabled:
            self.gauges[Metric.EVAL_LOSS].set(eval_loss)
            log_event("eval", step=step, eval_loss=eval_loss)

    def event(self, event: str, **fields: Any) -> None:
        """Log any other event from rank 0."""
        if self.enabled:
            log_event(event, **fields)


def termination_message_path(configured: str) -> Path:
    """$TERMINATION_MESSAGE_PATH when set (tests, local runs), else the configured path."""
    return Path(os.environ.get(ENV_TERMINATION_MESSAGE_PATH) or configured)


def finish(path: Path, message: TerminationMessage) -> None:
    """Log the end of the run (`done` or `failed`, without per-file digests) and write the termination message."""
    event = "done" if message.status == "Succeeded" else "failed"
    log_event(event, **message.model_dump(mode="json", exclude_none=True, exclude={"digests"}))
    write_termination_message(path, message)


def write_termination_message(path: Path, message: TerminationMessage) -> None:
    """Write `message` as compact JSON within Kubernetes' 4 KiB (`TerminationMessage.to_json`)."""
    try:
        path.write_text(message.to_json())
    except OSError as exc:  # outside Kubernetes /dev/termination-log may not be writable: say so, don't fail
        log_event("warning", message=f"cannot write termination message to {path}: {exc}")
