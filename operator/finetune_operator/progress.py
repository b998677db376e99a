"""`status.progress` from the trainer's Prometheus text (pure): rank 0 serves it, the operator polls it.

The trainer needs no Kubernetes credentials: the operator reads `http://<rank-0 pod IP>:<METRICS_PORT>/metrics`
(see `poller.py`) and turns the gauges into the Progress block here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from finetune_api.status import Progress
from finetune_api.trainer import Metric
from prometheus_client.parser import text_string_to_metric_families

_FIELDS = {
    Metric.STEP: "step",
    Metric.TOTAL_STEPS: "total_steps",
    Metric.EPOCH: "epoch",
    Metric.LOSS: "loss",
    Metric.EVAL_LOSS: "eval_loss",
    Metric.LEARNING_RATE: "learning_rate",
    Metric.TOKENS_PER_SECOND: "tokens_per_second",
    Metric.ETA_SECONDS: "eta_seconds",
}
"""Each gauge's field of `Progress`."""
_INTEGERS = {"step", "total_steps", "eta_seconds"}


def parse(text: str) -> dict[str, Any]:
    """The `Progress` found in a /metrics page, on the wire (NaN gauges, i.e. not measured yet, left out)."""
    found: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = _FIELDS.get(sample.name)  # type: ignore[call-overload]
            if name is None or sample.value != sample.value:  # NaN
                continue
            found[name] = int(sample.value) if name in _INTEGERS else round(sample.value, 6)
    if found.get("total_steps") and "step" in found:
        found["percent"] = min(100, int(100 * found["step"] / found["total_steps"]))
    return Progress(**found).to_wire()


def changed(previous: dict[str, Any] | None, current: dict[str, Any]) -> bool:
    """True when the numbers differ (the timestamp aside)."""
    before = {k: v for k, v in (previous or {}).items() if k != "lastUpdated"}
    return before != current


def due(previous: dict[str, Any] | None, now: datetime, interval: float) -> bool:
    """True when `interval` seconds passed since the last write (`lastUpdated`), so writes stay that far apart."""
    last = (previous or {}).get("lastUpdated")
    if not last:
        return True
    return (now - datetime.fromisoformat(str(last).replace("Z", "+00:00"))).total_seconds() >= interval


def stamped(current: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The progress block with `lastUpdated`."""
    return {**current, "lastUpdated": now.isoformat().replace("+00:00", "Z")}
