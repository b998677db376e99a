"""`finetune operator`: run the operator (Kopf) against the current kubeconfig or the in-cluster config.

Startup order: settings from the environment, API client, the probes (`health.py`: /healthz, /readyz) and the
operator's /metrics server, then leader election (a coordination.k8s.io Lease: stand-by replicas wait, alive but not
ready), then Kopf with the triggers of `handlers.py`, JSON logs, explicit watch timeouts and, with a webhook port, the
admission webhook's HTTPS server (only the leader serves it: stand-bys are not Ready, so their Service sends them
nothing). Losing the Lease stops Kopf and exits non-zero, so Kubernetes restarts the replica as a stand-by. Whether
Karpenter runs (its NodeClaims are served) is asked once, when the replica starts leading: installing Karpenter later
takes a restart of the operator.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import kopf
from prometheus_client import start_http_server

from finetune_operator import handlers, karpenter, kube
from finetune_operator.config import Settings
from finetune_operator.health import Health, serve
from finetune_operator.metrics import OperatorMetrics
from finetune_operator.provisioning import Provisioning
from finetune_operator.reconciler import Reconciler

logger = logging.getLogger(__name__)
MAX_TICK_SECONDS = 120
"""A poller round over thousands of jobs may take this long before the leader counts as stuck."""
MAX_WORKERS = 16
"""Threads for the (synchronous) handlers: reconciles of different jobs run in parallel."""


def configure_kopf(settings: Settings) -> Any:
    """A Kopf startup handler applying the watch, posting and execution settings."""

    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.watching.server_timeout = configured.watch_timeout_seconds
        settings.watching.client_timeout = configured.watch_timeout_seconds + 60
        settings.watching.connect_timeout = 30
        settings.posting.enabled = False  # the operator posts its own Events, one per phase change
        settings.execution.max_workers = MAX_WORKERS
        if configured.webhook_port:
            certs = Path(configured.webhook_cert_dir)
            settings.admission.server = kopf.WebhookServer(
                addr="0.0.0.0", port=configured.webhook_port,
                certfile=certs / "tls.crt", pkeyfile=certs / "tls.key",
            )  # fmt: skip

    configured = settings
    return startup


def run(settings: Settings, metrics: OperatorMetrics, health: Health) -> None:
    """Run Kopf until SIGTERM or SIGINT."""
    health.leading.set()
    registry = kopf.OperatorRegistry()
    client = kube.Kube()
    provisioning = None
    if client.serves(karpenter.GROUP, karpenter.VERSION, karpenter.PLURAL):
        logger.info("Karpenter's NodeClaims are served: jobs waiting for nodes get a Provisioning condition")
        provisioning = Provisioning(client, settings.progress_interval_seconds)
    context = handlers.Context(Reconciler(client, settings, metrics, provisioning), health.beat, client)
    memo = handlers.register(registry, context, webhook=bool(settings.webhook_port))
    kopf.on.startup(registry=registry)(configure_kopf(settings))
    kopf.configure(log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN)
    kopf.run(
        registry=registry, standalone=True, clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces), memo=memo,
    )  # fmt: skip


def main(settings: Settings) -> int:
    """The process: probes, /metrics, leader election, Kopf. Returns the exit code (1 when the Lease was lost)."""
    kube.load_config()
    logging.getLogger("leaderelection").setLevel(logging.WARNING)  # it logs every renewal at INFO
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # "Handler … succeeded" on every watch event
    metrics = OperatorMetrics()
    health = Health(max_silence=3 * settings.progress_interval_seconds + MAX_TICK_SECONDS)
    if settings.health_port:
        serve(health, settings.health_port)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=metrics.registry)
    if not settings.leader_election:
        run(settings, metrics, health)
        return 0
    lost = kube.run_as_leader(
        settings.lease_name, settings.lease_namespace, lambda: run(settings, metrics, health)
    )
    if lost:
        logger.error("lost the Lease %s/%s: exiting", settings.lease_namespace, settings.lease_name)
    return 1 if lost else 0
