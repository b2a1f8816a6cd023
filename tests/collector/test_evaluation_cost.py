"""Evaluation cost (issue 14 item 1): a site's prefixes are parsed once per version of its
facts, and the pairing runs on a reader, never on the writer every report waits on."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from collector import evaluate
from collector.alertrules import Links
from collector.evaluate import EvalSettings, FactsCache
from collector.store import Store

from .costlysite import FORWARD_PATHS, PREFIXES, SITE, facts, seed

SETTINGS = EvalSettings(3.0, 30.0, 3600.0, Links("https://r.example", "https://d.example"))


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "c.db")
    s.open()
    yield s
    s.close()


async def test_a_costly_site_is_parsed_once_per_version_of_its_facts(store):
    now_s = time.time()
    await store.write(seed, now_s)
    cache: FactsCache = store.read_cache.setdefault("facts", FactsCache())

    out = await evaluate.run(store, now_s, SETTINGS)
    # Every reverse path pairs with every forward path over c1: one alert, all members.
    assert out.asymmetries == 1 and out.alerts_changed
    members = await store.read(
        lambda c: json.loads(c.execute("SELECT members FROM asymmetries").fetchone()[0])
    )
    assert len(members) == FORWARD_PATHS
    assert (cache.built, cache.prefixes_parsed) == (1, PREFIXES)

    # Unchanged facts (the site's agent reports again with the same ones): no parsing.
    await store.write(
        lambda c: c.execute("UPDATE sites SET updated_s = updated_s + 30 WHERE name = ?", (SITE,))
    )
    for _ in range(3):
        await evaluate.run(store, now_s + 30, SETTINGS)
    assert (cache.built, cache.prefixes_parsed) == (1, PREFIXES)

    # A new version of the facts is parsed once, then cached again.
    smaller = json.dumps(facts(1000))
    await store.write(
        lambda c: c.execute("UPDATE sites SET facts = ? WHERE name = ?", (smaller, SITE))
    )
    await evaluate.run(store, now_s + 60, SETTINGS)
    await evaluate.run(store, now_s + 65, SETTINGS)
    assert (cache.built, cache.prefixes_parsed) == (2, PREFIXES + 1000)


async def test_the_pairing_never_holds_the_writer(store, monkeypatch):
    now_s = time.time()
    await store.write(seed, now_s)
    # The pairing is held on the internal reader until the writes below are done: if it
    # held the writer too, they could not commit and would time out (no race on speed).
    pairing_started, writes_done = threading.Event(), threading.Event()
    find = evaluate.find

    def held_find(conn, s, cache=None):
        pairing_started.set()
        assert writes_done.wait(30), "the writes never finished"
        return find(conn, s, cache)

    monkeypatch.setattr(evaluate, "find", held_find)
    evaluation = asyncio.ensure_future(evaluate.run(store, now_s, SETTINGS))
    assert await asyncio.to_thread(pairing_started.wait, 10)
    # Writes queued meanwhile (reports) commit while the pairing still runs.
    for i in range(20):
        await asyncio.wait_for(
            store.write(
                lambda c, i=i: c.execute("UPDATE agents SET last_seq = ? WHERE ref = 1", (i,))
            ),
            timeout=10,
        )
    assert not evaluation.done()
    writes_done.set()
    out = await evaluation
    assert out.asymmetries == 1
