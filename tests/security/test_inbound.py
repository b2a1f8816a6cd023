"""Inbound hardening, as if every request came from the internet: token handling,
failed-authentication limits per address, header limits, log escaping."""

from __future__ import annotations

import hmac
import logging
import sqlite3

from aiohttp import web

from collector import auth
from collector.middlewares import problems
from collector.ratelimit import RateLimiter
from tests.collector.conftest import make_config, start_collector  # noqa: F401 - fixture
from tests.collector.reports import er, simple

API = "/api/v1"


async def test_revocation_takes_effect_at_once_not_at_the_next_refresh(start_collector, tmp_path):  # noqa: F811
    # The in-memory token book refreshes only hourly here: the revoke must still win at once.
    c = await start_collector(ingest={"tokens_refresh_s": 3600.0})
    assert (await c.post(simple("br-1", 1, er()))).status == 201
    # `erpath-collector token revoke` is another process: another connection, committed.
    conn = sqlite3.connect(tmp_path / "collector.db", isolation_level=None)
    assert auth.revoke(conn, "br-1", 0.0) == 1
    conn.close()
    resp = await c.post(simple("br-1", 2, er()))
    assert resp.status == 401, await resp.text()
    assert (await resp.json())["errors"][0]["field"] == "header/Authorization"


def test_every_token_check_is_one_constant_time_digest_comparison(monkeypatch):
    """Unknown ids, malformed tokens and wrong secrets all cost one compare_digest."""
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(
        auth.hmac, "compare_digest", lambda a, b: calls.append((len(a), len(b))) or real(a, b)
    )
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE tokens(id TEXT PRIMARY KEY, agent_id TEXT, digest BLOB, created_s REAL,"
        " revoked_s REAL, site TEXT, role TEXT)"
    )
    _, token = auth.add(conn, "br-1", 0.0)
    book = auth.TokenBook()
    book.load(conn)
    stored = conn.execute("SELECT digest FROM tokens").fetchone()[0]
    assert (
        token.encode() not in stored and len(stored) == 32
    )  # a SHA-256 digest at rest, never the token
    wrong_secret = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for presented in (token, wrong_secret, "erp_0123456789abcdef_" + "A" * 43, "junk", ""):
        book.verify(presented)
    assert calls == [(32, 32)] * 5
    assert book.verify(token) == "br-1" and book.verify(wrong_secret) is None


async def test_failed_authentications_are_limited_per_address(start_collector):  # noqa: F811
    c = await start_collector(
        ingest={"failed_auth_per_address_per_s": 0.01, "failed_auth_burst_per_address": 5}
    )
    bad = {"Authorization": "Bearer erp_0123456789abcdef_" + "A" * 43}
    statuses = []
    for seq in range(7):
        resp = await c.client.post(
            f"{API}/reports", json=simple("br-1", seq + 1, er()), headers=bad
        )
        statuses.append(resp.status)
    assert statuses == [401] * 5 + [429] * 2
    assert int(resp.headers["Retry-After"]) >= 1
    body = await resp.json()
    assert "failed authentications" in body["detail"] and body["status"] == 429


async def test_a_bad_client_behind_a_shared_address_cannot_lock_out_valid_agents(
    start_collector,  # noqa: F811
):
    """A fleet behind one NAT or proxy shares one client address (issue 14, item 12): one
    client looping on a bad token used to empty the address's bucket, and every agent
    behind it got 429 with a valid token.  Only failed attempts are limited per address;
    a valid token goes on to its own agent's bucket."""
    c = await start_collector(
        ingest={"failed_auth_per_address_per_s": 0.01, "failed_auth_burst_per_address": 5}
    )
    bad = {"Authorization": "Bearer erp_0123456789abcdef_" + "A" * 43}
    for seq in range(20):
        resp = await c.client.post(f"{API}/reports", json=simple("x", seq + 1, er()), headers=bad)
    assert resp.status == 429  # the bad client is locked out ...
    for seq, agent in enumerate(("br-1", "br-2", "br-3", "br-1"), start=1):
        resp = await c.post(simple(agent, seq, er()))  # ... its neighbours are not
        assert resp.status == 201, await resp.text()
    resp = await c.client.post(f"{API}/reports", json=simple("x", 99, er()), headers=bad)
    assert resp.status == 429


def test_the_address_buckets_stay_bounded():
    limiter = RateLimiter(0.01, 5, max_keys=1000)
    for i in range(20_000):
        limiter.take(f"2001:db8::{i:x}")
    assert len(limiter) <= 1000


async def test_oversized_and_too_many_headers_are_400(start_collector):  # noqa: F811
    c = await start_collector()
    token = await c.token("br-1")
    auth_header = {"Authorization": f"Bearer {token}"}
    resp = await c.client.post(
        f"{API}/reports",
        json=simple("br-1", 1, er()),
        headers={**auth_header, "X-Pad": "x" * 20_000},
    )
    assert resp.status == 400
    resp = await c.client.post(
        f"{API}/reports",
        json=simple("br-1", 1, er()),
        headers={**auth_header, **{f"X-H{i}": "1" for i in range(200)}},
    )
    assert resp.status == 400
    # The collector serves on.
    assert (await c.post(simple("br-1", 1, er()))).status == 201


async def test_client_text_reaches_the_log_escaped(aiohttp_client, caplog):
    """A path with a newline cannot forge a second log line."""

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = web.Application(middlewares=[problems])
    app.router.add_get(r"/{tail:[\s\S]*}", boom)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR, logger="collector.middlewares"):
        resp = await client.get("/x%0Alevel=INFO%20event=forged")
    assert resp.status == 500 and (await resp.json())["status"] == 500
    (record,) = [r for r in caplog.records if r.name == "collector.middlewares"]
    message = record.getMessage()
    assert "\n" not in message and "\\n" in message and "event=forged" in message
