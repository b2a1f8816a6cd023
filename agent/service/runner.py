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

The systemd watchdog is pinged only while every worker thread is alive and
looping (a sender backing off while the collector is away still loops); a
worker that died ends the process with status 1 so that systemd restarts it,
and one that hangs stops the pings so that systemd kills it.  Disk full and
a half-written service tags file never stop the probing: the spool drops its
oldest reports, seq is counted in memory, the last good tags are kept.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import random
import signal
import ssl
import stat
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.config import AgentConfig, ConfigError, ServiceTagsConfig, load
from agent.cycle import ProbePlan, run_cycle
from agent.measure.dnscache import DnsCache
from agent.report import SCHEMA, Health, to_dict
from agent.sdnotify import Notifier
from agent.service.sender import CollectorEndpoint, Sender
from agent.service.seq import ReportSequence, state_dir
from agent.service.spool import Spool

log = logging.getLogger("erpath.agent")

RETRIGGER_AFTER_S = 1.0
# A triggered probe checks route and TCP only, each SYN given this long, and
# is reported at once: a route change reaches the collector within a second,
# a filtered target costs half a second, not the interval's TCP timeout.  The
# confirmation probe is as quick; the affected targets' traces follow it.
TRIGGERED_TCP_TIMEOUT_S = 0.5
# A routing change arrives as a burst of netlink messages (one per prefix,
# then link events); waiting this long probes every affected target in one
# cycle instead of a first cycle for the first prefix's targets only.
ROUTE_SETTLE_S = 0.25
BACKOFF_MIN_S, BACKOFF_MAX_S = 1.0, 60.0
RETRY_AFTER_MAX_S = 300.0
# A worker beats at least this often while it waits (idle or backing off) …
HEARTBEAT_S = 5.0
# … and one that has not beaten for this long is stuck (one delivery is at
# most a few socket timeouts of 10 s): the watchdog pings stop.
STUCK_AFTER_S = 90.0
# The main thread looks at its workers at least this often.
LIVENESS_CHECK_S = 5.0
EXIT_WORKER_DIED = 1


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
    mode = stat.S_IMODE(st.st_mode)
    # As ssh does with private keys: a secret others can read is refused.
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        who = "every user" if mode & stat.S_IRWXO else "its group"
        raise ServiceError(
            f"[collector] token_file {path} is accessible to {who} (mode {mode:o}); "
            f"run: chmod 600 {path}"
        )
    try:
        token = p.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ServiceError(f"[collector] token_file {path}: cannot read it ({e})") from None
    if not token:
        raise ServiceError(f"[collector] token_file {path} is empty; put the agent's token in it")
    if any(c.isspace() or not c.isprintable() for c in token):
        # A second line or a space would break the Authorization header.
        raise ServiceError(
            f"[collector] token_file {path} holds more than the token (a line break, a space "
            "or a control character inside it); put only the token printed by "
            "`erpath-collector token add` in it"
        )
    return token


@dataclass(frozen=True, slots=True)
class _Setup:
    """Everything derived from one config; replaced whole on SIGHUP."""

    config: AgentConfig
    sender: Sender | None


def _setup(config: AgentConfig) -> _Setup:
    c = config.collector
    sender = None
    if c.url and c.url.startswith("http:") and not c.allow_plaintext:
        raise ServiceError(
            f"{config.path or '<config>'}: [collector] url = {json.dumps(c.url)}: plain HTTP "
            "sends the agent's token in clear; use https://, or set allow_plaintext = true in "
            "[collector] (a lab, or a collector on this host)"
        )
    if c.url:
        endpoint = CollectorEndpoint(
            url=c.url,
            token=read_token(c.token_file) if c.token_file else "",
            ca_file=c.ca_file,
            client_cert=c.client_cert,
            client_key=c.client_key,
        )
        try:
            sender = Sender(endpoint)
        except (OSError, ssl.SSLError) as e:
            raise ServiceError(_tls_problem(c, e)) from None
    return _Setup(config, sender)


def _tls_problem(c, e: OSError) -> str:
    """Which of the TLS files is wrong, and how to fix it."""
    for key in ("ca_file", "client_cert", "client_key"):
        value = getattr(c, key)
        if value is not None and not Path(value).is_file():
            return (
                f"[collector] {key} = {str(value)!r}: no such file; fix the path or remove the key"
            )
    files = ", ".join(
        f"{k} = {str(getattr(c, k))!r}"
        for k in ("ca_file", "client_cert", "client_key")
        if getattr(c, k)
    )
    return f"[collector] {files}: not usable for TLS ({e}); give PEM files (key matching the certificate)"


@dataclass(slots=True)
class Worker:
    """A thread with one job, and when it last showed it was looping."""

    name: str
    thread: threading.Thread
    last_beat: float = field(default_factory=time.monotonic)

    def beat(self) -> None:
        self.last_beat = time.monotonic()


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
        self.sequence = ReportSequence(self.state_dir)
        self.workers: dict[str, Worker] = {}
        self.stuck_after_s = STUCK_AFTER_S
        # The last service tags file that could be read, kept while the file
        # on disk is half-written (a weekly download in progress).
        self._tags = None
        self.tags_stale = False
        self.dns_cache = DnsCache(_resolve_many)
        self.notifier = Notifier()
        self._wake = threading.Event()
        self._send_wake = threading.Event()
        self._stop = threading.Event()
        self._reload = False
        self._lock = threading.Lock()
        self._triggered: dict[str, float] = {}  # target name -> when to probe it
        self._trace_after: set[str] = set()  # confirmed by a quick probe: trace them next
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
            self._trace_after.update(names)
        self._wake.set()

    # ------------------------------------------------------------------ main loop

    def _cycle(self, targets, *, quick: bool = False) -> None:
        """One probe cycle, spooled; `quick`: route and TCP only (a triggered probe)."""
        cfg = self.setup.config
        seq = self.sequence.next()
        health = Health(
            cycle_s=self.last_cycle_s,
            spool_reports=len(self.spool),
            dropped_reports_total=self.spool.dropped_total,
        )
        t0 = time.monotonic()
        tags = self._service_tags(cfg)
        # The tags travel as an object: the cycle must not read the file again.
        run_cfg = replace(cfg, service_tags=ServiceTagsConfig())
        if quick:
            timeout_s = min(cfg.probe.timeout_s, TRIGGERED_TCP_TIMEOUT_S)
            run_cfg = replace(run_cfg, probe=replace(cfg.probe, timeout_s=timeout_s))
        report = run_cycle(
            run_cfg,
            ProbePlan(targets=tuple(targets), trace=not quick, name_hops=not quick),
            seq=seq,
            interval_s=cfg.probe.interval_s,
            health=health,
            dns_cache=self.dns_cache,
            namer=self._namer(cfg),
            service_tags=tags,
        )
        report = replace(report, agent=replace(report.agent, epoch=self.sequence.epoch))
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
            self.metrics.service_tags_stale.set(1 if self.tags_stale else 0)
        self._send_wake.set()

    def _service_tags(self, cfg: AgentConfig):
        """The configured tags file, or the last good one while the file cannot be read."""
        try:
            tags = cfg.load_service_tags()
        except ConfigError as e:
            if not self.tags_stale:
                log.error(
                    "event=service_tags_kept reason=%s; classifying with the last good copy "
                    "(%s) until the file is whole again",
                    json.dumps(str(e)),
                    "none read yet: no service tags" if self._tags is None else "kept",
                )
            self.tags_stale = True
            return self._tags
        if self.tags_stale:
            log.info("event=service_tags_readable file=%s", cfg.service_tags.file)
        self._tags, self.tags_stale = tags, False
        return tags

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
        self._start_worker("sender", self._send_loop)
        self._start_watchers()
        self.notifier.ready(f"probing {len(self.setup.config.targets())} targets")
        watchdog_s = Notifier.watchdog_interval_s()
        next_full = time.monotonic()
        log.info(
            "event=started config=%s targets=%d interval_s=%s epoch=%s",
            self.config_path,
            len(self.setup.config.targets()),
            self.setup.config.probe.interval_s,
            self.sequence.epoch,
        )
        while not self._stop.is_set():
            if dead := [w.name for w in self.workers.values() if not w.thread.is_alive()]:
                # A thread died of a bug: a restart by systemd is the cure, and
                # the spool keeps every report for the next process.
                log.error(
                    "event=worker_died worker=%s; exiting so that systemd restarts the agent",
                    ",".join(dead),
                )
                self.notifier.stopping()
                return EXIT_WORKER_DIED
            if self._reload:
                self._reload_config()
            cfg = self.setup.config
            now = time.monotonic()
            with self._lock:
                due = [n for n, when in self._triggered.items() if when <= now]
                for n in due:
                    del self._triggered[n]
                confirmed = self._trace_after.intersection(due)
                self._trace_after -= confirmed
            if now >= next_full:
                self._cycle(cfg.targets())
                # Start to start, as a scrape interval: a path change is confirmed
                # within intervals whatever the cycles take.  A cycle longer than
                # the interval is followed at once, never overlapped.
                jitter = random.uniform(0, cfg.probe.jitter_s) if cfg.probe.jitter_s else 0.0
                next_full = now + cfg.probe.interval_s + jitter
                if (took_s := time.monotonic() - now) > cfg.probe.interval_s:
                    log.warning(
                        "event=cycle_overran duration_s=%.3f interval_s=%s; the next cycle "
                        "starts at once: raise [probe] interval_s or probe fewer targets",
                        took_s,
                        cfg.probe.interval_s,
                    )
            elif due:
                self._cycle([t for t in cfg.targets() if t.name in due], quick=True)
                if confirmed:  # both quick reports are out: now the traces
                    self._cycle([t for t in cfg.targets() if t.name in confirmed])
            if watchdog_s and self._workers_looping():
                self.notifier.watchdog()
            wait = min(next_full - time.monotonic(), LIVENESS_CHECK_S)
            with self._lock:
                if self._triggered:
                    wait = min(wait, min(self._triggered.values()) - time.monotonic())
            if watchdog_s:
                wait = min(wait, watchdog_s)
            self._wake.wait(max(0.0, wait))
            self._wake.clear()
        self.notifier.stopping()
        self._send_wake.set()
        # A last delivery attempt; what stays spooled is sent next start.
        self.workers["sender"].thread.join(timeout=5.0)
        log.info("event=stopped spool_reports=%d", len(self.spool))
        return 0

    def _start_worker(self, name: str, target, *args) -> None:
        def run() -> None:
            try:
                target(*args)
            finally:
                self._wake.set()  # the main thread notices at once, alive or not

        thread = threading.Thread(target=run, name=name, daemon=True)
        self.workers[name] = Worker(name, thread)
        thread.start()

    def _workers_looping(self) -> bool:
        now = time.monotonic()
        # The route watcher blocks in netlink reads between changes: alive is all it can show.
        stuck = [
            w
            for w in self.workers.values()
            if w.name == "sender" and now - w.last_beat > self.stuck_after_s
        ]
        for w in stuck:
            log.error(
                "event=worker_stuck worker=%s since_s=%.0f; watchdog not pinged",
                w.name,
                now - w.last_beat,
            )
        return not stuck

    def _start_watchers(self) -> None:
        from agent.measure import route

        self._start_worker("route-watch", route.watch_routes, self.on_route_change, self._stop)
        listen = self.setup.config.metrics.listen
        if listen:
            from agent.service.metrics import AgentMetrics

            self.metrics = AgentMetrics.serve(listen)

    # ------------------------------------------------------------------ delivery

    def _pause(self, seconds: float) -> bool:
        """Wait out a backoff in heartbeats; True when a shutdown came meanwhile."""
        me = self.workers["sender"]
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(left, HEARTBEAT_S)):
                return True
            me.beat()
        return self._stop.is_set()

    def _send_loop(self) -> None:
        me = self.workers["sender"]
        backoff = BACKOFF_MIN_S
        while True:
            me.beat()
            if not self._send_wake.wait(HEARTBEAT_S):
                continue
            self._send_wake.clear()
            while (sender := self.setup.sender) is not None:
                me.beat()
                item = next(self.spool.pending(), None)
                if item is None:
                    break
                d = sender.deliver(item)
                if d.outcome == "gone":
                    continue
                if d.outcome == "acked":
                    self.spool.ack(item)
                    backoff = BACKOFF_MIN_S
                    continue
                if d.outcome in ("refused", "conflict"):
                    # Final: it can never be accepted, and keeping it would
                    # block every later report.
                    self.spool.reject(item)
                    log.error(
                        "event=report_dropped seq=%d id=%s status=%s code=%s detail=%s",
                        item.seq,
                        item.report_id,
                        d.status,
                        d.code,
                        json.dumps(d.detail),
                    )
                    continue
                # A Retry-After from a proxy may ask for a day: the collector never does.
                delay = min(d.retry_after_s or backoff, RETRY_AFTER_MAX_S)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                if d.code == "schema-unsupported":
                    log.warning(
                        "event=delivery_retry code=%s retry_in_s=%.1f detail=%s",
                        d.code,
                        delay,
                        json.dumps(
                            f"collector does not support {SCHEMA} yet; "
                            f"keeping {len(self.spool)} reports"
                        ),
                    )
                else:
                    log.warning(
                        "event=delivery_retry seq=%d status=%s code=%s detail=%s retry_in_s=%.1f",
                        item.seq,
                        d.status,
                        d.code,
                        json.dumps(d.detail),
                        delay,
                    )
                if self._pause(delay):
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
