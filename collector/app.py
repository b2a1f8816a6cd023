"""The application factory: the only place the collector is wired together.

`cleanup_ctx` owns every resource in start order — store, tokens, alert
sender, evaluator, pruning — and tears them down in reverse, after aiohttp
let in-flight requests finish.  The store closes last and drains its writer
queue first, so nothing acknowledged is lost.

Alert delivery, evaluation and pruning are the leader's duties
(collector/leader.py): on SQLite the one process always leads and they start
with it; on PostgreSQL they run only while this replica holds the lock, and
stop the moment it does not.  Every replica takes reports and serves reads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from collector import auth, evaluate, retention, routes
from collector.alertrules import Links
from collector.alerts import AlertSender
from collector.auth import TokenBook
from collector.config import Config
from collector.evaluate import EvalSettings
from collector.ingest import Settings
from collector.keys import (
    ADDRESS_LIMITER,
    ADMISSION,
    AGENT_IN_FLIGHT,
    ALERT_SENDER,
    CLOCK,
    CONFIG,
    DECODER,
    EVAL_SETTINGS,
    EVALUATE_SOON,
    HEALTH,
    INGEST_SETTINGS,
    INSTRUMENTS,
    LEADERSHIP,
    LIMITER,
    READ_TOKEN,
    REGISTRY,
    RETRY_AFTER_WATCH,
    STORE,
    STORE_COLLECTOR,
    TOKENS,
    WORKERS,
    Health,
)
from collector.leader import Leadership
from collector.metrics import Instruments, StoreCollector
from collector.middlewares import problems
from collector.ratelimit import Admission, PerKey, RateLimiter, RetryAfterWatch
from collector.retention import DAY_S
from collector.store import Store

log = logging.getLogger(__name__)

# Debounce: after an ingest that may change asymmetry, evaluate this soon.
EVALUATE_DEBOUNCE_S = 0.1


# Threads that decode large report bodies: two, so one agent's big report cannot
# hold every decode (a third waits in the pool's queue, inside its admission slot).
DECODER_THREADS = 2


async def _decoder_ctx(app: web.Application) -> AsyncIterator[None]:
    pool = concurrent.futures.ThreadPoolExecutor(
        DECODER_THREADS, thread_name_prefix="erpath-decode"
    )
    app[DECODER] = pool
    yield
    pool.shutdown(wait=True, cancel_futures=True)


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store, collector = app[STORE], app[STORE_COLLECTOR]
    await asyncio.to_thread(store.open)
    app[REGISTRY].register(collector)
    yield
    app[REGISTRY].unregister(collector)
    await asyncio.to_thread(store.close)


async def _every(
    period_s: float,
    job: Callable[[], Awaitable[object]],
    name: str,
    wake: asyncio.Event | None = None,
) -> None:
    while True:
        try:
            if wake is None:
                await asyncio.sleep(period_s)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), period_s)
                await asyncio.sleep(EVALUATE_DEBOUNCE_S)
                wake.clear()
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:  # keep the loop; the next period retries
            log.exception("%s failed", name)


@contextlib.asynccontextmanager
async def _task(
    coro: Awaitable[None], name: str, workers: dict[str, asyncio.Task[None]] | None = None
) -> AsyncIterator[None]:
    task = asyncio.ensure_future(coro)
    task.set_name(name)
    if workers is not None:
        workers[name] = task  # the supervisor watches it
    try:
        yield
    finally:
        if workers is not None:
            workers.pop(name, None)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _tokens_ctx(app: web.Application) -> AsyncIterator[None]:
    store, book = app[STORE], app[TOKENS]
    await store.read_internal(book.load)
    async with _task(
        _every(
            app[CONFIG].ingest.tokens_refresh_s,
            lambda: store.read_internal(book.load),
            "token refresh",
        ),
        "erpath-tokens",
        app[WORKERS],
    ):
        yield


async def _alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    sender = app[ALERT_SENDER]
    await sender.start()
    sender.poke()  # after a restart: deliver whatever was pending
    yield
    await sender.stop()


async def evaluate_now(app: web.Application) -> evaluate.EvalOutcome:
    """`evaluate.run` with the leader's check between the pairing (a read) and its write:
    a replica that lost the lock writes nothing, so two never judge the same state."""
    store, now_s, settings = app[STORE], app[CLOCK](), app[EVAL_SETTINGS]
    cache = store.read_cache.setdefault("facts", evaluate.FactsCache())
    found = await store.read_internal(evaluate.find, settings, cache)
    if not await app[LEADERSHIP].confirm():
        return evaluate.EvalOutcome()
    out = await store.write(evaluate.apply, now_s, settings, found)
    if out.alerts_changed:
        app[ALERT_SENDER].poke()
    return out


async def _evaluator_ctx(app: web.Application) -> AsyncIterator[None]:
    period = app[CONFIG].detection.evaluate_interval_s
    async with _task(
        _every(period, lambda: evaluate_now(app), "evaluation", app[EVALUATE_SOON]),
        "erpath-evaluator",
        app[WORKERS],
    ):
        yield


async def prune_now(app: web.Application) -> retention.Pruned:
    store, total = app[STORE], retention.Pruned()
    while await app[LEADERSHIP].confirm():  # each chunk: one replica prunes, not two
        p = await store.write(retention.prune, store.cache, app[CLOCK](), app[CONFIG].store)
        total.observations += p.observations
        total.events += p.events
        total.traces += p.traces
        total.alerts += p.alerts
        total.layouts += p.layouts
        total.sites += p.sites
        if max(p.observations, p.events, p.traces) < retention.CHUNK_ROWS:
            break
    return total


async def _retention_ctx(app: web.Application) -> AsyncIterator[None]:
    async with _task(
        _every(app[CONFIG].store.prune_interval_s, lambda: prune_now(app), "pruning"),
        "erpath-retention",
        app[WORKERS],
    ):
        yield


# What only the leader does, in start order: alert delivery, evaluation, pruning.
LEADER_DUTIES = (_alerts_ctx, _evaluator_ctx, _retention_ctx)


@contextlib.asynccontextmanager
async def _duties(app: web.Application) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for duty in LEADER_DUTIES:
            await stack.enter_async_context(contextlib.asynccontextmanager(duty)(app))
        yield


async def _lead(app: web.Application) -> None:
    """Run the leader's duties while this replica leads; stop them the moment it does not."""
    leadership = app[LEADERSHIP]
    while True:
        await leadership.won.wait()
        try:
            async with _duties(app):
                await leadership.lost.wait()
        except asyncio.CancelledError:
            raise
        except Exception:  # a duty that cannot start (the database went away): retry
            log.exception("the leader's duties failed to start")
            await asyncio.sleep(leadership.retry_s)


async def _leadership_ctx(app: web.Application) -> AsyncIterator[None]:
    """On SQLite the one process leads: its duties start with it, as they always did.
    On PostgreSQL the replicas elect one (collector/leader.py); this one tries at once."""
    leadership = app[LEADERSHIP]
    if not leadership.shared:
        async with _duties(app):
            yield
        return
    await leadership.attempt()
    try:
        async with (
            _task(leadership.run(), "erpath-leadership", app[WORKERS]),
            _task(_lead(app), "erpath-leader-duties", app[WORKERS]),
        ):
            yield
    finally:
        await leadership.close()


def dead_worker(app: web.Application) -> str | None:
    """The first background worker that is no longer running, or None when all are."""
    store = app[STORE]
    if not store.writer_alive:
        return f"the store's writer thread ({store.writer_error or 'stopped'})"
    for name, task in app[WORKERS].items():
        if task.done():
            return f"the task {name}"
    if not app[ALERT_SENDER].alive:
        return "the alert delivery task"
    return None


# How often the supervisor looks at the workers without a systemd watchdog.
SUPERVISE_INTERVAL_S = 1.0


async def _supervisor_ctx(app: web.Application) -> AsyncIterator[None]:
    """WATCHDOG=1 to systemd at half its WatchdogSec, from the event loop itself,
    and only while every worker lives: a wedged loop or a dead writer thread,
    evaluator or delivery task stops the pings.  A dead worker also ends the
    process (non-zero status, `on_worker_death`), so systemd restarts it at once
    instead of keeping a collector that answers /healthz but stores nothing."""
    from agent.sdnotify import Notifier

    notifier, interval_s = Notifier(), Notifier.watchdog_interval_s()
    period_s = min(interval_s or SUPERVISE_INTERVAL_S, SUPERVISE_INTERVAL_S)

    async def supervise() -> None:
        while True:
            dead = dead_worker(app)
            if dead is not None:
                log.critical("%s died; the collector stops so that it is restarted", dead)
                app[HEALTH].dead = dead
                app[HEALTH].on_death(dead)
                return
            if interval_s:
                notifier.watchdog()
            await asyncio.sleep(period_s)

    async with _task(supervise(), "erpath-supervisor"):
        yield


def create_app(
    config: Config,
    *,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
    on_worker_death: Callable[[str], None] | None = None,
) -> web.Application:
    app = web.Application(
        middlewares=[problems],
        client_max_size=config.server.body_limit_bytes,
        # Bodies are decoded by the ingest handler, with a size limit on the result.
        # Header limits are aiohttp's defaults, stated so an upgrade cannot loosen them:
        # longer lines or fields get 400, more headers get 400.
        handler_args={
            "auto_decompress": False,
            "max_line_size": 8190,
            "max_field_size": 8190,
            "max_headers": 128,
        },
    )
    registry = registry if registry is not None else CollectorRegistry()
    instruments = Instruments(registry)
    links = Links(config.alerts.runbook_base_url, config.alerts.dashboard_base_url)
    store = Store.for_config(config.store)
    app[CONFIG] = config
    app[CLOCK] = clock
    app[REGISTRY] = registry
    app[INSTRUMENTS] = instruments
    app[STORE] = store
    app[STORE_COLLECTOR] = StoreCollector(store, config.metrics.per_site_aggregates)
    app[TOKENS] = TokenBook()
    app[LIMITER] = RateLimiter(config.ingest.rate_per_agent_per_s, config.ingest.burst_per_agent)
    app[ADMISSION] = Admission(config.ingest.max_in_flight)
    app[AGENT_IN_FLIGHT] = PerKey(config.ingest.max_in_flight_per_agent)
    watch = RetryAfterWatch(config.ingest.max_in_flight_per_agent)
    app[RETRY_AFTER_WATCH] = watch
    Gauge(
        "erpath_ingest_held_requests",
        "Report requests held unread now: their agent ignored a refusal's Retry-After.",
        registry=registry,
    ).set_function(lambda: float(watch.held))
    app[ADDRESS_LIMITER] = RateLimiter(
        config.ingest.failed_auth_per_address_per_s, config.ingest.failed_auth_burst_per_address
    )
    # Several replicas on one PostgreSQL elect the one that evaluates and delivers alerts.
    leadership = Leadership(store.lock_session if store.dialect == "postgresql" else None)
    app[LEADERSHIP] = leadership
    Gauge(
        "erpath_collector_leader",
        "1 on the collector replica that evaluates and delivers alerts (always, on SQLite).",
        registry=registry,
    ).set_function(lambda: 1.0 if leadership.leading else 0.0)
    app[ALERT_SENDER] = AlertSender(
        store,
        config.alerts,
        instruments,
        clock,
        config.store.alerts_retention_days * DAY_S,
        confirm=leadership.confirm,
        # Another replica's ingest fires alerts without poking this one: look every second.
        poll_s=1.0 if leadership.shared else None,
    )
    app[EVALUATE_SOON] = asyncio.Event()
    app[INGEST_SETTINGS] = Settings(
        config.detection.flip_confirm_reports,
        links,
        config.ingest.default_interval_s,
        config.detection.redundancy_lost_reports,
        config.ingest.max_targets_per_agent,
    )
    app[EVAL_SETTINGS] = EvalSettings(
        config.detection.silent_after_intervals,
        config.ingest.default_interval_s,
        config.alerts.flip_hold_s,
        links,
        config.store.path_expiry_intervals,
    )
    app[READ_TOKEN] = (
        auth.digest(Path(config.server.read_token_file).read_text().strip())
        if config.server.read_token_file
        else None
    )
    app[WORKERS] = {}
    app[HEALTH] = Health(on_worker_death or (lambda _why: None))
    app.cleanup_ctx.extend(
        [
            _decoder_ctx,
            _store_ctx,
            _tokens_ctx,
            _leadership_ctx,
            _supervisor_ctx,
        ]
    )
    routes.setup(app)
    return app
