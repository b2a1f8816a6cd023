"""Pruning: observations after 14 days, events and traces of changes after 90.

Observation rows are append-only in receive order, so the cut-off is found by
bisecting on rowid instead of paying for a time index on the largest table.
Each call deletes in bounded chunks so one prune never holds the writer long.
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

    @property
    def total(self) -> int:
        return self.observations + self.events + self.traces + self.alerts


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
    return out
