"""The throwaway PostgreSQL cluster: durable, password only in the passfile."""

from __future__ import annotations

import os
import stat

import psycopg
import pytest

from .pgcluster import PgCluster, PgDatabase


def test_role_logs_in_over_tcp_with_the_passfile_only(
    pg_cluster: PgCluster, pg_database: PgDatabase
) -> None:
    assert pg_cluster.password not in pg_database.url
    assert stat.S_IMODE(os.stat(pg_database.passfile).st_mode) == 0o600
    with psycopg.connect(pg_database.url, passfile=str(pg_database.passfile)) as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("on",)
        assert conn.execute("SELECT current_user").fetchone() == ("erpath",)
        conn.execute("CREATE TABLE owned_by_the_role(x integer)")
    empty = pg_database.passfile.with_name("empty-pgpass")
    empty.touch(mode=0o600)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(pg_database.url, passfile=str(empty), connect_timeout=10).close()
