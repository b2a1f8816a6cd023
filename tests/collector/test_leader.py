"""Leadership among replicas (collector/leader.py) on a real PostgreSQL, and what a
collector on SQLite says of it: /readyz, /metrics scopes, erpath_collector_leader."""

from __future__ import annotations

import asyncio

from aiohttp import web

from collector.keys import ALERT_SENDER, LEADERSHIP
from collector.leader import Leadership
from collector.store import Store
from tests.pgcluster import ROLE

from .reports import er, inet, simple
from .waiting import eventually


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


class FreezableProxy:
    """A TCP relay to PostgreSQL that can stop relaying without closing anything: what a
    network partition looks like to both ends."""

    def __init__(self, port: int):
        self.port = port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            await self.flowing.wait()
            dst.write(data)
            await dst.drain()
        dst.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers += [writer, up_writer]
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )

    def cut(self) -> None:
        """End the partition the hard way: close every connection (the server sees it)."""
        for w in self.writers:
            w.transport.abort()
        self.flowing.set()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_leader_cut_off_from_the_database_stops_within_its_check_timeout(
    pg_cluster, pg_database, tmp_path
):
    proxy = FreezableProxy(pg_cluster.port)
    port = await proxy.start()
    passfile = tmp_path / "pgpass"  # the cluster's passfile names its own port only
    passfile.write_text(f"127.0.0.1:{port}:*:{ROLE}:{pg_cluster.password}\n")
    passfile.chmod(0o600)
    url = pg_database.url.replace(f":{pg_cluster.port}/", f":{port}/")
    cut_off = Leadership(Store(url, passfile=str(passfile)).lock_session, check_timeout_s=1.0)
    direct = Store(pg_database.url, passfile=str(pg_database.passfile))
    other = Leadership(direct.lock_session)
    try:
        assert await cut_off.attempt() and await cut_off.confirm()
        proxy.flowing.clear()  # partition: nothing flows, nothing closes
        assert not await cut_off.confirm()  # no answer within 1 s: no longer leads
        assert not cut_off.leading and cut_off.lost.is_set()
        assert "Timeout" in (cut_off.last_error or "")
        # The server still holds the session, and the lock, until it learns the client
        # is gone (its TCP keepalives, or here the connection's end): nobody else leads.
        assert not await other.attempt()
        proxy.cut()
        await asyncio.wait_for(_until(other.attempt), 30)
    finally:
        await proxy.close()
        await cut_off.close()
        await other.close()


async def _until(attempt) -> None:
    while not await attempt():
        await asyncio.sleep(0.1)


async def test_a_replica_that_no_longer_leads_sends_no_batch(start_collector, aiohttp_server):
    """The check before each delivery batch: asked no, nothing goes out; the alert stays
    unacknowledged in the database for whoever leads next."""
    seen: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.Response()

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    server = await aiohttp_server(receiver)
    c = await start_collector(alerts={"webhook_urls": [f"http://127.0.0.1:{server.port}/hook"]})
    sender = c.app[ALERT_SENDER]
    asked: list[bool] = []
    leads = False

    async def confirm() -> bool:
        asked.append(leads)
        return leads

    sender.confirm = confirm
    for seq, path in enumerate([er(), inet(), inet()], start=1):
        await c.post(simple("br-1", seq, path))
    assert await sender.deliver(sender.receivers[0])  # nothing more to do here
    assert asked and not seen  # asked, told no, sent nothing

    leads = True  # leading again (or the next leader): it is still due
    await eventually(lambda: asyncio.sleep(0, seen))
    assert seen[0]["alerts"][0]["labels"]["alertname"] == "ErpathRouteFlip"
