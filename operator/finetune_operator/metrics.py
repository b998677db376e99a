"""The operator's own Prometheus metrics. Labels are bounded (phases, results): never job names."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60, 300)
_DURATION_BUCKETS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 72 * 3600)


class OperatorMetrics:
    """One registry per operator (tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs = Gauge("finetune_operator_jobs", "FineTuneJobs by phase.", ["phase"], registry=r)
        self.transitions = Counter(
            "finetune_operator_phase_transitions", "Phase transitions of FineTuneJobs.", ["from_phase", "to_phase"],
            registry=r,
        )  # fmt: skip
        self.reconcile_seconds = Histogram(
            "finetune_operator_reconcile_duration_seconds", "Time to reconcile one FineTuneJob.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.reconcile_errors = Counter(
            "finetune_operator_reconcile_errors", "Reconciles that raised.", registry=r
        )
        self.create_to_workload = Histogram(
            "finetune_operator_create_to_workload_seconds", "From FineTuneJob creation to its Job created.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.job_duration = Histogram(
            "finetune_operator_job_duration_seconds", "From start to completion of finished FineTuneJobs.",
            ["result"], buckets=_DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.progress_polls = Counter(
            "finetune_operator_progress_polls", "Scrapes of trainer metrics for status.progress.", ["result"],
            registry=r,
        )  # fmt: skip
