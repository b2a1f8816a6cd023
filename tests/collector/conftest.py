"""Collector fixtures: a config in a tmp dir, the app from the factory, tokens.

`start_collector` runs on the test's store backend (tests/pgfixture.py): a
module marked `pytestmark = pytest.mark.both_backends` runs each test twice,
on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from collector import auth
from collector.app import create_app
from collector.config import Config, from_dict
from collector.keys import STORE, TOKENS

API = "/api/v1"


def on_backend(cfg: Config, store_section: dict[str, str]) -> Config:
    """`cfg` with this test's PostgreSQL database, when the test runs on PostgreSQL."""
    if "url" not in store_section or cfg.store.url:
        return cfg
    store = dataclasses.replace(
        cfg.store, url=store_section["url"], passfile=store_section["passfile"]
    )
    return dataclasses.replace(cfg, store=store)


def make_config(tmp_path: Any, **sections: dict[str, Any]) -> Config:
    doc: dict[str, Any] = {
        "store": {"path": str(tmp_path / "collector.db")},
        "detection": {"evaluate_interval_s": 0.2},
        "ingest": {"tokens_refresh_s": 0.2},
        "alerts": {"resend_interval_s": 1.0, "backoff_initial_s": 0.1, "backoff_max_s": 0.5},
    }
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    return from_dict(doc, "test.toml")


async def add_token(app: web.Application, agent: str) -> str:
    store = app[STORE]
    _, token = await store.write(auth.add, agent, time.time())
    await store.read(app[TOKENS].load)
    return token


class Collector:
    """A running collector under test: client, app, and a poster with tokens."""

    def __init__(self, client: TestClient, registry: CollectorRegistry):
        self.client = client
        self.registry = registry
        self.tokens: dict[str, str] = {}

    @property
    def app(self) -> web.Application:
        return self.client.server.app

    async def token(self, agent: str) -> str:
        if agent not in self.tokens:
            self.tokens[agent] = await add_token(self.app, agent)
        return self.tokens[agent]

    async def post(self, doc: dict[str, Any], *, agent: str | None = None, **kw: Any):
        token = await self.token(agent or doc["agent"]["id"])
        headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
        return await self.client.post(f"{API}/reports", json=doc, headers=headers, **kw)

    async def get(self, path: str, **params: Any) -> Any:
        resp = await self.client.get(path, params=params)
        assert resp.status == 200, await resp.text()
        return await resp.json()


CollectorFactory = Callable[..., Awaitable[Collector]]


@pytest.fixture
def start_collector(
    aiohttp_client: Any, tmp_path: Any, store_section: dict[str, str]
) -> CollectorFactory:
    async def start(config: Config | None = None, **sections: Any) -> Collector:
        cfg = on_backend(config or make_config(tmp_path, **sections), store_section)
        registry = CollectorRegistry()
        client = await aiohttp_client(create_app(cfg, registry=registry))
        return Collector(client, registry)

    return start
