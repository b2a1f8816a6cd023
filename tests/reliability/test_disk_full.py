"""Disk full on the collector: ingest answers 503 with Retry-After, the agent
(its real Spool and Sender) keeps every report spooled, and once space is back
everything is delivered — no restart, no manual step, nothing acknowledged lost.

The store lives on a 16 MiB tmpfs mounted for this test; a ballast file
leaves it 256 KiB, which the WAL fills within a few dozen reports.
"""

from __future__ import annotations

import sqlite3

import pytest

from agent.service.sender import CollectorEndpoint
from tests.agent.service.fullfs import fill_to, tmpfs
from tests.reliability.procs import CollectorProcess, add_tokens
from tests.reliability.simagent import SimAgent

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

AGENT = "br-full"
FREE_BYTES = 256 * 1024


@pytest.fixture
def small_fs(tmp_path):
    with tmpfs(tmp_path / "full", "16m") as mnt:
        yield mnt


def test_disk_full_is_503_the_agent_spools_and_recovery_needs_no_one(small_fs, tmp_path):
    db = small_fs / "collector.db"
    token = add_tokens(db, [AGENT])[AGENT]
    proc = CollectorProcess(tmp_path, db=db)
    proc.start()
    pid = proc.pid
    try:
        agent = SimAgent(AGENT, tmp_path / "spool", CollectorEndpoint(url=proc.url, token=token))
        for _ in range(5):
            agent.cycle()
        assert len(agent.acked) == 5 and len(agent.spool) == 0
        ballast = fill_to(small_fs, FREE_BYTES)

        for _ in range(400):  # until the store is full and a few cycles after
            agent.cycle()
            if len(agent.spool) >= 5:
                break
        assert len(agent.spool) >= 5, "the store never filled up"
        status, retry_after, detail = agent.retries[-1]
        assert (status, retry_after) == (503, 5.0) and "could not be stored" in detail, (
            agent.retries[-1]
        )
        # Reads still work while writes cannot.
        assert proc.get_json("/api/v1/agents")["agents"][0]["agent"] == AGENT
        spooled = len(agent.spool)

        ballast.unlink()  # space comes back; nobody touches the collector or the agent
        agent.cycle()
        assert len(agent.spool) == 0, agent.retries[-1]
        assert proc.alive() and proc.pid == pid
        print(
            f"\ndisk full: {len(agent.retries)} retries (503), {spooled} reports spooled, "
            f"{len(agent.acked)} acknowledged in all"
        )
    finally:
        proc.stop()

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = dict(conn.execute("SELECT seq, report_id FROM observations"))
    finally:
        conn.close()
    assert sorted(stored) == sorted(agent.acked) == list(range(1, agent.seq + 1))
