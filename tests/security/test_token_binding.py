"""A token speaks for one agent, one site and one role (issue 14, item 4).

Before, a token was bound to the agent id only: any agent could send its
reports with another site's name and overwrite that site's circuits and NAT
facts, or file asymmetries for it.  Now `token add AGENT --site SITE --role
ROLE` binds both, and a token issued before the upgrade (no site, no role) is
bound by its first report after it, with a log line: no fleet-wide re-issue.
"""

from __future__ import annotations

import copy
import json
import logging
import sqlite3
import time

from collector import auth
from collector.keys import STORE, TOKENS
from collector.store import MIGRATIONS
from tests.collector.conftest import make_config, start_collector  # noqa: F401 - fixture
from tests.collector.reports import er, simple

API = "/api/v1"


async def _token(c, agent: str, site: str | None, role: str | None) -> str:
    store = c.app[STORE]
    _, token = await store.write(auth.add, agent, time.time(), site, role)
    await store.read(c.app[TOKENS].load)
    return token


async def _post(c, token: str, doc: dict):
    return await c.client.post(
        f"{API}/reports", json=doc, headers={"Authorization": f"Bearer {token}"}
    )


async def _site_facts(c, site: str):
    return await c.app[STORE].read(
        lambda conn: conn.execute("SELECT from_agent FROM sites WHERE name=?", (site,)).fetchone()
    )


async def test_a_token_bound_to_a_site_and_role_cannot_report_for_another(start_collector):  # noqa: F811
    c = await start_collector()
    token = await _token(c, "br-1", "ams", "branch")
    assert (await _post(c, token, simple("br-1", 1, er(), site="ams"))).status == 201
    resp = await _post(c, token, simple("br-1", 2, er(), site="fra"))
    assert resp.status == 403
    problem = await resp.json()
    assert resp.content_type == "application/problem+json"
    assert problem["errors"] == [
        {"field": "/agent/site", "message": "must be 'ams', the token's site"}
    ]
    assert "--site SITE --role ROLE" in problem["detail"]
    doc = simple("br-1", 3, er(), site="ams")
    doc["agent"]["role"] = "datacenter"
    resp = await _post(c, token, doc)
    assert resp.status == 403
    assert (await resp.json())["errors"][0]["field"] == "/agent/role"
    assert await _site_facts(c, "fra") is None  # nothing of the other site was touched


def _v3_database(path) -> tuple[str, str]:
    """A database as the collector before this change left it (schema 3), with one token."""
    conn = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:3]:
        if callable(step):
            step(conn)
        else:
            for stmt in step.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
    conn.execute("PRAGMA user_version=3")
    token_id, token = auth.new_token()
    conn.execute(
        "INSERT INTO tokens(id, agent_id, digest, created_s) VALUES (?,?,?,?)",
        (token_id, "br-1", auth.digest(token), time.time()),
    )
    conn.close()
    return token_id, token


async def test_a_token_from_before_the_upgrade_is_bound_by_its_first_report(
    start_collector,  # noqa: F811
    tmp_path,
    caplog,
):
    token_id, token = _v3_database(tmp_path / "collector.db")
    c = await start_collector()  # migrates the database to the current schema
    with caplog.at_level(logging.INFO, logger="collector.auth"):
        assert (await _post(c, token, simple("br-1", 1, er(), site="ams"))).status == 201
    assert any(token_id in r.getMessage() and "'ams'" in r.getMessage() for r in caplog.records)
    rows = await c.app[STORE].read(auth.rows)
    assert [(r.id, r.site, r.role) for r in rows] == [(token_id, "ams", "branch")]
    assert (await _post(c, token, simple("br-1", 2, er(), site="ams"))).status == 201
    # The in-memory book still says "unbound": the transaction's check is what holds.
    resp = await _post(c, token, simple("br-1", 3, er(), site="fra"))
    assert resp.status == 403, await resp.text()
    assert (await resp.json())["errors"][0]["field"] == "/agent/site"
    assert await _site_facts(c, "fra") is None


async def test_two_agents_of_one_site_with_different_facts_do_not_overwrite_each_other(
    start_collector,  # noqa: F811
):
    """Each agent keeps its own facts; the site keeps the facts it had, and the conflict
    is shown on both agents until their configs agree."""
    c = await start_collector()
    first = simple("br-1", 1, er())
    assert (await c.post(first)).status == 201
    other = simple("br-2", 1, er())
    other["site"] = copy.deepcopy(other["site"])
    other["site"]["internet_edges"][0]["nat_addresses"] = ["192.0.2.99"]
    assert (await c.post(other)).status == 201

    async def site_nat() -> list[str]:
        facts = await c.app[STORE].read(
            lambda conn: conn.execute("SELECT facts FROM sites WHERE name='ams'").fetchone()[0]
        )
        return json.loads(facts)["internet_edges"][0]["nat_addresses"]

    assert await site_nat() == ["192.0.2.10"]  # not overwritten by br-2
    agents = {a["agent"]: a for a in (await c.get(f"{API}/agents"))["agents"]}
    assert agents["br-1"]["site_facts_conflict"] == ["br-2"]
    assert agents["br-2"]["site_facts_conflict"] == ["br-1"]
    assert await _conflict_metric(c) == 2
    # br-1 reports again: still the same, nothing flaps.
    assert (await c.post(simple("br-1", 2, er()))).status == 201
    assert await site_nat() == ["192.0.2.10"]
    # br-2's config is fixed: the conflict is gone on both.
    assert (await c.post(simple("br-2", 2, er()))).status == 201
    agents = {a["agent"]: a for a in (await c.get(f"{API}/agents"))["agents"]}
    assert agents["br-1"]["site_facts_conflict"] == agents["br-2"]["site_facts_conflict"] == []
    assert await _conflict_metric(c) == 0


async def _conflict_metric(c) -> float:
    text = await (await c.client.get("/metrics")).text()
    (line,) = [
        ln for ln in text.splitlines() if ln.startswith('erpath_site_facts_conflict{site="ams"}')
    ]
    return float(line.split()[-1])
