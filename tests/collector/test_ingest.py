"""POST /api/v1/reports: auth, validation, idempotency, ordering, bad input."""

from __future__ import annotations

import gzip
import json
import time

import pytest

from collector import auth, queries
from collector.keys import STORE, TOKENS

from .conftest import API
from .reports import er, inet, report, result, simple

PROBLEM = "application/problem+json"

pytestmark = pytest.mark.both_backends


async def _count(c, table: str) -> int:
    return await c.app[STORE].read(
        lambda conn: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    )


async def test_accepts_a_report_and_shows_the_path(start_collector):
    c = await start_collector()
    resp = await c.post(simple("br-1", 1, er()))
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["status"] == "accepted" and body["applied"] is True
    paths = (await c.get(f"{API}/paths"))["paths"]
    assert len(paths) == 1
    p = paths[0]
    assert (p["agent"], p["site"], p["target"], p["path"]) == (
        "br-1",
        "ams",
        "api.powerapps.com",
        "expressroute/ams-1",
    )
    assert p["verdict"]["link"] == "primary"
    assert p["verdict"]["evidence"] == ["hop 3 203.0.113.2 is the MSEE of circuit ams-1 (primary)"]
    assert p["since"] and p["signature"] == "as:65001 12076 8075"
    agents = (await c.get(f"{API}/agents"))["agents"]
    assert (
        agents[0]["agent"] == "br-1"
        and agents[0]["silent"] is False
        and agents[0]["version"] == "0.1.0"
    )


async def test_replay_returns_200_and_stores_nothing_twice(start_collector):
    c = await start_collector()
    doc = simple("br-1", 1, er())
    assert (await c.post(doc)).status == 201
    counts = [await _count(c, t) for t in ("observations", "traces", "events")]
    again = await c.post(doc)
    assert again.status == 200
    assert (await again.json())["status"] == "duplicate"
    assert [await _count(c, t) for t in ("observations", "traces", "events")] == counts


async def test_same_seq_different_report_is_a_conflict(start_collector):
    c = await start_collector()
    assert (await c.post(simple("br-1", 1, er()))).status == 201
    resp = await c.post(simple("br-1", 1, inet()))
    assert resp.status == 409 and resp.content_type == PROBLEM
    assert (await resp.json())["errors"][0]["field"] == "/seq"


async def test_gzip_body_is_accepted(start_collector):
    c = await start_collector()
    token = await c.token("br-1")
    body = gzip.compress(json.dumps(simple("br-1", 1, er())).encode())
    resp = await c.client.post(
        f"{API}/reports",
        data=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
        },
    )
    assert resp.status == 201, await resp.text()


async def test_late_report_is_history_and_never_overrides_the_current_path(start_collector):
    c = await start_collector()
    for seq in (10, 11):
        assert (await c.post(simple("br-1", seq, er()))).status == 201
    # Two spooled reports from before an outage arrive late, both on the internet.
    for seq in (5, 6):
        resp = await c.post(simple("br-1", seq, inet()))
        assert resp.status == 201
        assert (await resp.json())["applied"] is False
    paths = (await c.get(f"{API}/paths"))["paths"]
    assert paths[0]["path"] == "expressroute/ams-1" and paths[0]["last_seq"] == 11
    assert (await c.get(f"{API}/events", kind="route_flip"))["events"] == []
    assert await _count(c, "observations") == 4


# --------------------------------------------------------------------------- auth


async def test_missing_and_bad_tokens_are_401(start_collector):
    c = await start_collector()
    doc = simple("br-1", 1, er())
    resp = await c.client.post(f"{API}/reports", json=doc)
    assert resp.status == 401 and resp.content_type == PROBLEM
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["errors"][0]["field"] == "header/Authorization"
    for header in (
        "Basic dXNlcjpwYXNz",
        "Bearer erp_0000000000000000_" + "A" * 43,
        "Bearer nonsense",
    ):
        resp = await c.client.post(f"{API}/reports", json=doc, headers={"Authorization": header})
        assert resp.status == 401, header
    assert await _count(c, "observations") == 0


async def test_a_token_cannot_report_as_another_agent(start_collector):
    c = await start_collector()
    resp = await c.post(simple("br-2", 1, er()), agent="br-1")
    assert resp.status == 403
    problem = await resp.json()
    assert problem["errors"] == [
        {"field": "/agent/id", "message": "must be 'br-1', the token's agent"}
    ]
    assert await _count(c, "agents") == 0


async def test_revoked_token_is_refused(start_collector):
    c = await start_collector()
    assert (await c.post(simple("br-1", 1, er()))).status == 201
    store = c.app[STORE]
    assert await store.write(auth.revoke, "br-1", time.time()) == 1
    await store.read(c.app[TOKENS].load)
    assert (await c.post(simple("br-1", 2, er()))).status == 401


def test_tokens_are_random_and_stored_as_digests(tmp_path):
    a, b = auth.new_token()[1], auth.new_token()[1]
    assert a != b and len(a.split("_", 2)[2]) == 43  # 256 bits, url-safe base64
    book = auth.TokenBook()
    from collector.store import Store

    store = Store(tmp_path / "t.db")
    store.open()
    try:
        token_id, token = store.write_sync(auth.add, "br-1", 1.0)
        stored = store.read_sync(
            lambda conn: conn.execute("SELECT digest FROM tokens").fetchone()[0]
        )
        assert stored == auth.digest(token) and token.encode() not in stored
        store.read_sync(book.load)
        assert book.verify(token) == "br-1"
        assert book.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    finally:
        store.close()


async def test_rate_limit_is_per_agent(start_collector):
    c = await start_collector(ingest={"rate_per_agent_per_s": 0.01, "burst_per_agent": 2})
    assert (await c.post(simple("br-1", 1, er()))).status == 201
    assert (await c.post(simple("br-1", 2, er()))).status == 201
    resp = await c.post(simple("br-1", 3, er()))
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    assert (await c.post(simple("br-2", 1, er()))).status == 201


# --------------------------------------------------------------------------- bad input


async def _raw(c, body: bytes, **headers: str):
    token = await c.token("br-1")
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers}
    return await c.client.post(f"{API}/reports", data=body, headers=h)


async def test_bad_bodies_get_a_clear_4xx_and_nothing_is_stored(start_collector):
    c = await start_collector(server={"body_limit_bytes": 64 * 1024})
    good = simple("br-1", 1, er())
    missing = {k: v for k, v in good.items() if k != "seq"}
    wrong_type = {**good, "seq": "one"}
    bad_result = report("br-1", 1, [{**result("t", er()), "port": -1, "address": "not-an-ip"}])
    cases = [
        (b"{not json", {}, 400, "body", "not JSON"),
        (b"", {}, 400, "body", "empty"),
        (b"\xff\xfe", {}, 400, "body", "UTF-8"),
        (b"[" * 30_000 + b"]" * 30_000, {}, 400, "body", "nested too deeply"),
        (b"not gzip", {"Content-Encoding": "gzip"}, 400, "body", "gzip"),
        (gzip.compress(b"{}")[:-6], {"Content-Encoding": "gzip"}, 400, "body", "truncated"),
        (
            json.dumps(good).encode(),
            {"Content-Type": "text/plain"},
            415,
            "header/Content-Type",
            "application/json",
        ),
        (
            json.dumps(good).encode(),
            {"Content-Encoding": "br"},
            415,
            "header/Content-Encoding",
            "gzip",
        ),
        (b" " * (65 * 1024), {}, 413, "body", "larger"),
        (
            gzip.compress(b" " * (2 * 1024 * 1024)),
            {"Content-Encoding": "gzip"},
            413,
            "body",
            "larger",
        ),
        (json.dumps(missing).encode(), {}, 422, "/seq", "required"),
        (json.dumps(wrong_type).encode(), {}, 422, "/seq", "integer"),
        (json.dumps([good]).encode(), {}, 422, "/", "object"),
        (json.dumps(bad_result).encode(), {}, 422, "/results/0/port", "non-negative"),
        (json.dumps({**good, "extra": 1}).encode(), {}, 422, "/extra", "not a known field"),
    ]
    for body, headers, status, field, words in cases:
        resp = await _raw(c, body, **headers)
        assert resp.status == status, (field, words, await resp.text())
        assert resp.content_type == PROBLEM
        problem = await resp.json()
        assert problem["status"] == status and problem["type"].startswith("https://")
        assert any(e["field"] == field and words in e["message"] for e in problem["errors"]), (
            problem
        )
    for table in ("agents", "observations", "paths", "events", "traces"):
        assert await _count(c, table) == 0, table
    assert c.registry.get_sample_value(
        "erpath_reports_received_total", {"result": "rejected"}
    ) == len(cases)
    # The process is still fine.
    assert (await c.post(good)).status == 201


async def test_unknown_schema_version_lists_the_supported_ones(start_collector):
    c = await start_collector()
    resp = await c.post({**simple("br-1", 1, er()), "schema": "erpath.report/9"})
    assert resp.status == 422
    problem = await resp.json()
    assert problem["supported_schemas"] == ["erpath.report/1", "erpath.report/2"]
    assert (
        problem["errors"][0]["field"] == "/schema"
        and "erpath.report/1, erpath.report/2" in problem["errors"][0]["message"]
    )


async def test_identity_and_time_are_checked_on_ingest(start_collector):
    # The compiled fast path that once fronted the decoder let these through.
    c = await start_collector()
    good = simple("br-1", 1, er())
    for key, value in (
        ("id", "not-a-uuid"),
        ("started_at", "yesterday"),
        ("started_at", "2026-W01-1"),
        ("started_at", "2026-02-30T10:00:00Z"),
    ):
        resp = await c.post({**good, key: value})
        assert resp.status == 422 and resp.content_type == PROBLEM, (key, value)
        problem = await resp.json()
        assert "supported_schemas" not in problem
        assert [e["field"] for e in problem["errors"]] == [f"/{key}"], problem
        assert repr(value) in problem["errors"][0]["message"]
    assert await _count(c, "observations") == 0
    assert (await c.post(good)).status == 201


async def test_nan_and_infinity_are_not_json(start_collector):
    c = await start_collector()
    for number in (float("nan"), float("inf")):
        body = json.dumps({**simple("br-1", 1, er()), "duration_s": number}).encode()
        resp = await _raw(c, body)
        assert resp.status == 400 and resp.content_type == PROBLEM
        (error,) = (await resp.json())["errors"]
        assert error["field"] == "body" and json.dumps(number) in error["message"]


def _as_report_1(doc):
    """The document as an agent of erpath.report/1 sends it: evidence as sentences."""
    doc = json.loads(json.dumps(doc))
    doc["schema"] = "erpath.report/1"
    for res in doc["results"]:
        for holder in [res["verdict"], *res["findings"]]:
            holder["evidence"] = [e["text"] for e in holder["evidence"]]
    return doc


async def test_a_report_1_agent_is_accepted_and_its_evidence_kept_as_notes(start_collector):
    c = await start_collector()
    doc = _as_report_1(simple("br-1", 1, er()))
    resp = await c.post(doc)
    assert resp.status == 201, await resp.text()
    (path,) = (await c.get(f"{API}/paths"))["paths"]
    assert path["path"].startswith("expressroute/ams-1")
    sentence = doc["results"][0]["verdict"]["evidence"][0]
    assert path["verdict"]["evidence"] == [sentence]
    # What is stored for the read API is the current shape: evidence as a note.
    (stored,) = await c.app[STORE].read(queries.traces, "br-1", "api.powerapps.com")
    (evidence,) = stored["results"][0]["verdict"]["evidence"]
    assert evidence["kind"] == "note" and evidence["text"] == sentence
    bad = _as_report_1(simple("br-1", 2, er()))
    bad["results"][0]["verdict"]["evidence"] = [{"kind": "note", "text": "x"}]
    resp = await c.post(bad)
    assert resp.status == 422
    assert (await resp.json())["errors"] == [
        {"field": "/results/0/verdict/evidence/0", "message": "must be a string"}
    ]


async def test_unknown_routes_and_methods_are_problems(start_collector):
    c = await start_collector()
    resp = await c.client.get("/nope")
    assert resp.status == 404 and resp.content_type == PROBLEM
    resp = await c.client.get(f"{API}/reports")
    assert resp.status == 405 and resp.content_type == PROBLEM and "POST" in resp.headers["Allow"]
    resp = await c.client.get(f"{API}/events", params={"since": "yesterday"})
    assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "query/since"
    resp = await c.client.get(f"{API}/paths", params={"colour": "red"})
    assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "query/colour"
