"""pytest fixtures: `pg_cluster` (one PostgreSQL per session, started only when a
test asks) and `pg_database` (a fresh empty database per test, dropped after).

No PostgreSQL here (or not root and no server user): skipped with the reason,
or failed when ERPATH_REQUIRE_LAB=1 (CI), where a backend left untested is a
failure.  A cluster that fails to start is an error, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .pgcluster import PgCluster, PgDatabase, unavailable_reason


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
