"""A report whose write rolls back must not leave its layout's row id in the writer's cache.

Reports share *layouts* (store.py): the writer caches digest -> row id.  When a
job inserted a new layout and then failed, its savepoint rolled the row back,
SQLite handed the same id to the next new layout, and the next report with the
first layout was stored pointing at the second: its observations decoded with
another report's targets and classes (issue 14, item 8).
"""

from __future__ import annotations

import json
import time

import pytest

from agent.report import report_from_dict
from collector import ingest
from collector.alertrules import Links
from collector.store import Store
from tests.collector.reports import er, inet, simple

pytestmark = pytest.mark.timeout(60)
SETTINGS = ingest.Settings(2, Links("https://rb", "https://dash"), 30.0)


class Injected(Exception):
    """The failure after the layout insert (a constraint, a bug, a full disk in a savepoint)."""


def _prepared(doc):
    return ingest.prepare(doc, report_from_dict(doc), json.dumps(doc).encode())


def _apply_then_fail(conn, cache, prepared, now_s, settings):
    ingest.apply(conn, cache, prepared, now_s, settings)
    assert conn.execute("SELECT count(*) FROM layouts").fetchone()[0] == 1  # it was inserted
    raise Injected


def _stored(conn, agent):
    """(seq, targets and classes decoded from its layout) of each observation of the agent."""
    return [
        (seq, [(o["target"], o["class"]) for o in ingest.decode(body, times)])
        for seq, body, times in conn.execute(
            "SELECT o.seq, l.body, o.times FROM observations o JOIN layouts l ON l.ref=o.layout_ref"
            " JOIN agents a ON a.ref=o.agent_ref WHERE a.id=? ORDER BY o.seq",
            (agent,),
        )
    ]


def test_a_rolled_back_layout_is_not_reused_from_the_cache(tmp_path):
    store = Store(tmp_path / "c.db")
    store.open()
    now = time.time()
    try:
        first = _prepared(simple("br-1", 1, er(), target="api.powerapps.com"))
        with pytest.raises(Injected):
            store.write_sync(_apply_then_fail, store.cache, first, now, SETTINGS)
        # Another agent's report with another layout takes the freed row id.
        other = _prepared(simple("br-2", 1, inet(), target="make.powerapps.com"))
        store.write_sync(ingest.apply, store.cache, other, now, SETTINGS)
        # The first agent retries: its layout must be stored again, not taken from the cache.
        retry = _prepared(simple("br-1", 1, er(), target="api.powerapps.com"))
        store.write_sync(ingest.apply, store.cache, retry, now + 1, SETTINGS)
        assert store.read_sync(_stored, "br-1") == [(1, [("api.powerapps.com", "expressroute")])]
        assert store.read_sync(_stored, "br-2") == [(1, [("make.powerapps.com", "internet")])]
    finally:
        store.close()
