"""Typed application keys: everything the factory wires, in one place."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from collector.alerts import AlertSender
from collector.auth import TokenBook
from collector.config import Config
from collector.evaluate import EvalSettings
from collector.ingest import Settings
from collector.leader import Leadership
from collector.metrics import Instruments, StoreCollector
from collector.ratelimit import Admission, PerKey, RateLimiter, RetryAfterWatch
from collector.store import Store

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Callable[[], float])
REGISTRY = web.AppKey("registry", CollectorRegistry)
INSTRUMENTS = web.AppKey("instruments", Instruments)
STORE = web.AppKey("store", Store)
TOKENS = web.AppKey("tokens", TokenBook)
LIMITER = web.AppKey("limiter", RateLimiter)
ADDRESS_LIMITER = web.AppKey("address_limiter", RateLimiter)
ADMISSION = web.AppKey("admission", Admission)
ALERT_SENDER = web.AppKey("alert_sender", AlertSender)
EVALUATE_SOON = web.AppKey("evaluate_soon", asyncio.Event)
INGEST_SETTINGS = web.AppKey("ingest_settings", Settings)
EVAL_SETTINGS = web.AppKey("eval_settings", EvalSettings)
STORE_COLLECTOR = web.AppKey("store_collector", StoreCollector)
# Whether this replica evaluates and delivers alerts (always, on SQLite).
LEADERSHIP = web.AppKey("leadership", Leadership)


@dataclass(slots=True)
class Health:
    """Set by the supervisor when a background worker died (see app._supervisor_ctx)."""

    on_death: Callable[[str], None]  # serve: stop the process with a non-zero status
    dead: str | None = None


HEALTH = web.AppKey("health", Health)
WORKERS = web.AppKey("workers", dict[str, asyncio.Task[None]])
# SHA-256 of the read token ([server] read_token_file), None: reads open (loopback only).
READ_TOKEN = web.AppKey("read_token", bytes | None)
AGENT_IN_FLIGHT = web.AppKey("agent_in_flight", PerKey)
# Agents that ignore a refusal's Retry-After; their requests held unread, then closed.
RETRY_AFTER_WATCH = web.AppKey("retry_after_watch", RetryAfterWatch)
# Decoding large bodies (JSON, the report decoder, observations): off the event loop.
DECODER = web.AppKey("decoder", concurrent.futures.ThreadPoolExecutor)
