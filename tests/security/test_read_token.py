"""The read API and /metrics need a read token off loopback (issue 14, item 5).

They carry host names, NAT and hop addresses and evidence; they were open on
the ingest listener to anyone who could reach it.  Now `[server]
read_token_file` guards them, a listener off loopback without one is refused
at load, an agent's token does not grant reading, the lists come in pages,
and the collector's own reads (alert delivery, token refresh) have their own
thread, so a flood of GETs cannot delay an alert.
"""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from collector.config import ConfigError, from_dict
from collector.keys import STORE
from tests.collector.conftest import make_config, start_collector  # noqa: F401 - fixture
from tests.collector.reports import er, inet, report, result, simple
from tests.collector.test_alerts import flaky_receiver
from tests.collector.waiting import eventually

API = "/api/v1"
READ_TOKEN = "r" * 40


def _token_file(tmp_path, text: str = READ_TOKEN, mode: int = 0o600):
    path = tmp_path / "read-token"
    path.write_text(text + "\n")
    os.chmod(path, mode)
    return str(path)


def test_a_listener_off_loopback_needs_a_read_token(tmp_path):
    with pytest.raises(ConfigError) as caught:
        from_dict({"server": {"host": "0.0.0.0"}}, "c.toml")
    (problem,) = caught.value.problems
    assert problem.startswith("c.toml: [server] host = '0.0.0.0': the read API and /metrics")
    assert "set read_token_file" in problem and 'host = "127.0.0.1"' in problem
    cfg = from_dict({"server": {"host": "0.0.0.0", "read_token_file": _token_file(tmp_path)}})
    assert cfg.server.read_token_file
    for name, text, mode, says in (
        ("short", "abc", 0o600, "at least 32 characters; write one with 'openssl rand -hex 32"),
        ("open", READ_TOKEN, 0o644, "is readable by every user; chmod o-rwx"),
    ):
        (tmp_path / name).mkdir()
        path = _token_file(tmp_path / name, text, mode)
        with pytest.raises(ConfigError) as caught:
            from_dict({"server": {"read_token_file": path}}, "c.toml")
        assert says in caught.value.problems[0], caught.value.problems


async def test_reads_need_the_read_token_an_agent_token_is_not_one(start_collector, tmp_path):  # noqa: F811
    c = await start_collector(server={"read_token_file": _token_file(tmp_path)})
    assert (await c.post(simple("br-1", 1, er()))).status == 201
    agent_token = await c.token("br-1")
    for path in (f"{API}/agents", f"{API}/paths", f"{API}/events", f"{API}/alerts", "/metrics"):
        for headers in (
            {},
            {"Authorization": f"Bearer {agent_token}"},
            {"Authorization": "Bearer x"},
        ):
            resp = await c.client.get(path, headers=headers)
            assert resp.status == 401, (path, headers)
            problem = await resp.json()
            assert problem["errors"] == [
                {"field": "header/Authorization", "message": "must carry the read token"}
            ]
            assert resp.headers["WWW-Authenticate"] == 'Bearer realm="erpath-read"'
        resp = await c.client.get(path, headers={"Authorization": f"Bearer {READ_TOKEN}"})
        assert resp.status == 200, path
    for path in ("/healthz", "/readyz", f"{API}/openapi.json"):
        assert (await c.client.get(path)).status == 200


async def test_lists_come_in_pages_with_a_cursor(start_collector, aiohttp_server):  # noqa: F811
    receiver, _ = flaky_receiver(0)
    server = await aiohttp_server(receiver)
    c = await start_collector(alerts={"alertmanager_urls": [f"http://127.0.0.1:{server.port}"]})
    agents = [f"br-{i}" for i in range(5)]
    for agent in agents:
        for seq, path in enumerate((er(), inet(), inet()), start=1):  # a flip: one alert each
            results = [result(t, path) for t in ("a.powerapps.com", "b.powerapps.com")]
            assert (await c.post(report(agent, seq, results))).status == 201

    async def pages(path: str, key: str, limit: int) -> list[list]:
        out, cursor = [], None
        while True:
            params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
            body = await c.get(path, **params)
            assert len(body[key]) <= limit
            out.append(body[key])
            cursor = body["next_cursor"]
            if cursor is None:
                return out

    got = await pages(f"{API}/agents", "agents", 2)
    assert [[a["agent"] for a in page] for page in got] == [agents[0:2], agents[2:4], agents[4:]]
    got = await pages(f"{API}/paths", "paths", 3)
    flat = [(p["agent"], p["target"]) for page in got for p in page]
    assert len(got) == 4 and flat == sorted(flat) and len(set(flat)) == 10
    everything = (await c.get(f"{API}/alerts"))["alerts"]
    assert len(everything) == 10
    got = await pages(f"{API}/alerts", "alerts", 4)
    assert [a["fingerprint"] for page in got for a in page] == [
        a["fingerprint"] for a in everything
    ]
    for bad in ("junk", "W10", "WyJhIiwiYiJd"):  # not base64 JSON, [], a key of the wrong size
        resp = await c.client.get(f"{API}/agents", params={"cursor": bad})
        assert resp.status == 400
        assert (await resp.json())["errors"][0]["field"] == "query/cursor"
    resp = await c.client.get(f"{API}/paths", params={"limit": "1001"})
    assert resp.status == 400


def _hold(conn, gate: threading.Event, started: threading.Event) -> None:
    started.set()
    gate.wait(30)


async def test_a_flood_of_reads_cannot_delay_alert_delivery(start_collector, aiohttp_server):  # noqa: F811
    receiver, seen = flaky_receiver(0)
    server = await aiohttp_server(receiver)
    c = await start_collector(alerts={"alertmanager_urls": [f"http://127.0.0.1:{server.port}"]})
    await c.token("br-1")
    await c.token("br-2")  # tokens known before the readers are taken
    store = c.app[STORE]
    gate, holds = threading.Event(), []
    try:
        # Every API reader thread busy (a slow query each, a flood queued behind them).
        for _ in range(2):
            started = threading.Event()
            holds.append(asyncio.ensure_future(store.read(_hold, gate, started)))
            await asyncio.to_thread(started.wait, 5)
        flood = [asyncio.ensure_future(c.client.get(f"{API}/paths")) for _ in range(50)]
        for seq, path in enumerate((er(), inet(), inet()), start=1):
            assert (await c.post(simple("br-1", seq, path))).status == 201

        async def delivered():
            return any(
                a["labels"]["alertname"] == "ErpathRouteFlip" for _, body in seen for a in body
            )

        await eventually(delivered, timeout_s=5)
        assert not any(f.done() for f in flood)  # the GETs were still waiting meanwhile
    finally:
        gate.set()
    await asyncio.gather(*holds)
    assert all(r.status == 200 for r in await asyncio.gather(*flood))
