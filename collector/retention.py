"""Pruning: observations after 14 days, events and traces of changes after 90,
layouts no observation uses, sites no agent reports for.

Observation rows are append-only in receive order, so the cut-off is found by
bisecting on their insertion order (SQLite's rowid, PostgreSQL's id) instead
of paying for a time index on the largest table.  Each call deletes in
bounded chunks so one prune never holds the writer long.

A layout's last use is learnt from the observations appended since the last
prune (a watermark on that order), not from an index on the largest table: a
layout last used a day before the oldest observation kept is used by none
(rows are appended in receive order, give or take a group commit).

On PostgreSQL several writers append at once and an id is taken before its
transaction commits, so a row may become visible below the watermark: the
watermark stays `WATERMARK_LAG_S` behind (those rows are scanned again next
time), and a layout is never deleted while an observation above the
watermark uses it (one statement, one snapshot: a layout and its first
observation commit together).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector import dialect
from collector.config import StoreConfig
from collector.dialect import Connection

DAY_S = 86400.0
CHUNK_ROWS = 50_000
# PostgreSQL: observations this recent are scanned again at the next prune (no write
# transaction stays open that long).
WATERMARK_LAG_S = 600.0


@dataclass(slots=True)
class Pruned:
    observations: int = 0
    events: int = 0
    traces: int = 0
    alerts: int = 0
    layouts: int = 0
    sites: int = 0

    @property
    def total(self) -> int:
        return (
            self.observations + self.events + self.traces + self.alerts + self.layouts + self.sites
        )


def _first_rowid_at_or_after(conn: Connection, cutoff_s: float) -> int | None:
    """The rowid (id) below which every observation is older than the cut-off."""
    rid = dialect.observation_id(conn)
    lo, hi = conn.execute(f"SELECT min({rid}), max({rid}) FROM observations").fetchone()
    if lo is None:
        return None
    hi += 1  # "every row is old"
    while lo < hi:
        mid = (lo + hi) // 2
        rowid, received_s = conn.execute(
            f"SELECT {rid}, received_s FROM observations WHERE {rid} >= ? ORDER BY {rid} LIMIT 1",
            (mid,),
        ).fetchone()
        if received_s >= cutoff_s:
            hi = mid
        else:
            lo = rowid + 1
    return lo


def prune(conn: Connection, cache: dict[str, Any], now_s: float, cfg: StoreConfig) -> Pruned:
    out = Pruned()
    cut = _first_rowid_at_or_after(conn, now_s - cfg.observations_retention_days * DAY_S)
    rid = dialect.observation_id(conn)
    if cut is not None:
        out.observations = conn.execute(
            f"DELETE FROM observations WHERE {rid} IN (SELECT {rid} FROM observations"
            f" WHERE {rid} < ? ORDER BY {rid} LIMIT ?)",
            (cut, CHUNK_ROWS),
        ).rowcount
    out.events = conn.execute(
        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at_s < ? ORDER BY at_s LIMIT ?)",
        (now_s - cfg.events_retention_days * DAY_S, CHUNK_ROWS),
    ).rowcount
    out.traces = conn.execute(
        "DELETE FROM traces WHERE id IN (SELECT id FROM traces WHERE received_s < ? ORDER BY id LIMIT ?)",
        (now_s - cfg.traces_retention_days * DAY_S, CHUNK_ROWS),
    ).rowcount
    old = now_s - cfg.alerts_retention_days * DAY_S
    out.alerts = conn.execute(
        "DELETE FROM alerts WHERE ends_s IS NOT NULL AND ends_s < ?", (old,)
    ).rowcount
    conn.execute(
        "DELETE FROM alert_receipts WHERE fingerprint NOT IN (SELECT fingerprint FROM alerts)"
    )
    out.layouts = _prune_layouts(conn, cache, now_s)
    out.sites = conn.execute(
        "DELETE FROM sites WHERE name NOT IN (SELECT site FROM agents)"
    ).rowcount
    return out


def _note_layout_use(conn: Connection, now_s: float) -> int:
    """Each layout's last use, from the observations appended since the watermark;
    return the watermark."""
    rid = dialect.observation_id(conn)
    (mark,) = conn.execute("SELECT value FROM marks WHERE name='layouts_scanned_rowid'").fetchone()
    (top,) = conn.execute(f"SELECT coalesce(max({rid}), 0) FROM observations").fetchone()
    if top <= mark:
        return mark
    conn.execute(
        "UPDATE layouts SET last_used_s = u.last_s FROM (SELECT layout_ref, max(received_s)"
        f" AS last_s FROM observations WHERE {rid} > ? AND {rid} <= ? GROUP BY layout_ref) AS u"
        " WHERE u.layout_ref = layouts.ref AND (last_used_s IS NULL OR last_used_s < u.last_s)",
        (mark, top),
    )
    if dialect.of(conn) == dialect.POSTGRESQL:
        (top,) = conn.execute(
            "SELECT coalesce(max(id), ?) FROM observations WHERE id > ? AND id <= ?"
            " AND received_s < ?",
            (mark, mark, top, now_s - WATERMARK_LAG_S),
        ).fetchone()
    conn.execute("UPDATE marks SET value=? WHERE name='layouts_scanned_rowid'", (top,))
    return top


def _prune_layouts(conn: Connection, cache: Any, now_s: float) -> int:
    mark = _note_layout_use(conn, now_s)
    rid = dialect.observation_id(conn)
    oldest = conn.execute(f"SELECT received_s FROM observations ORDER BY {rid} LIMIT 1").fetchone()
    # No observation at all: every layout is unused.  NULL: never used by a committed row.
    horizon = float("inf") if oldest is None else oldest[0] - DAY_S
    gone = conn.execute(
        "DELETE FROM layouts WHERE ref IN (SELECT ref FROM layouts"
        " WHERE (last_used_s IS NULL OR last_used_s < ?) AND NOT EXISTS (SELECT 1 FROM"
        f" observations o WHERE o.{rid} > ? AND o.layout_ref = layouts.ref) LIMIT ?)",
        (horizon, mark, CHUNK_ROWS),
    ).rowcount
    if gone:
        # The ingest caches digest -> ref; a deleted ref may be handed out again.
        cache.pop("layouts", None)
    return gone
