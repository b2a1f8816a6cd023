"""pytest fixtures: `pg_cluster` (one PostgreSQL per session, started only when a
test asks) and `pg_database` (a fresh empty database per test, dropped after);
the collector's store backend per test: `backend`, `store_section`, `open_store`.

A test module marked `pytestmark = pytest.mark.both_backends` runs each test
that uses the backend (through `store_section`, `open_store` or the collector
tests' `start_collector`) twice: on SQLite and on PostgreSQL (a fresh database
per test, copied from a migrated template).  ERPATH_STORE_BACKEND=postgresql
runs every such test on PostgreSQL.

No PostgreSQL here (or not root and no server user): skipped with the reason,
or failed when ERPATH_REQUIRE_LAB=1 (CI), where a backend left untested is a
failure.  A cluster that fails to start is an error, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.store import Store

from .pgcluster import PgCluster, PgDatabase, unavailable_reason

BACKENDS = ("sqlite", "postgresql")
_USED_DATABASES: list[str] = []


def require_postgresql() -> None:
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("ERPATH_REQUIRE_LAB") == "1":
        pytest.fail(f"ERPATH_REQUIRE_LAB=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    require_postgresql()
    cluster = PgCluster()
    cluster.start()  # raises PgClusterError (a test error) if it cannot start
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_database(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    """A fresh, empty database owned by the application role; dropped after the test."""
    db = pg_cluster.create_database()
    try:
        yield db
    finally:
        pg_cluster.drop_database(db.name)


# --------------------------------------------------------------------------- store backends


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_backends"
    ):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The store's database: SQLite unless the module runs on both backends, or
    ERPATH_STORE_BACKEND=postgresql."""
    return getattr(request, "param", os.environ.get("ERPATH_STORE_BACKEND", "sqlite"))


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PgCluster) -> str:
    """A database migrated to the current schema, copied for each test (faster than migrating)."""
    db = pg_cluster.create_database(name="erpath_migrated")
    store = Store(db.url, passfile=str(db.passfile))
    store.open()
    store.close()
    pg_cluster.mark_template(db.name)
    return db.name


@pytest.fixture
def store_section(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """The [store] section of this test's backend: a file, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        return {"path": str(tmp_path / "collector.db")}
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
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
