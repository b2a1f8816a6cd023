"""The cost of one report (issue 14, item 1): caps checked after decoding, a
per-agent in-flight limit, a body-read deadline, and a report's size charged
to its agent's bucket.

Before: one authenticated agent could declare ~200k advertised prefixes and
1,024 reverse results (each asymmetry evaluation then ran for minutes on the
writer thread), hold the event loop for seconds with one large body, and hold
60 of the 64 admission slots for ever by trickling 60 bodies.
"""

from __future__ import annotations

import asyncio
import copy
import json

from collector import caps
from collector.keys import ADMISSION
from collector.routes import COST_UNIT_BYTES
from tests.collector.conftest import make_config, start_collector  # noqa: F401 - fixture
from tests.collector.reports import SITE_FACTS, er, report, result, simple

API = "/api/v1"


def _facts(circuits: int = 1, prefixes_each: int = 1, edges: int = 1) -> dict:
    facts = copy.deepcopy(SITE_FACTS)
    c0, e0 = facts["circuits"][0], facts["internet_edges"][0]
    facts["circuits"] = [
        dict(
            c0,
            name=f"c{i}",
            advertised_prefixes=[
                f"198.51.{j % 256}.{(i % 16) * 16}/28" for j in range(prefixes_each)
            ],
        )
        for i in range(circuits)
    ]
    facts["internet_edges"] = [dict(e0, name=f"inet{i}") for i in range(edges)]
    return facts


async def test_reports_beyond_the_caps_are_422_naming_the_field(start_collector):  # noqa: F811
    c = await start_collector()
    too_many_results = report(
        "br-1", 1, [result(f"t{i}.powerapps.com", er()) for i in range(caps.MAX_RESULTS + 1)]
    )
    cases = [
        (too_many_results, "/results"),
        (simple("br-1", 1, er(), facts=_facts(circuits=caps.MAX_CIRCUITS + 1)), "/site/circuits"),
        (
            simple("br-1", 1, er(), facts=_facts(edges=caps.MAX_INTERNET_EDGES + 1)),
            "/site/internet_edges",
        ),
        # Circuits of 64 prefixes each: the one that brings the site past the cap is named.
        (
            simple("br-1", 1, er(), facts=_facts(circuits=16, prefixes_each=64)),
            f"/site/circuits/{caps.MAX_PREFIXES // 64}/advertised_prefixes",
        ),
    ]
    for doc, field in cases:
        resp = await c.post(doc)
        assert resp.status == 422, (field, await resp.text())
        assert resp.content_type == "application/problem+json"
        problem = await resp.json()
        assert [e["field"] for e in problem["errors"]] == [field]
        assert problem["type"].endswith("report-too-costly")
    # At the caps exactly: accepted.
    at_caps = report(
        "br-1",
        1,
        [result(f"t{i}.powerapps.com", er()) for i in range(caps.MAX_RESULTS)],
        facts=_facts(
            circuits=caps.MAX_CIRCUITS, prefixes_each=caps.MAX_PREFIXES // caps.MAX_CIRCUITS
        ),
    )
    resp = await c.post(at_caps)
    assert resp.status == 201, await resp.text()


async def _trickle(
    host: str, port: int, token: str, doc: dict
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A request whose body is still arriving (10 bytes of it so far)."""
    body = json.dumps(doc).encode()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"POST {API}/reports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body[:10]
    )
    await writer.drain()
    return reader, writer


async def test_one_agent_cannot_hold_the_admission_slots(start_collector):  # noqa: F811
    c = await start_collector(ingest={"max_in_flight": 8, "max_in_flight_per_agent": 2})
    token = await c.token("br-1")
    await c.token("br-2")
    host, port = c.client.server.host, c.client.server.port
    slow = [await _trickle(host, port, token, simple("br-1", 100 + i, er())) for i in range(2)]
    await asyncio.sleep(0.2)
    more = [await _trickle(host, port, token, simple("br-1", 200 + i, er())) for i in range(6)]
    for reader, _ in more:  # refused at once, before their bodies are read
        status = await asyncio.wait_for(reader.readline(), 5)
        assert b" 429 " in status, status
    assert c.app[ADMISSION].in_flight == 2
    resp = await c.post(simple("br-2", 1, er()))  # another agent gets through
    assert resp.status == 201, await resp.text()
    for _, w in slow + more:
        w.close()


async def test_a_body_that_trickles_gets_408_and_frees_its_slot(start_collector):  # noqa: F811
    c = await start_collector(ingest={"body_read_timeout_s": 0.5})
    token = await c.token("br-1")
    host, port = c.client.server.host, c.client.server.port
    reader, writer = await _trickle(host, port, token, simple("br-1", 1, er()))
    head = await asyncio.wait_for(reader.read(4096), 5)
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert b"arrived too slowly" in head
    writer.close()
    await asyncio.sleep(0.1)
    assert c.app[ADMISSION].in_flight == 0
    assert (await c.post(simple("br-1", 1, er()))).status == 201


async def test_a_large_report_costs_its_agent_more_of_its_bucket(start_collector):  # noqa: F811
    big = report("br-1", 1, [result(f"t{i}.powerapps.com", er()) for i in range(caps.MAX_RESULTS)])
    extra = len(json.dumps(big)) // COST_UNIT_BYTES
    assert extra >= 1
    # A bucket for the big report (1 + extra tokens) and one small one, refilling slowly.
    c = await start_collector(ingest={"rate_per_agent_per_s": 0.01, "burst_per_agent": extra + 2})
    assert (await c.post(big)).status == 201
    resp = await c.post(simple("br-1", 2, er()))  # the last token
    assert resp.status == 201, await resp.text()
    resp = await c.post(simple("br-1", 3, er()))
    assert resp.status == 429  # without the charge, `extra` more would have got through
    # Other agents have buckets of their own.
    assert (await c.post(simple("br-2", 1, er()))).status == 201
