"""The probes' logic: stand-bys alive but not ready; the leader ready while it ticks, dead when it stops."""

from __future__ import annotations

import urllib.error
import urllib.request

from finetune_operator.health import Health, serve


def test_stand_by_is_alive_not_ready() -> None:
    health = Health(max_silence=60)
    assert health.live() and not health.ready()


def test_leader_is_ready_while_it_ticks_and_dead_when_it_stops() -> None:
    now = [100.0]
    health = Health(max_silence=30, clock=lambda: now[0])
    health.leading.set()
    assert health.live() and not health.ready()  # leading, not ticked yet: starting up
    health.beat()
    now[0] += 29
    assert health.live() and health.ready()
    now[0] += 2  # 31 s without a tick: the loop counts as stuck
    assert not health.live() and not health.ready()


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_endpoints_answer_what_the_checks_say() -> None:
    health = Health(max_silence=60)
    server = serve(health, 0)
    port = server.server_address[1]
    try:
        assert (_status(port, "/healthz"), _status(port, "/readyz"), _status(port, "/x")) == (200, 503, 404)
        health.leading.set()
        health.beat()
        assert _status(port, "/readyz") == 200
    finally:
        server.shutdown()
