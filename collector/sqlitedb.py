"""SQLite behind the Store: one writer connection, a read connection per reader thread.

The schema version is `PRAGMA user_version`.  WAL mode: readers never block
the writer; `synchronous=FULL`: a COMMIT that returned is on disk.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from collector import dialect
from collector.store import SCHEMA_VERSION, StoreError, check_version, run_step

log = logging.getLogger(__name__)

T = TypeVar("T")

# RETURNING (3.35) and UPDATE … FROM (3.33): the SQL both backends share needs them.
MIN_SQLITE = (3, 35)


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro",
            uri=True,
            check_same_thread=False,
            isolation_level=None,
            timeout=30,
        )
    else:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def migrate(conn: sqlite3.Connection, where: str = "database") -> int:
    """Bring the schema to SCHEMA_VERSION; return the version found before."""
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    check_version(found, where)
    for version in range(found, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            run_step(conn, version)
            conn.execute(f"PRAGMA user_version={version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found


class SqliteDatabase:
    dialect = dialect.SQLITE
    writers = 1

    def __init__(self, path: str, *, journal_mode: str = "wal"):
        self.path = path
        self.where = path
        self.journal_mode = journal_mode
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()

    def open(self) -> list[Any]:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(
                f"{self.path}: SQLite {sqlite3.sqlite_version} is too old; the store's SQL needs"
                f" {'.'.join(map(str, MIN_SQLITE))} or later (RETURNING): run a newer Python"
                " or distribution"
            )
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = connect(self.path)
            mode = conn.execute(f"PRAGMA journal_mode={self.journal_mode}").fetchone()[0]
            if mode.lower() != self.journal_mode:
                raise StoreError(
                    f"{self.path}: cannot switch to journal_mode={self.journal_mode} (got {mode})"
                )
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=OFF")
            migrate(conn, self.path)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        return [conn]

    def begin(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def in_transaction(self, conn: sqlite3.Connection) -> bool:
        return conn.in_transaction

    def retryable(self, exc: BaseException) -> bool:
        return False  # one writer: nothing to lose a race with

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    def read(self, fn: Callable[..., T], *args: Any) -> T:
        conn = self._reader()
        conn.execute("BEGIN")  # one snapshot for the whole read
        try:
            return fn(conn, *args)
        finally:
            conn.execute("COMMIT")

    def close(self, writer_conns: list[Any]) -> None:
        with self._reader_lock:
            for c in self._reader_conns:
                c.close()
            self._reader_conns.clear()
        for conn in writer_conns:
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                log.warning("WAL checkpoint on close failed", exc_info=True)
            conn.close()
