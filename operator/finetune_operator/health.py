"""Liveness and readiness for every replica, leader or stand-by: `/healthz` and `/readyz` on the health port.

A stand-by replica (waiting for the Lease) is alive but not ready. The leader is ready once Kopf runs and its
poller ticks; it stops being alive when the poller has not ticked for `max_silence` seconds (a stuck event loop),
so Kubernetes restarts it and a stand-by takes the Lease.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Health:
    """What the probes read: whether this replica leads, and when the operator's loop last showed progress."""

    def __init__(self, max_silence: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_silence, self.clock = max_silence, clock
        self.leading = threading.Event()
        self._beat: float | None = None

    def beat(self) -> None:
        """Called by the poller on every tick."""
        self._beat = self.clock()

    def _fresh(self) -> bool:
        return self._beat is not None and self.clock() - self._beat < self.max_silence

    def live(self) -> bool:
        """Stand-bys are alive; the leader is alive while its loop ticks (or before its first tick)."""
        return not self.leading.is_set() or self._beat is None or self._fresh()

    def ready(self) -> bool:
        """Only the leader, once it ticks."""
        return self.leading.is_set() and self._fresh()


def serve(health: Health, port: int) -> ThreadingHTTPServer:
    """Serve /healthz and /readyz on `port` from a daemon thread."""
    checks = {"/healthz": health.live, "/readyz": health.ready}

    class Probe(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            check = checks.get(self.path)
            ok = check is not None and check()
            self.send_response(200 if ok else (404 if check is None else 503))
            self.end_headers()
            self.wfile.write(b"ok\n" if ok else b"not ok\n")

        def log_message(self, *_: Any) -> None:  # probes every few seconds would flood the log
            return

    server = ThreadingHTTPServer(("0.0.0.0", port), Probe)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
