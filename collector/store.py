"""The collector's database: schema migrations, writer threads, reader threads.

`Store` is the one interface the collector uses; the database behind it is
SQLite (collector/sqlitedb.py, the default) or PostgreSQL
(collector/postgres.py).  Every write is a function of a connection run on a
writer thread that owns its connection.  A writer drains whatever jobs are
queued into one transaction (group commit: one fsync for many reports) with a
savepoint per job, so one failing job rolls back alone and the others still
commit.  A job's future resolves only after COMMIT returned: an acknowledged
report is durable.  SQLite has one writer; PostgreSQL a few, each draining
the same queue.  Reads run on a small pool of threads, each read in one
snapshot; they never block the writers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from collector import dialect

log = logging.getLogger(__name__)

T = TypeVar("T")


def _legacy_path(label: str) -> dict[str, str | None]:
    """A route-flip `from`/`to` label of schema 1, `class[/circuit[/link]]`, as a path identity.

    Read once, by the migration to version 3, from labels this collector wrote itself; the
    egress was never in them, so it stays unknown.
    """
    parts = label.split("/")
    circuit = parts[1] if parts[0] == "expressroute" and len(parts) > 1 else None
    return {"class": parts[0], "circuit": circuit, "egress": None}


def _link_out_of_identity(conn: Any) -> None:
    """Stored state as if the link had never been part of a path's identity.

    - A pending flip that differs from the path by its link only is dropped.
    - A firing ErpathRouteFlip between two links of one circuit was a false
      alarm: it is resolved (receivers hear a resolution, not a new alert).
    - A firing real flip keeps its labels and fingerprint, so nothing fires
      again; its `from` becomes the path's flip origin, so a return to it
      still resolves the chain.
    """
    for agent_ref, target, cls, circuit, egress, cand in conn.execute(
        "SELECT agent_ref, target, class, circuit, egress, candidate FROM paths"
        " WHERE candidate IS NOT NULL"
    ).fetchall():
        key = json.loads(cand)["key"]
        if (key["class"], key.get("circuit"), key.get("egress")) == (cls, circuit, egress):
            conn.execute(
                "UPDATE paths SET candidate=NULL WHERE agent_ref=? AND target=?",
                (agent_ref, target),
            )
    now = time.time()
    for fp, agent, target, labels in conn.execute(
        "SELECT fingerprint, agent, target, labels FROM alerts"
        " WHERE alertname='ErpathRouteFlip' AND ends_s IS NULL"
    ).fetchall():
        lab = json.loads(labels)
        origin = _legacy_path(lab.get("from", "unknown"))
        if origin == _legacy_path(lab.get("to", "unknown")):
            conn.execute(
                "UPDATE alerts SET ends_s=?, version=version+1, updated_s=? WHERE fingerprint=?",
                (now, now, fp),
            )
            continue
        conn.execute(
            "UPDATE paths SET flip_origin=? WHERE target=?"
            " AND agent_ref=(SELECT ref FROM agents WHERE id=?)",
            (json.dumps(origin), target, agent),
        )


# Each entry moves the schema from version i to i+1; never edit a shipped one.
# An entry is SQL statements, or a function of the connection for what SQL
# alone cannot say; both backends run it (PostgreSQL with its type names,
# dialect.postgresql_ddl).  POSTGRESQL_FORMS below holds the few steps that
# PostgreSQL must run in a form of its own.
MIGRATIONS: tuple[str | Callable[[Any], None], ...] = (
    """
    CREATE TABLE agents(
        ref INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        site TEXT NOT NULL,
        role TEXT NOT NULL,
        version TEXT NOT NULL,
        hostname TEXT NOT NULL,
        interval_s REAL,
        last_seq INTEGER NOT NULL,
        last_report_id TEXT,
        first_seen_s REAL NOT NULL,
        last_seen_s REAL NOT NULL,
        silent INTEGER NOT NULL DEFAULT 0,
        cycle_s REAL,
        spool_reports INTEGER,
        dropped_reports_total INTEGER
    );
    CREATE TABLE sites(
        name TEXT PRIMARY KEY,
        facts TEXT NOT NULL,
        from_agent TEXT NOT NULL,
        updated_s REAL NOT NULL
    );
    CREATE TABLE layouts(
        ref INTEGER PRIMARY KEY,
        digest BLOB NOT NULL UNIQUE,
        body TEXT NOT NULL
    );
    CREATE TABLE observations(
        agent_ref INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        report_id BLOB NOT NULL,
        received_s INTEGER NOT NULL,
        layout_ref INTEGER NOT NULL,
        times BLOB NOT NULL
    );
    CREATE UNIQUE INDEX observations_seq ON observations(agent_ref, seq);
    CREATE TABLE paths(
        agent_ref INTEGER NOT NULL,
        target TEXT NOT NULL,
        role TEXT NOT NULL,
        class TEXT NOT NULL,
        circuit TEXT,
        link TEXT,
        egress TEXT,
        address TEXT,
        addresses TEXT NOT NULL,
        signature TEXT NOT NULL,
        evidence TEXT NOT NULL,
        expected TEXT,
        matches_expected INTEGER,
        connect_s REAL,
        dns_s REAL,
        hops INTEGER,
        tcp_state TEXT,
        since_s REAL NOT NULL,
        last_seq INTEGER NOT NULL,
        last_received_s REAL NOT NULL,
        candidate TEXT,
        flips_total INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY(agent_ref, target)
    ) WITHOUT ROWID;
    CREATE TABLE traces(
        id INTEGER PRIMARY KEY,
        agent_ref INTEGER NOT NULL,
        target TEXT NOT NULL,
        seq INTEGER NOT NULL,
        received_s REAL NOT NULL,
        signature TEXT NOT NULL,
        body BLOB NOT NULL
    );
    CREATE INDEX traces_path ON traces(agent_ref, target, seq);
    CREATE TABLE latest_results(
        agent_ref INTEGER PRIMARY KEY,
        seq INTEGER NOT NULL,
        received_s REAL NOT NULL,
        body BLOB NOT NULL
    );
    CREATE TABLE events(
        id INTEGER PRIMARY KEY,
        at_s REAL NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        site TEXT,
        agent TEXT,
        target TEXT,
        circuit TEXT,
        driver TEXT,
        summary TEXT NOT NULL,
        before TEXT,
        after TEXT,
        evidence TEXT NOT NULL
    );
    CREATE INDEX events_at ON events(at_s);
    CREATE INDEX events_agent ON events(agent, at_s);
    CREATE TABLE reported_asymmetries(
        agent_ref INTEGER NOT NULL,
        target TEXT NOT NULL,
        site TEXT NOT NULL,
        circuit TEXT NOT NULL,
        evidence TEXT NOT NULL,
        seen_s REAL NOT NULL
    );
    CREATE INDEX reported_asymmetries_agent ON reported_asymmetries(agent_ref);
    CREATE TABLE asymmetries(
        site TEXT NOT NULL,
        circuit TEXT NOT NULL,
        kind TEXT NOT NULL,
        active INTEGER NOT NULL,
        since_s REAL NOT NULL,
        updated_s REAL NOT NULL,
        members TEXT NOT NULL,
        evidence TEXT NOT NULL,
        PRIMARY KEY(site, circuit, kind)
    ) WITHOUT ROWID;
    CREATE TABLE alerts(
        fingerprint TEXT PRIMARY KEY,
        alertname TEXT NOT NULL,
        site TEXT,
        agent TEXT,
        target TEXT,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        starts_s REAL NOT NULL,
        ends_s REAL,
        version INTEGER NOT NULL,
        updated_s REAL NOT NULL
    );
    CREATE INDEX alerts_scope ON alerts(alertname, agent, target);
    CREATE TABLE alert_receipts(
        receiver TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        version INTEGER NOT NULL,
        sent_s REAL NOT NULL,
        PRIMARY KEY(receiver, fingerprint)
    ) WITHOUT ROWID;
    CREATE TABLE tokens(
        id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        digest BLOB NOT NULL,
        created_s REAL NOT NULL,
        revoked_s REAL
    );
    """,
    # 2: the link is no longer part of a path's identity (issue 13).
    """
    ALTER TABLE paths ADD COLUMN flip_origin TEXT;
    ALTER TABLE reported_asymmetries ADD COLUMN severity TEXT NOT NULL DEFAULT 'critical';
    CREATE TABLE circuit_links(
        site TEXT NOT NULL,
        circuit TEXT NOT NULL,
        agent_ref INTEGER NOT NULL,
        primary_flows INTEGER NOT NULL,
        secondary_flows INTEGER NOT NULL,
        seen_s REAL NOT NULL,
        PRIMARY KEY(site, circuit, agent_ref)
    ) WITHOUT ROWID;
    CREATE TABLE circuit_redundancy(
        site TEXT NOT NULL,
        circuit TEXT NOT NULL,
        mode TEXT NOT NULL,
        streak INTEGER NOT NULL,
        in_use TEXT,
        lost INTEGER NOT NULL,
        updated_s REAL NOT NULL,
        PRIMARY KEY(site, circuit)
    ) WITHOUT ROWID;
    """,
    _link_out_of_identity,
    # 4: tokens bound to a site and role (NULL: issued before, bound by the next report),
    # each agent's own site facts, the agent's state epoch (issue 14).
    """
    ALTER TABLE tokens ADD COLUMN site TEXT;
    ALTER TABLE tokens ADD COLUMN role TEXT;
    ALTER TABLE agents ADD COLUMN epoch TEXT;
    CREATE TABLE agent_site_facts(
        agent_ref INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        facts TEXT NOT NULL,
        updated_s REAL NOT NULL
    );
    CREATE INDEX agent_site_facts_site ON agent_site_facts(site);
    """,
    # 5: growth with bounds and what each agent runs with (issue 14 item 2, issue 16 item 4).
    # A layout's last use, kept by the pruning from the observations it scanned (rowid
    # watermark in `marks`): unused layouts go without an index on the largest table.
    # Targets refused by the per-agent cap; the service tags' changeNumber, and when
    # they were installed on the collector's clock (received time minus the reported age).
    """
    ALTER TABLE layouts ADD COLUMN last_used_s REAL;
    UPDATE layouts SET last_used_s = u.last_s FROM
        (SELECT layout_ref, max(received_s) AS last_s FROM observations GROUP BY layout_ref) AS u
        WHERE u.layout_ref = layouts.ref;
    CREATE TABLE marks(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO marks(name, value)
        SELECT 'layouts_scanned_rowid', coalesce(max(rowid), 0) FROM observations;
    ALTER TABLE agents ADD COLUMN targets_refused INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE agents ADD COLUMN service_tags_change_number INTEGER;
    ALTER TABLE agents ADD COLUMN service_tags_installed_s REAL;
    """,
    # 6: a path per (agent, target, family) (issue 15).  Every stored path was measured
    # over IPv4 (agents before issue 15 probed IPv4 only) and becomes family 4; alerts are
    # not touched: an IPv4 path's alerts carry no family label, so their fingerprints stay.
    """
    CREATE TABLE paths_by_family(
        agent_ref INTEGER NOT NULL,
        target TEXT NOT NULL,
        family INTEGER NOT NULL DEFAULT 4,
        role TEXT NOT NULL,
        class TEXT NOT NULL,
        circuit TEXT,
        link TEXT,
        egress TEXT,
        address TEXT,
        addresses TEXT NOT NULL,
        signature TEXT NOT NULL,
        evidence TEXT NOT NULL,
        expected TEXT,
        matches_expected INTEGER,
        connect_s REAL,
        dns_s REAL,
        hops INTEGER,
        tcp_state TEXT,
        since_s REAL NOT NULL,
        last_seq INTEGER NOT NULL,
        last_received_s REAL NOT NULL,
        candidate TEXT,
        flips_total INTEGER NOT NULL DEFAULT 0,
        flip_origin TEXT,
        PRIMARY KEY(agent_ref, target, family)
    ) WITHOUT ROWID;
    INSERT INTO paths_by_family(agent_ref, target, family, role, class, circuit, link, egress,
        address, addresses, signature, evidence, expected, matches_expected, connect_s, dns_s,
        hops, tcp_state, since_s, last_seq, last_received_s, candidate, flips_total, flip_origin)
    SELECT agent_ref, target, 4, role, class, circuit, link, egress, address, addresses,
        signature, evidence, expected, matches_expected, connect_s, dns_s, hops, tcp_state,
        since_s, last_seq, last_received_s, candidate, flips_total, flip_origin FROM paths;
    DROP TABLE paths;
    ALTER TABLE paths_by_family RENAME TO paths;
    ALTER TABLE traces ADD COLUMN family INTEGER NOT NULL DEFAULT 4;
    ALTER TABLE reported_asymmetries ADD COLUMN family INTEGER NOT NULL DEFAULT 4;
    """,
    # 7: when each alert receiver was first configured (issue 14 item 12): a receiver
    # hears the resolutions that happen from then on (an outage included), not the
    # history before it.  Receivers that already acknowledged alerts date from their first.
    """
    CREATE TABLE alert_receivers(name TEXT PRIMARY KEY, since_s REAL NOT NULL) WITHOUT ROWID;
    INSERT INTO alert_receivers(name, since_s)
        SELECT receiver, min(sent_s) FROM alert_receipts GROUP BY receiver;
    """,
)


# Steps PostgreSQL runs in a form of its own (by index in MIGRATIONS); type names are
# translated in these too.  SQLite orders observations by rowid; PostgreSQL has no rowid,
# so its observations carry an explicit, ordered id (retention bisects on it).
_OBSERVATIONS_SQLITE = "CREATE TABLE observations(\n        agent_ref INTEGER NOT NULL,"
_OBSERVATIONS_POSTGRESQL = (
    "CREATE TABLE observations(\n        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "\n        agent_ref INTEGER NOT NULL,"
)
assert isinstance(MIGRATIONS[0], str) and _OBSERVATIONS_SQLITE in MIGRATIONS[0]
assert isinstance(MIGRATIONS[4], str) and "max(rowid)" in MIGRATIONS[4]
POSTGRESQL_FORMS: dict[int, str | Callable[[Any], None]] = {
    0: MIGRATIONS[0].replace(_OBSERVATIONS_SQLITE, _OBSERVATIONS_POSTGRESQL),
    4: MIGRATIONS[4].replace("max(rowid)", "max(id)"),
}

SCHEMA_VERSION = len(MIGRATIONS)

# Reader threads (each with its own connection), and the most jobs one write
# transaction takes: enough to commit a fleet's burst with one fsync, few
# enough that one transaction stays short.
READERS = 2
MAX_BATCH = 256
# A job that lost a race with another writer (PostgreSQL: deadlock, serialization
# failure, a key another transaction inserted first) runs again this many times.
RETRIES = 3
RETRY_BACKOFF_S = 0.05  # the most a retry waits, times its attempt (random below it)


class StoreError(RuntimeError):
    """The database cannot be used (not a migration we know, not writable)."""


def run_step(conn: Any, version: int) -> None:
    """Run migration step `version` (0-based) on a connection of either dialect."""
    step = MIGRATIONS[version]
    postgresql = dialect.of(conn) == dialect.POSTGRESQL
    if postgresql:
        step = POSTGRESQL_FORMS.get(version, step)
    if callable(step):
        step(conn)
        return
    if postgresql:
        step = dialect.postgresql_ddl(step)
    for stmt in step.split(";"):
        if stmt.strip():
            conn.execute(stmt)


def check_version(found: int, where: str) -> None:
    if found > SCHEMA_VERSION:
        raise StoreError(
            f"{where}: database schema version {found} is newer than this collector's "
            f"{SCHEMA_VERSION}; upgrade erpath-collector"
        )


class Database(Protocol):
    """What a backend gives the Store: connections, transactions, snapshot reads."""

    dialect: str
    writers: int  # writer threads (each with its own connection)
    where: str  # for messages: the file or the URL (never a password)

    def open(self) -> list[Any]:
        """Migrate; return one connection per writer."""

    def begin(self, conn: Any) -> None: ...

    def in_transaction(self, conn: Any) -> bool: ...

    def retryable(self, exc: BaseException) -> bool:
        """The job lost a race with another transaction; running it again can succeed."""

    def read(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(conn, *args) in one read-only snapshot, on the calling thread."""

    def close(self, writer_conns: list[Any]) -> None: ...


class PerThreadCache(MutableMapping[str, Any]):
    """A dict per writer thread, behind one object the callers pass to write jobs.

    Several writers (PostgreSQL) must not share cached row ids: one writer's
    uncommitted (or rolled-back) row is not another's to use.  Removing a key
    (`pop`, `del`, `clear`), from any thread, empties every thread's dict: a
    prune on one writer deletes rows another writer may have cached.  Each
    dict also goes after `max_age_s`: a row another replica's prune deleted
    was unused for far longer.
    """

    def __init__(self, max_age_s: float = 3600.0) -> None:
        self._local = threading.local()
        self._generation = 0
        self.max_age_s = max_age_s

    def _mine(self) -> dict[str, Any]:
        local = self._local
        d = getattr(local, "d", None)
        now = time.monotonic()
        if d is None or local.generation != self._generation or now - local.born > self.max_age_s:
            d = local.d = {}
            local.generation, local.born = self._generation, now
        return d

    def __getitem__(self, key: str) -> Any:
        return self._mine()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._mine()[key] = value

    def __delitem__(self, key: str) -> None:
        self._generation += 1

    def pop(self, key: str, *default: Any) -> Any:
        value = self._mine().get(key, *default) if default else self._mine()[key]
        self._generation += 1
        return value

    def clear(self) -> None:
        self._generation += 1

    def __iter__(self) -> Iterator[str]:
        return iter(self._mine())

    def __len__(self) -> int:
        return len(self._mine())


class _Job:
    __slots__ = ("fn", "args", "future")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]):
        self.fn = fn
        self.args = args
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()


_STOP = object()


def _is_postgresql_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


class Store:
    """The collector's database; `write` and `read` run functions of a connection.

    `Store(path)` is SQLite; `Store("postgresql://user@host/db", passfile=...)`
    is PostgreSQL (`Store.for_config` reads [store]).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        journal_mode: str = "wal",
        passfile: str = "",
        writers: int = 4,
    ):
        self.path = str(path)
        self._db: Database
        if _is_postgresql_url(self.path):
            from collector.postgres import PostgresDatabase  # psycopg only when asked for

            self._db = PostgresDatabase(self.path, passfile=passfile, writers=writers)
        else:
            from collector.sqlitedb import SqliteDatabase

            self._db = SqliteDatabase(self.path, journal_mode=journal_mode)
        self.dialect = self._db.dialect
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writers: list[threading.Thread] = []
        self._wconns: list[Any] = []
        self._readers = concurrent.futures.ThreadPoolExecutor(
            READERS, thread_name_prefix="erpath-read"
        )
        # The collector's own reads (alert delivery, token refresh) have their own thread:
        # a flood of API GETs queued on the readers above cannot delay an alert.
        self._internal = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="erpath-read-internal"
        )
        # Writer-thread-only caches (agent refs, layouts): one dict per writer thread.
        self.cache: MutableMapping[str, Any] = {} if self._db.writers == 1 else PerThreadCache()
        self.read_cache: dict[str, Any] = {}  # caches of the internal reader thread only
        self.writer_error: str | None = None  # why a writer thread ended, if one did
        self.closed = True

    @classmethod
    def for_config(cls, cfg: Any) -> Store:
        """The store a [store] section describes (collector.config.StoreConfig)."""
        if cfg.url:
            return cls(cfg.url, passfile=cfg.passfile, writers=cfg.writers)
        return cls(cfg.path, journal_mode=cfg.journal_mode)

    @property
    def where(self) -> str:
        return self._db.where

    def lock_session(self) -> Any:
        """PostgreSQL only: a session of its own (autocommit, `%s` placeholders, keepalives,
        a statement timeout) for session-level advisory locks (collector/leader.py)."""
        session = getattr(self._db, "lock_session", None)
        if session is None:
            raise StoreError(f"{self.where}: advisory locks need PostgreSQL")
        return session()

    # ----------------------------------------------------------------- lifecycle

    def open(self) -> None:
        self._wconns = self._db.open()  # raises StoreError
        self.closed = False
        self._writers = [
            threading.Thread(
                target=self._run_writer,
                args=(conn,),
                name="erpath-writer" if len(self._wconns) == 1 else f"erpath-writer-{i}",
                daemon=True,
            )
            for i, conn in enumerate(self._wconns)
        ]
        for thread in self._writers:
            thread.start()

    def close(self) -> None:
        """Finish every queued write, then close all connections."""
        if self.closed:
            return
        self.closed = True
        for _ in self._writers:
            self._queue.put(_STOP)
        for thread in self._writers:
            thread.join()
        self._readers.shutdown(wait=True)
        self._internal.shutdown(wait=True)
        self._db.close(self._wconns)
        self._wconns = []

    # ----------------------------------------------------------------- writer

    def _run_writer(self, conn: Any) -> None:
        batch: list[_Job] = []
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch = [first]
                stopping = False
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stopping = True
                        break
                    batch.append(nxt)
                self._run_batch(conn, batch)
                batch = []
                if stopping:
                    break
        except BaseException as exc:
            # The connection is in an unknown state (a ROLLBACK that failed): this thread
            # ends.  Every caller waiting now, or later, gets an error instead of hanging
            # (a hung caller holds an admission slot for ever); the application's
            # supervisor sees `writer_alive` false and ends the process for a restart.
            self.writer_error = f"{type(exc).__name__}: {exc}"
            log.critical("the store's writer thread died: %s", self.writer_error, exc_info=True)
            dead = StoreError(f"the store's writer died ({self.writer_error})")
            self._fail(batch, dead)
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(job, _Job):
                    self._fail([job], dead)

    @staticmethod
    def _fail(jobs: list[_Job], exc: BaseException) -> None:
        for job in jobs:
            with contextlib.suppress(concurrent.futures.InvalidStateError, RuntimeError):
                if job.future.running() or job.future.set_running_or_notify_cancel():
                    job.future.set_exception(exc)

    def _run_job(self, conn: Any, job: _Job, retries: int = RETRIES) -> tuple[bool, Any]:
        """One job in its own savepoint; a lost race runs it again, other errors are its own."""
        attempt = 0
        while True:
            conn.execute("SAVEPOINT job")
            try:
                value = job.fn(conn, *job.args)
                conn.execute("RELEASE job")
                return True, value
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                # Rows the job inserted are gone, and their ids are handed out again
                # (SQLite): a cached id (a layout's) would now name another row.
                self.cache.clear()
                attempt += 1
                if attempt > retries or not self._db.retryable(exc):
                    return False, exc
                log.info("write job lost a race (%s); running it again", exc)
                # Not at once: the winner must get the rows this job just let go before
                # it takes them again (else the same deadlock comes back at each try).
                time.sleep(random.uniform(0.0, RETRY_BACKOFF_S * attempt))

    def _run_batch(self, conn: Any, batch: list[_Job]) -> None:
        # A job whose caller went away (its future cancelled) is skipped; the others can no
        # longer be cancelled, so setting their results below cannot raise and kill this thread.
        batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
        while batch:
            batch = self._run_transaction(conn, batch)

    def _run_transaction(self, conn: Any, batch: list[_Job]) -> list[_Job]:
        """The jobs in one transaction; return those left for the next one.

        A job after the first that loses a race (PostgreSQL: a deadlock with another
        writer or replica over shared rows, a site's or a layout's) is not run again
        here: this transaction still holds the rows of the jobs before it, which is
        what the other waits for, so the same deadlock would come back at each try.
        Those jobs commit, and the loser leads the next transaction, holding nothing."""
        outcomes: list[tuple[bool, Any]] = []
        rest: list[_Job] = []
        try:
            self._db.begin(conn)
            for i, job in enumerate(batch):
                ok, value = self._run_job(conn, job, RETRIES if i == 0 else 0)
                if not ok and i > 0 and self._db.retryable(value):
                    rest = batch[i:]
                    break
                outcomes.append((ok, value))
            conn.execute("COMMIT")
        except BaseException as exc:  # commit failed (disk full, I/O): nobody is acknowledged
            log.error("write transaction failed: %s", exc)
            if self._db.in_transaction(conn):
                conn.execute("ROLLBACK")
            self.cache.clear()
            for job in batch:
                job.future.set_exception(StoreError(f"write failed: {exc}"))
            return []
        for job, (ok, value) in zip(batch, outcomes, strict=False):
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)
        return rest

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        if self.closed:
            raise StoreError("store is closed")
        if self.writer_error is not None:
            raise StoreError(f"the store's writer died ({self.writer_error})")
        job = _Job(fn, args)
        self._queue.put(job)
        if self.writer_error is not None:  # it died while this job was queued
            self._fail([job], StoreError(f"the store's writer died ({self.writer_error})"))
        return job.future

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(conn, *args) in a transaction on a writer thread; return after COMMIT."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def write_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self.submit(fn, *args).result()

    # ----------------------------------------------------------------- readers

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(conn, *args) in one read snapshot, on the calling thread."""
        return self._db.read(fn, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.read_sync, fn, *args)

    async def read_internal(self, fn: Callable[..., T], *args: Any) -> T:
        """`read` for the collector's own work, on a thread no API request queues on."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._internal, self.read_sync, fn, *args)

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run any blocking function (e.g. a metrics render) on a reader thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, fn, *args)

    @property
    def writer_alive(self) -> bool:
        return (
            not self.closed
            and self.writer_error is None
            and bool(self._writers)
            and all(t.is_alive() for t in self._writers)
        )
