"""Leadership among replicas (collector/leader.py) on a real PostgreSQL, and what a
collector on SQLite says of it: /readyz, /metrics scopes, erpath_collector_leader."""

from __future__ import annotations

import asyncio

from collector.keys import LEADERSHIP
from collector.leader import Leadership
from collector.store import Store

from .reports import er, simple


async def test_one_of_two_leads_and_the_other_takes_over_when_its_session_ends(
    pg_cluster, pg_database
):
    store = Store(pg_database.url, passfile=str(pg_database.passfile))
    a, b = Leadership(store.lock_session), Leadership(store.lock_session)
    try:
        assert await a.attempt() and a.leading and a.won.is_set()
        assert not await b.attempt() and not b.leading and b.lost.is_set()
        assert await a.confirm() and not await b.confirm()

        # The server ends the leader's session (what a dead process or a partition ends in):
        # its next check says no, at once, and the other replica can take the lock.
        assert a._session is not None
        pg_cluster.admin(f"SELECT pg_terminate_backend({a._session.info.backend_pid})")
        assert not await a.confirm()
        assert not a.leading and a.lost.is_set() and not a.won.is_set()
        assert a.last_error
        assert await b.attempt() and b.leading

        # A replica that stops releases the lock: the other leads at its next try.
        assert not await a.attempt()
        await b.close()
        assert not b.leading
        assert await a.attempt()
        assert a.changes == 3  # won, lost, won again
    finally:
        await a.close()
        await b.close()


async def test_a_follower_takes_the_lock_within_its_retry_period(pg_database):
    store = Store(pg_database.url, passfile=str(pg_database.passfile))
    a = Leadership(store.lock_session)
    b = Leadership(store.lock_session, retry_s=0.1)
    follower = asyncio.ensure_future(b.run())
    try:
        assert await a.attempt()
        await a.close()
        await asyncio.wait_for(b.won.wait(), 30)
        assert b.leading
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await b.close()


async def test_on_sqlite_the_one_process_leads(start_collector):
    c = await start_collector()
    leadership = c.app[LEADERSHIP]
    assert not leadership.shared and leadership.leading
    assert await leadership.confirm()
    assert await c.get("/readyz") == {"status": "ready", "leader": True}
    assert c.registry.get_sample_value("erpath_collector_leader") == 1.0


async def test_metrics_scopes_split_stored_state_from_this_process(start_collector):
    c = await start_collector()
    assert (await c.post(simple("br-1", 1, er()))).status == 201

    async def text(**params: str) -> str:
        resp = await c.client.get("/metrics", params=params)
        assert resp.status == 200
        return await resp.text()

    everything, state, process = (
        await text(),
        await text(scope="state"),
        await text(scope="process"),
    )
    assert "erpath_path_info{" in everything and "erpath_collector_leader 1.0" in everything
    assert "erpath_path_info{" in state and "erpath_collector_leader" not in state
    assert "erpath_reports_received_total" not in state
    assert "erpath_path_info" not in process and "erpath_collector_leader 1.0" in process
    assert 'erpath_reports_received_total{result="accepted"} 1.0' in process

    def families(body: str) -> set[str]:
        return {line.split()[2] for line in body.splitlines() if line.startswith("# TYPE ")}

    # Every family in exactly one scope.
    assert families(everything) == families(state) | families(process)
    assert not families(state) & families(process)
    bad = await c.client.get("/metrics", params={"scope": "leader"})
    assert bad.status == 400 and "scope" in await bad.text()
