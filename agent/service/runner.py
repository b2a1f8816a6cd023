"""`erpath-agent run`: probe on an interval, on route changes, and deliver every report.

Threads and their one job each:
- the main thread schedules cycles (interval with jitter, or at once when a
  route covering a target changed, and once more a second later), measures,
  and puts each report in the spool before anything else happens to it;
- the sender drains the spool oldest first, with backoff while the
  collector is away;
- the route watcher listens to the kernel's route changes (netlink) and
  tells the scheduler which targets they touch.
Signals only set flags: SIGTERM finishes the cycle in flight (its report is
spooled) and exits 0; SIGHUP reloads the config, keeping the old one when
the new one is invalid.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import random
import signal
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agent.config import AgentConfig, ConfigError, load
from agent.cycle import ProbePlan, run_cycle
from agent.measure.dnscache import DnsCache
from agent.report import Health, to_dict
from agent.sdnotify import Notifier
from agent.service.sender import CollectorEndpoint, Sender
from agent.service.seq import next_seq, state_dir
from agent.service.spool import Spool

log = logging.getLogger("erpath.agent")

RETRIGGER_AFTER_S = 1.0
# A routing change arrives as a burst of netlink messages (one per prefix,
# then link events); waiting this long probes every affected target in one
# cycle instead of a first cycle for the first prefix's targets only.
ROUTE_SETTLE_S = 0.25
BACKOFF_MIN_S, BACKOFF_MAX_S = 1.0, 60.0


class ServiceError(Exception):
    """Bad set-up the admin must fix (unreadable or world-readable token file …)."""


def read_token(path: str) -> str:
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise ServiceError(
            f"[collector] token_file {path}: {e.strerror}; create it with the token "
            "printed by `erpath-collector token add AGENT_ID`"
        ) from None
    if st.st_mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ServiceError(
            f"[collector] token_file {path} is readable by every user (mode "
            f"{stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}"
        )
    token = p.read_text().strip()
    if not token:
        raise ServiceError(f"[collector] token_file {path} is empty; put the agent's token in it")
    return token


@dataclass(frozen=True, slots=True)
class _Setup:
    """Everything derived from one config; replaced whole on SIGHUP."""

    config: AgentConfig
    sender: Sender | None


def _setup(config: AgentConfig) -> _Setup:
    c = config.collector
    sender = None
    if c.url:
        endpoint = CollectorEndpoint(
            url=c.url,
            token=read_token(c.token_file) if c.token_file else "",
            ca_file=c.ca_file,
            client_cert=c.client_cert,
            client_key=c.client_key,
        )
        sender = Sender(endpoint)
    return _Setup(config, sender)


class AgentService:
    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self.setup = _setup(load(config_path))
        cfg = self.setup.config
        spool_dir = Path(cfg.spool.dir) if cfg.spool.dir else state_dir() / "spool"
        self.state_dir = spool_dir.parent
        self.spool = Spool(
            spool_dir, max_bytes=int(cfg.spool.max_mb * 1e6), max_age_s=cfg.spool.max_age_h * 3600
        )
        self.dns_cache = DnsCache(_resolve_many)
        self.notifier = Notifier()
        self._wake = threading.Event()
        self._send_wake = threading.Event()
        self._stop = threading.Event()
        self._reload = False
        self._lock = threading.Lock()
        self._triggered: dict[str, float] = {}  # target name -> when to probe it
        self.last_cycle_s: float | None = None
        self.metrics = None
        # Where each target resolved last: a route change covering that
        # address triggers a probe of the target.
        self._last_address: dict[str, str] = {}
        self._namer_key: tuple | None = None
        self._hop_namer = None

    # ------------------------------------------------------------------ signals

    def _on_term(self, _sig, _frame) -> None:
        self._stop.set()
        self._wake.set()
        self._send_wake.set()

    def _on_hup(self, _sig, _frame) -> None:
        self._reload = True
        self._wake.set()

    def _reload_config(self) -> None:
        self._reload = False
        try:
            self.setup = _setup(load(self.config_path))
        except (ConfigError, ServiceError) as e:
            log.error("event=reload_refused reason=%s", json.dumps(str(e)))
            return
        log.info(
            "event=reloaded config=%s targets=%d",
            self.config_path,
            len(self.setup.config.targets()),
        )

    # ------------------------------------------------------------------ route trigger

    def on_route_change(self, prefix: str) -> None:
        """Called by the route watcher: re-probe the targets this prefix covers, now and in 1 s."""
        try:
            net = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            return
        affected = [
            t.name
            for t in self.setup.config.targets()
            if (addr := self._last_address.get(t.name)) and ipaddress.ip_address(addr) in net
        ]
        if not affected:
            return
        due = time.monotonic() + ROUTE_SETTLE_S
        with self._lock:
            for name in affected:
                self._triggered.setdefault(name, due)
        # The second probe lets the collector's flip confirmation complete in seconds.
        threading.Timer(
            ROUTE_SETTLE_S + RETRIGGER_AFTER_S, self._trigger_again, args=(affected,)
        ).start()
        log.info("event=route_change prefix=%s targets=%d", prefix, len(affected))
        self._wake.set()

    def _trigger_again(self, names: list[str]) -> None:
        with self._lock:
            for name in names:
                self._triggered.setdefault(name, time.monotonic())
        self._wake.set()

    # ------------------------------------------------------------------ main loop

    def _cycle(self, targets) -> None:
        cfg = self.setup.config
        seq = next_seq(self.state_dir)
        health = Health(
            cycle_s=self.last_cycle_s,
            spool_reports=len(self.spool),
            dropped_reports_total=self.spool.dropped_total,
        )
        t0 = time.monotonic()
        report = run_cycle(
            cfg,
            ProbePlan(targets=tuple(targets)),
            seq=seq,
            interval_s=cfg.probe.interval_s,
            health=health,
            dns_cache=self.dns_cache,
            namer=self._namer(cfg),
        )
        for r in report.results:
            if r.address:
                self._last_address[r.target] = r.address
        self.last_cycle_s = time.monotonic() - t0
        self.spool.put(
            report.seq, report.id, json.dumps(to_dict(report), separators=(",", ":")).encode()
        )
        log.info(
            "event=cycle seq=%d targets=%d duration_s=%.3f spool_reports=%d",
            seq,
            len(report.results),
            self.last_cycle_s,
            len(self.spool),
        )
        if self.metrics:
            self.metrics.observe_cycle(self.last_cycle_s, len(self.spool), self.spool.dropped_total)
        self._send_wake.set()

    def _namer(self, cfg: AgentConfig):
        from agent.measure.dns import HopNamer

        key = (tuple(cfg.dns.resolvers), cfg.dns.timeout_s)
        if self._namer_key != key:
            self._namer_key, self._hop_namer = key, HopNamer(cfg.dns.resolvers, cfg.dns.timeout_s)
        return self._hop_namer

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)
        sender = threading.Thread(target=self._send_loop, name="sender", daemon=True)
        sender.start()
        self._start_watchers()
        self.notifier.ready(f"probing {len(self.setup.config.targets())} targets")
        watchdog_s = Notifier.watchdog_interval_s()
        next_full = time.monotonic()
        log.info(
            "event=started config=%s targets=%d interval_s=%s",
            self.config_path,
            len(self.setup.config.targets()),
            self.setup.config.probe.interval_s,
        )
        while not self._stop.is_set():
            if self._reload:
                self._reload_config()
            cfg = self.setup.config
            now = time.monotonic()
            with self._lock:
                due = [n for n, when in self._triggered.items() if when <= now]
                for n in due:
                    del self._triggered[n]
            if now >= next_full:
                self._cycle(cfg.targets())
                jitter = random.uniform(0, cfg.probe.jitter_s) if cfg.probe.jitter_s else 0.0
                next_full = time.monotonic() + cfg.probe.interval_s + jitter
            elif due:
                self._cycle([t for t in cfg.targets() if t.name in due])
            if watchdog_s:
                self.notifier.watchdog()
            wait = next_full - time.monotonic()
            with self._lock:
                if self._triggered:
                    wait = min(wait, min(self._triggered.values()) - time.monotonic())
            if watchdog_s:
                wait = min(wait, watchdog_s)
            self._wake.wait(max(0.0, wait))
            self._wake.clear()
        self.notifier.stopping()
        self._send_wake.set()
        sender.join(timeout=5.0)  # a last delivery attempt; what stays spooled is sent next start
        log.info("event=stopped spool_reports=%d", len(self.spool))
        return 0

    def _start_watchers(self) -> None:
        from agent.measure import route

        threading.Thread(
            target=route.watch_routes,
            args=(self.on_route_change, self._stop),
            name="route-watch",
            daemon=True,
        ).start()
        listen = self.setup.config.metrics.listen
        if listen:
            from agent.service.metrics import AgentMetrics

            self.metrics = AgentMetrics.serve(listen)

    # ------------------------------------------------------------------ delivery

    def _send_loop(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            self._send_wake.wait()
            self._send_wake.clear()
            while (sender := self.setup.sender) is not None:
                item = next(self.spool.pending(), None)
                if item is None:
                    break
                d = sender.deliver(item)
                if d.outcome == "acked":
                    self.spool.ack(item)
                    backoff = BACKOFF_MIN_S
                    continue
                if d.outcome == "refused":
                    self.spool.reject(item)
                    log.error(
                        "event=report_refused seq=%d status=%s detail=%s",
                        item.seq,
                        d.status,
                        json.dumps(d.detail),
                    )
                    continue
                delay = d.retry_after_s or backoff
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                log.warning(
                    "event=delivery_retry seq=%d status=%s detail=%s retry_in_s=%.1f",
                    item.seq,
                    d.status,
                    json.dumps(d.detail),
                    delay,
                )
                if self._stop.is_set():
                    return
                # Wait out the backoff, but not a shutdown.
                if self._stop.wait(delay):
                    return
            if self._stop.is_set():
                return


def _resolve_many(names, resolvers, timeout_s):
    from agent.measure import dns

    return dns.resolve_many(names, resolvers, timeout_s)


def configure_logging() -> None:
    """One line per event, key=value, no timestamps (journald adds them)."""
    level = os.environ.get("ERPATH_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="level=%(levelname)s logger=%(name)s %(message)s")
