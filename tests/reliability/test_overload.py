"""Overload: beyond `max_in_flight` reports in progress the collector sheds
load at once (503 + Retry-After, the body not even read) instead of queueing
requests until their clients time out.  Found by tests/bench/bench_load.py:
at 2,000 agents x 30 targets the queue grew, p50 latency reached 30 s, RSS
600 MiB, and most work was spent on requests whose clients had given up.
"""

from __future__ import annotations

import asyncio
import json

from tests.collector.conftest import make_config, start_collector  # noqa: F401 - fixture
from tests.collector.reports import er, simple

API = "/api/v1"


async def _slow_upload(host: str, port: int, token: str, doc: dict) -> asyncio.StreamWriter:
    """A request whose body is still arriving: it holds an ingest slot."""
    body = json.dumps(doc).encode()
    _, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"POST {API}/reports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body[:10]
    )
    await writer.drain()
    return writer


async def test_over_capacity_is_503_with_retry_after_and_capacity_comes_back(start_collector):  # noqa: F811
    c = await start_collector(ingest={"max_in_flight": 2})
    token = await c.token("br-1")
    host, port = c.client.server.host, c.client.server.port
    slow = [await _slow_upload(host, port, token, simple("br-1", 100 + i, er())) for i in range(2)]
    await asyncio.sleep(0.2)  # both are inside the handler, reading their bodies
    # Another agent: br-1 itself is at its own in-flight limit (429, checked first).
    resp = await c.post(simple("br-2", 1, er()))
    assert resp.status == 503, await resp.text()
    assert resp.headers["Retry-After"] == "2"
    problem = await resp.json()
    assert "at capacity" in problem["detail"] and problem["errors"][0]["field"] == "body"
    for w in slow:
        w.close()
        await w.wait_closed()
    await asyncio.sleep(0.2)  # the slots are released when the broken uploads end
    resp = await c.post(simple("br-1", 1, er()))
    assert resp.status == 201, await resp.text()
    assert c.registry.get_sample_value("erpath_reports_received_total", {"result": "rejected"}) >= 1
