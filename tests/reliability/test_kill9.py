"""kill -9 of the collector at random moments while 20 agents post 10,000 reports.

Each simulated agent posts its reports in seq order over loopback and retries
one until it gets a 2xx (as the real agent's spool does).  A killer sends
SIGKILL at random moments and restarts the collector.  Afterwards, straight
from the SQLite file: every report that got a 2xx is stored with its id,
none twice, and `PRAGMA integrity_check` is ok.  Full count, no scaling:
10,000 small (one-target) reports take about 10 s here, with 8 kills.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time

import aiohttp
import pytest

from collector.ingest import report_id_of
from tests.collector.reports import er, simple
from tests.reliability.procs import CollectorProcess, add_tokens

pytestmark = pytest.mark.timeout(300)

AGENTS, REPORTS = 20, 10_000
KILLS = 8
SEED = 20240501


async def _agent(
    session: aiohttp.ClientSession,
    proc: CollectorProcess,
    agent: str,
    token: str,
    n: int,
    acked: dict[tuple[str, int], str],
    tally: dict[str, int],
) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for seq in range(1, n + 1):
        doc = simple(agent, seq, er())
        body = json.dumps(doc).encode()
        while True:
            try:
                async with session.post(
                    f"{proc.url}/api/v1/reports", data=body, headers=headers
                ) as r:
                    await r.read()
                    status = r.status
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                status = None
            if status in (200, 201):
                tally[str(status)] = tally.get(str(status), 0) + 1
                acked[(agent, seq)] = doc["id"]
                break
            tally[str(status)] = tally.get(str(status), 0) + 1
            assert status in (None, 503), status  # down, or not committed: retry the same report
            await asyncio.sleep(0.02)


async def _killer(
    proc: CollectorProcess,
    rng: random.Random,
    done: asyncio.Event,
    kills: list[float],
    acked: dict[tuple[str, int], str],
) -> None:
    # Random moments of the run counted in acknowledged reports, not in seconds: a
    # schedule in seconds killed a faster collector too few times before the run ended.
    for mark in sorted(rng.uniform(0.05, 0.95) * REPORTS for _ in range(KILLS)):
        while len(acked) < mark:
            if done.is_set():
                return
            await asyncio.sleep(0.005)
        proc.kill()
        kills.append(time.monotonic())
        await asyncio.sleep(rng.uniform(0.0, 0.3))  # agents see refused connections meanwhile
        await asyncio.to_thread(proc.start)


def test_kill_9_loses_no_acknowledged_report_and_duplicates_none(tmp_path):
    agents = [f"br-{i:02d}" for i in range(AGENTS)]
    tokens = add_tokens(tmp_path / "collector.db", agents)
    proc = CollectorProcess(tmp_path)
    proc.start()
    rng = random.Random(SEED)
    acked: dict[tuple[str, int], str] = {}
    tally: dict[str, int] = {}
    kills: list[float] = []

    async def run() -> float:
        done = asyncio.Event()
        t0 = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=AGENTS)
        ) as s:
            killer = asyncio.ensure_future(_killer(proc, rng, done, kills, acked))
            await asyncio.gather(
                *(_agent(s, proc, a, tokens[a], REPORTS // AGENTS, acked, tally) for a in agents)
            )
            done.set()
            await killer
        return time.monotonic() - t0

    try:
        elapsed = asyncio.run(run())
    finally:
        proc.kill()  # the last stop is a kill too: nothing is checkpointed for us
    print(
        f"\nkill -9: {len(acked)} reports acknowledged in {elapsed:.1f} s, {len(kills)} kills, "
        f"responses {sorted(tally.items(), key=str)}"
    )
    assert len(kills) >= 3, "the run ended before the collector was killed enough times"
    assert len(acked) == REPORTS

    conn = sqlite3.connect(tmp_path / "collector.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute(
            "SELECT a.id, o.seq, o.report_id FROM observations o"
            " JOIN agents a ON a.ref = o.agent_ref"
        ).fetchall()
        stored = {(agent, seq): report_id_of(rid) for agent, seq, rid in rows}
        assert len(rows) == len(stored) == REPORTS  # none twice
        assert stored == acked  # every acknowledged report, with the id that was acknowledged
        last = dict(conn.execute("SELECT id, last_seq FROM agents"))
        assert last == {a: REPORTS // AGENTS for a in agents}
    finally:
        conn.close()
