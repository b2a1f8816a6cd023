"""Alert delivery: Alertmanager API v2 and generic webhooks, with retry.

The store holds every alert with a `version`; each receiver's acknowledged
version is kept in `alert_receipts`.  A delivery loop sends what a receiver
has not acknowledged yet and, for Alertmanager, re-sends firing alerts every
`resend_interval_s` (before Alertmanager's resolve timeout; this is also what
brings alerts back after an Alertmanager restart).  A failed delivery is
retried with exponential backoff; nothing is marked delivered until the
receiver answered 2xx, and the state survives a collector restart, so no
alert is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from collector import webhook
from collector.config import AlertsConfig
from collector.metrics import Instruments
from collector.queries import iso
from collector.store import Store

log = logging.getLogger(__name__)

MAX_BATCH = 500


@dataclass(slots=True)
class Receiver:
    name: str
    url: str
    kind: str  # alertmanager | webhook
    backoff_s: float = 0.0
    next_attempt_s: float = 0.0
    last_error: str | None = None

    @property
    def resends(self) -> bool:
        return self.kind == "alertmanager"


def receivers(cfg: AlertsConfig) -> list[Receiver]:
    out = [
        Receiver(url, url.rstrip("/") + "/api/v2/alerts", "alertmanager")
        for url in cfg.alertmanager_urls
    ]
    out += [Receiver(url, url, "webhook") for url in cfg.webhook_urls]
    return out


def due(
    conn: sqlite3.Connection,
    receiver: str,
    resends: bool,
    now_s: float,
    resend_interval_s: float,
    horizon_s: float,
) -> list[tuple[Any, ...]]:
    """Alerts the receiver must get now: unacknowledged changes, and firing ones due a re-send.

    A new (or renamed) receiver gets what is firing, not 90 days of resolved
    alerts: a resolution goes to a receiver that heard the alert fire, or that
    was configured when it resolved (it may have missed the firing in an outage).
    """
    out = []
    row = conn.execute("SELECT since_s FROM alert_receivers WHERE name = ?", (receiver,)).fetchone()
    since_s = now_s if row is None else row[0]
    for row in conn.execute(
        "SELECT a.fingerprint, a.labels, a.annotations, a.starts_s, a.ends_s, a.version, r.version, r.sent_s"
        " FROM alerts a LEFT JOIN alert_receipts r ON r.receiver = ? AND r.fingerprint = a.fingerprint"
        " WHERE a.ends_s IS NULL OR (a.ends_s >= ? AND (r.version IS NOT NULL OR a.ends_s >= ?))",
        (receiver, now_s - horizon_s, since_s),
    ):
        fp, _labels, _notes, starts_s, ends_s, version, acked, sent_s = row
        if acked != version or (
            resends and ends_s is None and now_s - (sent_s or 0) >= resend_interval_s
        ):
            out.append(row)
        if len(out) >= MAX_BATCH:
            break
    return out


def register(conn: sqlite3.Connection, names: list[str], now_s: float) -> None:
    """Receivers configured now and never before date from now."""
    conn.executemany(
        "INSERT INTO alert_receivers(name, since_s) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
        [(name, now_s) for name in names],
    )


def mark_sent(
    conn: sqlite3.Connection, receiver: str, sent: list[tuple[str, int]], now_s: float
) -> None:
    conn.executemany(
        "INSERT INTO alert_receipts(receiver, fingerprint, version, sent_s) VALUES (?,?,?,?)"
        " ON CONFLICT(receiver, fingerprint) DO UPDATE SET version=excluded.version,"
        " sent_s=excluded.sent_s WHERE alert_receipts.version <= excluded.version",
        [(receiver, fp, version, now_s) for fp, version in sent],
    )


class AlertSender:
    def __init__(
        self,
        store: Store,
        cfg: AlertsConfig,
        instruments: Instruments,
        clock: Callable[[], float],
        retention_s: float,
        *,
        confirm: Callable[[], Awaitable[bool]] | None = None,
        poll_s: float | None = None,
    ):
        self.store = store
        self.cfg = cfg
        self.instruments = instruments
        self.clock = clock
        self.retention_s = retention_s
        self.receivers = receivers(cfg)
        # Asked before each batch goes out: does this replica still lead?  (collector/leader.py)
        self.confirm = confirm
        # With several replicas a change made by another one pokes nobody here: look this often.
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        for r in self.receivers:
            for result in ("success", "failure"):
                instruments.alert_deliveries.labels(r.name, result)

    @property
    def alive(self) -> bool:
        """False once the delivery task ended on its own (not stopped, never started)."""
        return self._task is None or not self._task.done()

    def poke(self) -> None:
        """Something changed: deliver now rather than at the next tick."""
        self._wake.set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s)
        )
        if self.receivers:
            await self.store.write(register, [r.name for r in self.receivers], self.clock())
            self._task = asyncio.create_task(self._run(), name="erpath-alert-sender")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None  # stopped, not dead: a replica that leads again starts it anew
        if self._session:
            await self._session.close()
            self._session = None

    def _body(self, r: Receiver, rows: list[tuple[Any, ...]], now_s: float) -> Any:
        alerts = []
        for fp, labels, notes, starts_s, ends_s, version, *_ in rows:
            ann = json.loads(notes)
            if r.kind == "alertmanager":
                # A firing alert's endsAt lies a few re-sends ahead: if the collector
                # dies, Alertmanager resolves it rather than keeping it forever.
                ends = ends_s if ends_s is not None else now_s + 4 * self.cfg.resend_interval_s
                alerts.append(
                    {
                        "labels": json.loads(labels),
                        "annotations": ann,
                        "startsAt": iso(starts_s),
                        "endsAt": iso(ends),
                        "generatorURL": ann.get("dashboard_url", ""),
                    }
                )
            else:
                alerts.append(
                    {
                        "status": "firing" if ends_s is None else "resolved",
                        "fingerprint": fp,
                        "labels": json.loads(labels),
                        "annotations": ann,
                        "startsAt": iso(starts_s),
                        "endsAt": iso(ends_s),
                        # (fingerprint, version) names one state change: a receiver can drop
                        # the rare second copy (see docs/collector.md, several collectors).
                        "version": version,
                    }
                )
        return alerts if r.kind == "alertmanager" else webhook.payload(alerts)

    async def deliver(self, r: Receiver) -> bool:
        """One delivery round to one receiver; True when it is up to date."""
        now_s = self.clock()
        rows = await self.store.read_internal(
            due, r.name, r.resends, now_s, self.cfg.resend_interval_s, self.retention_s
        )
        if not rows:
            return True
        if self.confirm is not None and not await self.confirm():
            return True  # no longer the leader: send nothing; the new leader reads the receipts
        assert self._session is not None
        try:
            async with self._session.post(r.url, json=self._body(r, rows, now_s)) as resp:
                if resp.status >= 300:
                    text = (await resp.text())[:200]
                    raise RuntimeError(f"HTTP {resp.status}: {text}")
        except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
            r.backoff_s = min(
                self.cfg.backoff_max_s, max(self.cfg.backoff_initial_s, r.backoff_s * 2)
            )
            r.next_attempt_s = self.clock() + r.backoff_s
            r.last_error = str(exc) or type(exc).__name__
            self.instruments.alert_deliveries.labels(r.name, "failure").inc()
            log.warning(
                "alert delivery to %s failed (%s); retry in %.1f s",
                r.name,
                r.last_error,
                r.backoff_s,
            )
            return False
        # Acknowledged: record it even if this task is being stopped (leadership lost), so
        # the next leader does not send it again.  Only a death between the receiver's 2xx
        # and this commit re-sends it (at least once, never lost).
        await asyncio.shield(
            self.store.write(mark_sent, r.name, [(row[0], row[5]) for row in rows], now_s)
        )
        r.backoff_s = 0.0
        r.next_attempt_s = 0.0
        r.last_error = None
        self.instruments.alert_deliveries.labels(r.name, "success").inc()
        return len(rows) < MAX_BATCH

    async def _run(self) -> None:
        tick_s = min(self.cfg.resend_interval_s / 4, 5.0, self.poll_s or 5.0)
        while True:
            self._wake.clear()
            now_s = self.clock()
            ready = [r for r in self.receivers if now_s >= r.next_attempt_s]
            try:
                results = await asyncio.gather(*(self.deliver(r) for r in ready))
            except Exception:  # a bug or a store failure: keep the loop alive
                log.exception("alert delivery round failed")
                results = [True]
            if not all(results) and any(r.next_attempt_s == 0 for r in ready):
                continue  # more than one batch waiting
            waits = [r.next_attempt_s - self.clock() for r in self.receivers if r.next_attempt_s]
            timeout = max(0.05, min([tick_s, *waits]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
