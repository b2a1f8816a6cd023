"""The collector is down for 10 minutes: agents spool and replay; within the
spool's bounds nothing is lost, beyond them the oldest go first and are counted.

Time is compressed: the outage is 20 cycles of a 30 s interval run back to
back, and each spooled file's mtime is set to the moment its cycle would have
ended (the spool's age bound reads mtimes), so the spool sees a real
10-minute backlog.  tests/agent/service/test_service_lab.py covers a short outage with
real `erpath-agent run` processes in the lab.
"""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from agent.service.sender import CollectorEndpoint
from tests.reliability.procs import CollectorProcess, add_tokens
from tests.reliability.simagent import SimAgent

pytestmark = pytest.mark.timeout(120)

INTERVAL_S, OUTAGE_CYCLES = 30.0, 20  # 10 minutes


def _outage(agent: SimAgent, start_s: float) -> None:
    for k in range(OUTAGE_CYCLES):
        item = agent.measure()
        at = start_s + (k + 1) * INTERVAL_S
        os.utime(item.path, (at, at))
        agent.drain()  # the collector is down: every attempt is a retry
    agent.spool.enforce_bounds()


def _stored(db) -> dict[str, list[int]]:
    conn = sqlite3.connect(db)
    try:
        out: dict[str, list[int]] = {}
        for agent, seq in conn.execute(
            "SELECT a.id, o.seq FROM observations o JOIN agents a ON a.ref = o.agent_ref ORDER BY o.seq"
        ):
            out.setdefault(agent, []).append(seq)
        return out
    finally:
        conn.close()


def test_ten_minute_outage_within_the_spool_bound_loses_nothing(tmp_path):
    agents = ["br-within", "br-beyond"]
    tokens = add_tokens(tmp_path / "collector.db", agents)
    proc = CollectorProcess(tmp_path)
    proc.start()
    endpoint = {a: CollectorEndpoint(url=proc.url, token=tokens[a], timeout_s=2.0) for a in agents}
    within = SimAgent("br-within", tmp_path / "s1", endpoint["br-within"], max_age_s=15 * 60)
    beyond = SimAgent("br-beyond", tmp_path / "s2", endpoint["br-beyond"], max_age_s=5 * 60)
    for a in (within, beyond):
        a.cycle()
        assert a.acked == {1: a.acked[1]}

    proc.kill()
    start = time.time() - OUTAGE_CYCLES * INTERVAL_S
    for a in (within, beyond):
        _outage(a, start)
        assert all(status is None for status, _, _ in a.retries), a.retries  # unreachable, retried
    assert len(within.spool) == OUTAGE_CYCLES and within.spool.dropped_total == 0
    # 5-minute bound: cycles older than 300 s were dropped oldest first, and counted.
    assert len(beyond.spool) == 10 and beyond.spool.dropped_total == OUTAGE_CYCLES - 10

    proc.start()
    try:
        for a in (within, beyond):
            a.cycle()  # the next cycle replays the backlog, oldest first, then itself
            assert len(a.spool) == 0
        paths = {a: proc.get_json(f"/api/v1/paths?agent={a}")["paths"][0] for a in agents}
    finally:
        proc.stop()
    stored = _stored(tmp_path / "collector.db")
    last = OUTAGE_CYCLES + 2
    assert stored["br-within"] == list(range(1, last + 1))
    assert stored["br-beyond"] == [1, *range(2 + OUTAGE_CYCLES - 10, last + 1)]
    # Replayed in seq order: every replayed report applied, the path is the newest's, no flip.
    assert all(p["last_seq"] == last and p["flips_total"] == 0 for p in paths.values())
