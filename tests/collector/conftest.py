"""Collector fixtures: a config in a tmp dir, the app from the factory, tokens.

A test module marked `pytestmark = pytest.mark.both_backends` runs each test
that uses `backend` (through `start_collector`, `store_section` or
`open_store`) twice: on SQLite and on PostgreSQL (a fresh database per test,
copied from a migrated template, in one cluster per session).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from collector import auth
from collector.app import create_app
from collector.config import Config, from_dict
from collector.keys import STORE, TOKENS
from collector.store import Store

API = "/api/v1"
BACKENDS = ("sqlite", "postgresql")
_USED_DATABASES: list[str] = []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_backends"
    ):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The store's database: SQLite unless the module runs on both backends, or
    ERPATH_STORE_BACKEND=postgresql runs every collector test on PostgreSQL."""
    return getattr(request, "param", os.environ.get("ERPATH_STORE_BACKEND", "sqlite"))


@pytest.fixture(scope="session")
def pg_template(request: pytest.FixtureRequest) -> str:
    """A database migrated to the current schema, copied for each test (faster than migrating)."""
    cluster = request.getfixturevalue("pg_cluster")
    db = cluster.create_database(name="erpath_migrated")
    store = Store(db.url, passfile=str(db.passfile))
    store.open()
    store.close()
    cluster.mark_template(db.name)
    return db.name


@pytest.fixture
def store_section(backend: str, tmp_path: Any, request: pytest.FixtureRequest) -> dict[str, str]:
    """The [store] section of this test's backend: a file, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        return {"path": str(tmp_path / "collector.db")}
    cluster = request.getfixturevalue("pg_cluster")
    # The previous tests' databases go now, when their collectors have surely stopped (a
    # finaliser here would run before the app using the database is torn down).
    while _USED_DATABASES:
        cluster.drop_database(_USED_DATABASES.pop())
    db = cluster.create_database(template=request.getfixturevalue("pg_template"))
    _USED_DATABASES.append(db.name)
    return {"url": db.url, "passfile": str(db.passfile)}


@pytest.fixture
def open_store(store_section: dict[str, str]) -> Iterator[Store]:
    """An open Store on this test's backend, closed after."""
    s = Store(
        store_section.get("url") or store_section["path"],
        passfile=store_section.get("passfile", ""),
    )
    s.open()
    try:
        yield s
    finally:
        s.close()


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
