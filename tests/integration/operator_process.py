"""The operator under test: `finetune operator` as a subprocess against the integration cluster.

A real process (not a thread) so a test can SIGKILL it mid-reconcile and start it again. Its JSON log goes to a
file under `.cache/`, printed when a test fails (see `OperatorProcess.log_tail`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from finetune_operator import config
from finetune_operator.config import Settings

from tests.integration.helpers import KUBECONFIG, ROOT, wait_until

KWOK_PREFIX = "kwok.finetune.io/"
STALL_AFTER_S = 3
PROGRESS_INTERVAL_S = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str) -> int:
    """The HTTP status a GET of `url` answers (raises OSError when nothing listens)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class OperatorProcess:
    """Start, kill and restart `finetune operator`."""

    def __init__(
        self, log_dir: Path = ROOT / ".cache" / "integration", extra_env: dict[str, str] | None = None
    ) -> None:
        self.log_dir, self.extra_env = log_dir, extra_env or {}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / "operator.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.health_port = free_port()
        self.metrics_port = free_port()

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(KUBECONFIG),
            "FINETUNE_TRAINER_IMAGE": "example.invalid/finetune-trainer:test",  # never pulled: no kubelet
            "FINETUNE_PROPAGATE_ANNOTATION_PREFIXES": KWOK_PREFIX,
            "FINETUNE_STALL_AFTER_SECONDS": str(STALL_AFTER_S),
            "FINETUNE_PROGRESS_INTERVAL_SECONDS": str(PROGRESS_INTERVAL_S),
            "FINETUNE_HEALTH_PORT": str(self.health_port),
            "FINETUNE_METRICS_PORT": str(self.metrics_port),
            "FINETUNE_LEASE_NAMESPACE": "default",
            "FINETUNE_LEASE_NAME": f"finetune-operator-it-{os.getpid()}",
            **self.extra_env,
        }

    def settings(self) -> Settings:
        """The settings the process runs with (what it builds its objects from)."""
        return config.from_env(self.env())

    def start(self, ready: bool = True) -> None:
        """Start it and wait until it is ready (it holds the Lease and its loop ticks), or only alive."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "finetune_cli", "operator"], env=self.env(), stdout=log,
                stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        if ready:
            wait_until("the operator's /readyz", self._ready, timeout=90)
        else:
            wait_until("the operator's /healthz", lambda: self._answers("/healthz"), timeout=60)

    def _ready(self) -> bool:
        return self._answers("/readyz")

    def _answers(self, path: str) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the operator exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            return self.probe(path) == 200
        except OSError:
            return False

    def probe(self, path: str) -> int:
        """The HTTP status of a probe endpoint."""
        return http_status(f"http://127.0.0.1:{self.health_port}{path}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
