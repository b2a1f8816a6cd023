"""PostgreSQL behind the Store: psycopg 3 (sync), a few writer connections, a reader pool.

The only module that imports psycopg.  The Store already runs every write
and read as a function of a connection on its own threads, so the sync
driver keeps every SQL function as it is: `PgConn` takes the `?`
placeholders the collector's SQL uses (translated once per statement text)
and gives `.execute(...).fetchone()/fetchall()/.rowcount` like sqlite3.

The schema version lives in `erpath_schema_version`; migrations run under an
advisory lock, so several collectors starting together migrate once.  The
password comes from a libpq passfile (`[store] passfile`, a systemd
credential named `pgpass`, or libpq's PGPASSFILE / ~/.pgpass), never the URL.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from collector import dialect
from collector.store import READERS, SCHEMA_VERSION, StoreError, check_version, run_step

log = logging.getLogger(__name__)

T = TypeVar("T")

# pg_advisory_lock key held while migrating ('erpath' + 'm'); any collector starting
# meanwhile waits, then finds the schema current.
MIGRATION_LOCK_KEY = 0x6572_7061_7468_006D
SCHEMA_TABLE = "erpath_schema_version"
# The name of the systemd credential (LoadCredential=pgpass:/etc/erpath/pgpass) read
# when [store] passfile is not set.
CREDENTIAL = "pgpass"
CONNECT_TIMEOUT_S = 10
# TCP keepalives and a user timeout: a connection to a partitioned server fails
# within about 30 s instead of hanging a writer for the kernel's 2 hours.
_CONNECTION = {
    "application_name": "erpath-collector",
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


# --------------------------------------------------------------------------- statements

_TRANSLATED: dict[str, str] = {}
_TRANSLATED_MAX = 20_000  # statement texts are few; dynamic IN (?,?,…) lists add some


def _translate(query: str) -> str:
    """`?` outside quotes becomes `%s`; every `%` is doubled (psycopg reads them everywhere)."""
    out: list[str] = []
    quote = ""
    for ch in query:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        out.append("%%" if ch == "%" else ch)
    return "".join(out)


def translate(query: str) -> str:
    text = _TRANSLATED.get(query)
    if text is None:
        text = _translate(query)
        if len(_TRANSLATED) < _TRANSLATED_MAX:
            _TRANSLATED[query] = text
    return text


class PgConn:
    """A psycopg connection that reads like sqlite3's: `?` placeholders, `.execute()`."""

    dialect = dialect.POSTGRESQL
    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]):
        self.raw = raw

    def execute(self, query: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.execute(translate(query), params)  # type: ignore[arg-type]
        return cur

    def executemany(self, query: str, rows: Sequence[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.executemany(translate(query), rows)  # type: ignore[arg-type]
        return cur

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE


# --------------------------------------------------------------------------- types

_INT8 = psycopg.adapters.types["int8"].oid


class _BoolAsInteger(Dumper):
    """Flags are integers in the schema (as in SQLite): True is 1."""

    oid = _INT8

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class _NumericAsNumber(Loader):
    """sum() of integers is numeric in PostgreSQL: an int when whole (as SQLite gives), else float."""

    def load(self, data: Any) -> int | float:
        d = Decimal(bytes(data).decode())
        return int(d) if d == d.to_integral_value() else float(d)


def _configure(raw: psycopg.Connection[Any]) -> None:
    raw.adapters.register_dumper(bool, _BoolAsInteger)
    raw.adapters.register_loader("numeric", _NumericAsNumber)


# --------------------------------------------------------------------------- database


def credential_passfile() -> str:
    """The systemd credential `pgpass`, when the unit loads one."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / CREDENTIAL).is_file():
        return str(Path(creds) / CREDENTIAL)
    return ""


def migrate(raw: psycopg.Connection[Any], where: str) -> int:
    """Bring the schema to SCHEMA_VERSION under the migration lock; return the version found."""
    conn = PgConn(raw)
    conn.execute("SELECT pg_advisory_lock(?)", (MIGRATION_LOCK_KEY,))
    try:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE}(version integer NOT NULL)")
        row = conn.execute(f"SELECT version FROM {SCHEMA_TABLE}").fetchone()
        if row is None:
            conn.execute(f"INSERT INTO {SCHEMA_TABLE}(version) VALUES (0)")
            found = 0
        else:
            found = row[0]
        check_version(found, where)
        for version in range(found, SCHEMA_VERSION):
            with raw.transaction():
                run_step(conn, version)
                conn.execute(f"UPDATE {SCHEMA_TABLE} SET version=?", (version + 1,))
        return found
    finally:
        conn.execute("SELECT pg_advisory_unlock(?)", (MIGRATION_LOCK_KEY,))


class PostgresDatabase:
    dialect = dialect.POSTGRESQL

    def __init__(self, url: str, *, passfile: str = "", writers: int = 4):
        self.url = url
        self.where = url
        self.writers = max(1, writers)
        self.kwargs: dict[str, Any] = dict(_CONNECTION)
        passfile = passfile or credential_passfile()
        if passfile:
            self.kwargs["passfile"] = passfile
        self._pool: ConnectionPool | None = None

    def connect(self) -> psycopg.Connection[Any]:
        raw = psycopg.connect(self.url, autocommit=True, **self.kwargs)
        _configure(raw)
        return raw

    def lock_session(self) -> psycopg.Connection[Any]:
        """A session of its own for advisory locks: a stuck statement ends after 5 s."""
        raw = psycopg.connect(
            self.url, autocommit=True, options="-c statement_timeout=5000", **self.kwargs
        )
        _configure(raw)
        return raw

    def open(self) -> list[Any]:
        conns: list[PgConn] = []
        try:
            admin = self.connect()
            try:
                migrate(admin, self.where)
            finally:
                admin.close()
            conns = [PgConn(self.connect()) for _ in range(self.writers)]
            self._pool = ConnectionPool(
                self.url,
                kwargs={**self.kwargs, "autocommit": True},
                configure=_configure,
                min_size=READERS + 1,
                max_size=READERS + 1,
                timeout=CONNECT_TIMEOUT_S * 3,
                name="erpath-read",
                open=False,
            )
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 3)
        except (psycopg.Error, PoolTimeout) as exc:
            for c in conns:
                c.raw.close()
            if self._pool is not None:
                self._pool.close()
                self._pool = None
            raise StoreError(f"{self.where}: {exc}".strip()) from exc
        return conns

    def begin(self, conn: PgConn) -> None:
        conn.execute("BEGIN")

    def in_transaction(self, conn: PgConn) -> bool:
        return conn.in_transaction

    def retryable(self, exc: BaseException) -> bool:
        # Two writers (or replicas) racing: a deadlock, a serialization failure, or a key
        # the other inserted first (READ COMMITTED: the job's next run sees it).
        return isinstance(
            exc, errors.DeadlockDetected | errors.SerializationFailure | errors.UniqueViolation
        )

    def read(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._pool is not None, "store not open"
        with self._pool.connection() as raw:
            raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")  # one snapshot
            try:
                return fn(PgConn(raw), *args)
            finally:
                raw.execute("ROLLBACK")

    def close(self, writer_conns: list[Any]) -> None:
        for conn in writer_conns:
            conn.raw.close()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
