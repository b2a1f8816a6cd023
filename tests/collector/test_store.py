"""The store: migrations, group commit isolation, compact rows, retention."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from agent.report import report_from_dict
from collector import ingest, queries, retention
from collector.alertrules import Links, fingerprint
from collector.config import StoreConfig
from collector.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError

from .reports import SITE_FACTS, er, inet, report, result

SETTINGS = ingest.Settings(2, Links("https://rb", "https://dash"), 30.0)
DAY = 86400.0

# Tests of the `store` fixture run on SQLite and on PostgreSQL (conftest.py).
pytestmark = pytest.mark.both_backends


def _ingest(store: Store, doc: dict, at_s: float) -> ingest.Outcome:
    body = json.dumps(doc).encode()
    return store.write_sync(
        ingest.apply, store.cache, ingest.prepare(doc, report_from_dict(doc), body), at_s, SETTINGS
    )


@pytest.fixture
def store(open_store):
    return open_store


def test_migrations_are_versioned_and_reopen_cleanly(tmp_path):
    for _ in range(2):
        s = Store(tmp_path / "m.db")
        s.open()
        assert (
            s.read_sync(lambda c: c.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION
        )
        assert s.read_sync(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
        s.close()
    conn = sqlite3.connect(tmp_path / "m.db")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this collector"):
        Store(tmp_path / "m.db").open()


def test_a_failing_job_rolls_back_alone(store):
    def good(conn, n):
        conn.execute(
            "INSERT INTO sites(name, facts, from_agent, updated_s) VALUES (?, '{}', 'a', 0)", (n,)
        )

    def bad(conn):
        conn.execute(
            "INSERT INTO sites(name, facts, from_agent, updated_s) VALUES ('bad', '{}', 'a', 0)"
        )
        raise RuntimeError("boom")

    futures = [store.submit(good, "s1"), store.submit(bad), store.submit(good, "s2")]
    assert futures[0].result() is None and futures[2].result() is None
    with pytest.raises(RuntimeError):
        futures[1].result()
    names = store.read_sync(
        lambda c: [r[0] for r in c.execute("SELECT name FROM sites ORDER BY name")]
    )
    assert names == ["s1", "s2"]


def test_observation_rows_are_compact_and_decode(store):
    doc = report(
        "br-1", 1, [result("a", er(), connect_s=0.0123), result("b", inet(), connect_s=7.5)]
    )
    _ingest(store, doc, 1000.0)
    (row,) = store.read_sync(queries.observations, "br-1")
    a, b = row["targets"]
    assert (
        a["target"],
        a["class"],
        a["circuit"],
        a["link"],
        a["connect_s"],
        a["dns_s"],
        a["hops"],
    ) == ("a", "expressroute", "ams-1", "primary", 0.0123, 0.004, 3)
    assert b["egress"] == "ams-inet" and b["connect_s"] == 6.5534  # saturates, never wraps
    size = store.read_sync(
        lambda c: c.execute("SELECT length(times) FROM observations").fetchone()[0]
    )
    assert size == 8  # 4 bytes per target
    # A second report with the same paths shares the layout row.
    _ingest(store, report("br-1", 2, [result("a", er()), result("b", inet())]), 1030.0)
    assert store.read_sync(lambda c: c.execute("SELECT count(*) FROM layouts").fetchone()[0]) == 1


def test_traces_are_stored_only_when_the_signature_changes(store):
    for seq, asns in enumerate([(1, 2), (1, 2), (1, 2), (1, 3), (1, 3)], start=1):
        _ingest(store, report("br-1", seq, [result("a", er(), asns=asns)]), 1000.0 + seq)
    sigs = [t["signature"] for t in store.read_sync(queries.traces, "br-1", "a")]
    assert sigs == ["as:1 2", "as:1 3"]


def test_retention_prunes_old_rows(store):
    now = 100 * DAY
    for seq, age_days in enumerate([20, 16, 13, 1], start=1):
        _ingest(
            store,
            report("br-1", seq, [result("a", er() if seq % 2 else inet())]),
            now - age_days * DAY,
        )
    store.write_sync(
        lambda c: c.execute(
            "INSERT INTO events(at_s, kind, severity, summary, evidence) VALUES (?, 'x', 'info', 'old', '[]')",
            (now - 95 * DAY,),
        )
    )
    pruned = store.write_sync(retention.prune, store.cache, now, StoreConfig())
    assert pruned.observations == 2 and pruned.events == 1
    seqs = [o["seq"] for o in store.read_sync(queries.observations, "br-1")]
    assert seqs == [4, 3]
    # Current paths are never pruned.
    assert len(store.read_sync(queries.paths, {})) == 1


def _schema_2_database(path) -> None:
    """A database as the collector before issue 13 left it: the link in the path identity."""
    conn = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:2]:
        for stmt in step.split(";"):
            if stmt.strip():
                conn.execute(stmt)
    conn.execute("PRAGMA user_version=2")
    conn.execute(
        "INSERT INTO agents(ref, id, site, role, version, hostname, last_seq, first_seen_s,"
        " last_seen_s) VALUES (1, 'br-1', 'ams', 'branch', '0.1', 'br-1', 4, 0, 0)"
    )
    path_row = (
        "INSERT INTO paths(agent_ref, target, role, class, circuit, link, egress, addresses,"
        " signature, evidence, since_s, last_seq, last_received_s, candidate, flips_total)"
        " VALUES (1, ?, 'api', ?, ?, ?, ?, '[]', '', '[]', 0, 4, 0, ?, 1)"
    )
    link_only = {
        "key": {"class": "expressroute", "circuit": "ams-1", "link": "secondary", "egress": None},
        "count": 1,
        "first_received_s": 0,
        "address": None,
    }
    conn.execute(path_row, ("a", "expressroute", "ams-1", "primary", None, json.dumps(link_only)))
    conn.execute(path_row, ("b", "internet", None, None, "ams-inet", None))

    def flip(target: str, frm: str, to: str) -> str:
        labels = {
            "alertname": "ErpathRouteFlip",
            "site": "ams",
            "agent": "br-1",
            "target": target,
            "from": frm,
            "to": to,
            "severity": "critical",
        }
        fp = fingerprint(labels)
        conn.execute(
            "INSERT INTO alerts(fingerprint, alertname, site, agent, target, labels, annotations,"
            " starts_s, version, updated_s) VALUES (?, 'ErpathRouteFlip', 'ams', 'br-1', ?, ?,"
            " '{}', 0, 1, 0)",
            (fp, target, json.dumps(labels, sort_keys=True)),
        )
        return fp

    flip("a", "expressroute/ams-1/secondary", "expressroute/ams-1/primary")
    flip("b", "expressroute/ams-1/primary", "internet")
    conn.close()


def test_upgrade_drops_link_only_flips_and_keeps_real_ones_firing(tmp_path):
    """The link left the path identity: a link-only flip alert was a false alarm and is
    resolved; a real one keeps its labels (nothing fires again) and still resolves on return."""
    db = tmp_path / "old.db"
    _schema_2_database(db)
    s = Store(db)
    s.open()
    try:
        rows = s.read_sync(
            lambda c: c.execute(
                "SELECT target, ends_s, version, labels FROM alerts ORDER BY target"
            ).fetchall()
        )
        (_, a_ends, a_version, _), (_, b_ends, b_version, b_labels) = rows
        assert a_ends is not None and a_version == 2  # resolved: receivers hear it
        assert b_ends is None and b_version == 1  # untouched: no new alert anywhere
        assert json.loads(b_labels)["from"] == "expressroute/ams-1/primary"
        paths = {p["target"]: p for p in s.read_sync(queries.paths, {})}
        assert paths["a"]["pending"] is None  # the link-only candidate is gone
        assert paths["a"]["path"] == "expressroute/ams-1"
        assert paths["b"]["flip_origin"] == "expressroute/ams-1"

        # Back on ams-1 (any link): the old flip resolves, no new flip alert fires.
        doc = lambda seq: report("br-1", seq, [result("b", er(link="secondary"))])  # noqa: E731
        _ingest(s, doc(5), 10.0)
        out = _ingest(s, doc(6), 11.0)
        assert out.flips == 1
        firing = s.read_sync(
            lambda c: c.execute("SELECT count(*) FROM alerts WHERE ends_s IS NULL").fetchone()[0]
        )
        assert firing == 0
        assert s.read_sync(queries.paths, {"target": "b"})[0]["flip_origin"] is None
    finally:
        s.close()


def test_writer_caches_are_per_thread_and_a_removal_empties_them_all():
    """PostgreSQL's writers cache row ids each for itself; a prune on one (it pops the
    layouts) must not leave another writer holding a deleted layout's id."""
    from collector.store import PerThreadCache

    cache = PerThreadCache()
    cache.setdefault("layouts", {})[b"digest"] = 7
    seen: dict[str, object] = {}

    def other_writer() -> None:
        seen["own"] = dict(cache)  # nothing of the first thread's
        cache.setdefault("layouts", {})[b"other"] = 8
        cache.pop("layouts", None)  # a prune

    t = threading.Thread(target=other_writer)
    t.start()
    t.join()
    assert seen["own"] == {}
    assert dict(cache) == {}


def test_the_metrics_snapshot_lists_every_circuit_of_the_sites_facts(store):
    """The one query whose SQL differs per dialect (JSON of the sites' facts)."""
    _ingest(store, report("br-1", 1, [result("a", er())]), 1000.0)
    _ingest(store, report("br-2", 1, [result("a", inet())], site="dub", facts={}), 1000.0)
    snap = store.read_sync(queries.snapshot)
    names = [c["name"] for c in SITE_FACTS["circuits"]]
    assert sorted((site, circuit) for site, circuit, *_ in snap.circuits) == [
        ("ams", n) for n in sorted(names)
    ]
    assert {(a[0], a[1]) for a in snap.agents} == {("br-1", "ams"), ("br-2", "dub")}
