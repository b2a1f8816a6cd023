"""Pruning: observations after 14 days, events and traces of changes after 90,
layouts no observation uses, sites no agent reports for.

Observation rows are append-only in receive order, so the cut-off is found by
bisecting on rowid instead of paying for a time index on the largest table.
Each call deletes in bounded chunks so one prune never holds the writer long.

A layout's last use is learnt from the observations appended since the last
prune (a rowid watermark), not from an index on the largest table: a layout
last used a day before the oldest observation kept is used by none (rows are
appended in receive order, give or take a group commit).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from collector.config import StoreConfig

DAY_S = 86400.0
CHUNK_ROWS = 50_000


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


def _first_rowid_at_or_after(conn: sqlite3.Connection, cutoff_s: float) -> int | None:
    """The rowid below which every observation is older than the cut-off."""
    lo, hi = conn.execute("SELECT min(rowid), max(rowid) FROM observations").fetchone()
    if lo is None:
        return None
    hi += 1  # "every row is old"
    while lo < hi:
        mid = (lo + hi) // 2
        rowid, received_s = conn.execute(
            "SELECT rowid, received_s FROM observations WHERE rowid >= ? ORDER BY rowid LIMIT 1",
            (mid,),
        ).fetchone()
        if received_s >= cutoff_s:
            hi = mid
        else:
            lo = rowid + 1
    return lo


def prune(
    conn: sqlite3.Connection, cache: dict[str, Any], now_s: float, cfg: StoreConfig
) -> Pruned:
    out = Pruned()
    cut = _first_rowid_at_or_after(conn, now_s - cfg.observations_retention_days * DAY_S)
    if cut is not None:
        out.observations = conn.execute(
            "DELETE FROM observations WHERE rowid IN (SELECT rowid FROM observations WHERE rowid < ?"
            " ORDER BY rowid LIMIT ?)",
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
    out.layouts = _prune_layouts(conn, cache)
    out.sites = conn.execute(
        "DELETE FROM sites WHERE name NOT IN (SELECT site FROM agents)"
    ).rowcount
    return out


def _note_layout_use(conn: sqlite3.Connection) -> None:
    """Each layout's last use, from the observations appended since the watermark."""
    (mark,) = conn.execute("SELECT value FROM marks WHERE name='layouts_scanned_rowid'").fetchone()
    (top,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM observations").fetchone()
    if top <= mark:
        return
    conn.execute(
        "UPDATE layouts SET last_used_s = u.last_s FROM (SELECT layout_ref, max(received_s)"
        " AS last_s FROM observations WHERE rowid > ? AND rowid <= ? GROUP BY layout_ref) AS u"
        " WHERE u.layout_ref = layouts.ref AND (last_used_s IS NULL OR last_used_s < u.last_s)",
        (mark, top),
    )
    conn.execute("UPDATE marks SET value=? WHERE name='layouts_scanned_rowid'", (top,))


def _prune_layouts(conn: sqlite3.Connection, cache: dict[str, Any]) -> int:
    _note_layout_use(conn)
    oldest = conn.execute("SELECT received_s FROM observations ORDER BY rowid LIMIT 1").fetchone()
    # No observation at all: every layout is unused.  NULL: never used by a committed row.
    horizon = float("inf") if oldest is None else oldest[0] - DAY_S
    gone = conn.execute(
        "DELETE FROM layouts WHERE ref IN (SELECT ref FROM layouts"
        " WHERE last_used_s IS NULL OR last_used_s < ? LIMIT ?)",
        (horizon, CHUNK_ROWS),
    ).rowcount
    if gone:
        # The ingest caches digest -> ref; a deleted ref may be handed out again.
        cache.pop("layouts", None)
    return gone
