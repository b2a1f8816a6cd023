"""What only PostgreSQL has: its schema version table, migrations under an advisory
lock, the password only in a passfile, and durability through a collector's SIGKILL."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import aiohttp
import psycopg
import pytest

from collector import auth
from collector.config import ConfigError, from_dict
from collector.ingest import report_id_of
from collector.postgres import MIGRATION_LOCK_KEY, SCHEMA_TABLE
from collector.store import SCHEMA_VERSION, Store, StoreError
from tests.pgcluster import PgCluster, PgDatabase
from tests.reliability.procs import CollectorProcess

from .reports import er, simple


def _version(db: PgDatabase) -> list[tuple[int]]:
    """The rows of the schema version table ([] before any collector created it)."""
    with psycopg.connect(db.url, passfile=str(db.passfile)) as conn:
        if conn.execute("SELECT to_regclass(%s)", (SCHEMA_TABLE,)).fetchone() == (None,):
            return []
        return conn.execute(f"SELECT version FROM {SCHEMA_TABLE}").fetchall()


def test_two_collectors_opening_an_empty_database_at_once_migrate_it_once(
    pg_database: PgDatabase,
) -> None:
    # The test holds the migration lock: both stores must queue on it, then migrate once.
    holder = psycopg.connect(pg_database.url, passfile=str(pg_database.passfile), autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    stores = [Store(pg_database.url, passfile=str(pg_database.passfile)) for _ in range(2)]
    errors: list[BaseException] = []

    def open_store(s: Store) -> None:
        try:
            s.open()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    try:
        waiting = 0
        for _ in range(600):  # both are waiting for the lock (no timing: we look)
            (waiting,) = holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND objsubid = 1 AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"
            ).fetchone()
            if waiting == 2 or errors:
                break
            time.sleep(0.05)
        assert waiting == 2, errors
        assert _version(pg_database) == []  # nothing migrated while the lock is held
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        for t in threads:
            t.join(60)
        assert errors == []
        assert _version(pg_database) == [(SCHEMA_VERSION,)]
        for s in stores:  # both work on the one schema
            assert s.read_sync(lambda c: c.execute("SELECT count(*) FROM agents").fetchone()) == (
                0,
            )
    finally:
        holder.close()
        for s in stores:
            s.close()


def test_the_schema_version_is_kept_and_a_newer_one_refused(pg_database: PgDatabase) -> None:
    for _ in range(2):  # reopening migrates nothing
        s = Store(pg_database.url, passfile=str(pg_database.passfile))
        s.open()
        s.close()
        assert _version(pg_database) == [(SCHEMA_VERSION,)]
    with psycopg.connect(pg_database.url, passfile=str(pg_database.passfile)) as conn:
        conn.execute(f"UPDATE {SCHEMA_TABLE} SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this collector"):
        Store(pg_database.url, passfile=str(pg_database.passfile)).open()


def test_a_wrong_passfile_is_a_store_error_naming_the_database(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    empty = tmp_path / "pgpass"
    empty.touch(mode=0o600)
    with pytest.raises(StoreError, match=f"{pg_database.url}.*password"):
        Store(pg_database.url, passfile=str(empty)).open()


@pytest.mark.parametrize(
    ("store", "message"),
    [
        (
            {"url": "postgresql://erpath:secret@db.example.net/erpath"},
            "[store] url (its password not shown): holds a password",
        ),
        ({"url": "mysql://erpath@db.example.net/erpath"}, "must start with postgresql://"),
        ({"url": "postgresql://db.example.net/erpath"}, "needs a user, a host and a database"),
        (
            {"url": "postgresql://erpath@db.example.net/erpath", "path": "/tmp/x.db"},
            "path and journal_mode are SQLite",
        ),
        (
            {"passfile": "/nonexistent/pgpass"},
            '[store] passfile = "/nonexistent/pgpass": cannot read',
        ),
    ],
)
def test_bad_postgresql_settings_are_refused_with_the_fix(store: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_dict({"store": store}, "collector.toml")
    assert message in str(err.value)
    assert "secret" not in str(err.value)


def test_a_world_readable_passfile_is_refused(tmp_path: Path) -> None:
    passfile = tmp_path / "pgpass"
    passfile.write_text("*:*:*:erpath:secret\n")
    passfile.chmod(0o644)
    url = "postgresql://erpath@db.example.net/erpath"
    with pytest.raises(ConfigError, match="chmod 600"):
        from_dict({"store": {"url": url, "passfile": str(passfile)}}, "collector.toml")


# --------------------------------------------------------------------------- SIGKILL

AGENTS, REPORTS_EACH, KILL_AFTER = 4, 40, 60


async def _post_until_killed(
    proc: CollectorProcess, agent: str, token: str, acked: dict[tuple[str, int], str]
) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for seq in range(1, REPORTS_EACH + 1):
            doc = simple(agent, seq, er())
            try:
                async with session.post(
                    f"{proc.url}/api/v1/reports", data=json.dumps(doc).encode(), headers=headers
                ) as r:
                    await r.read()
                    if r.status not in (200, 201):
                        return
            except (aiohttp.ClientError, ConnectionError, TimeoutError):
                return  # killed
            acked[(agent, seq)] = doc["id"]
            if len(acked) >= KILL_AFTER:
                proc.kill()  # SIGKILL while the other agents' reports are in flight
                return


def test_a_report_acknowledged_on_postgresql_survives_sigkill(
    pg_cluster: PgCluster, pg_database: PgDatabase, tmp_path: Path
) -> None:
    store = Store(pg_database.url, passfile=str(pg_database.passfile))
    store.open()
    agents = [f"br-{i}" for i in range(AGENTS)]
    try:
        tokens = {a: store.write_sync(auth.add, a, time.time())[1] for a in agents}
    finally:
        store.close()
    proc = CollectorProcess(tmp_path)
    proc.config.write_text(
        f"[server]\nport = {proc.port}\n"
        f'[store]\nurl = "{pg_database.url}"\npassfile = "{pg_database.passfile}"\n'
        "[ingest]\nrate_per_agent_per_s = 100000.0\nburst_per_agent = 100000\n"
    )
    proc.start()
    acked: dict[tuple[str, int], str] = {}

    async def run() -> None:
        await asyncio.gather(*(_post_until_killed(proc, a, tokens[a], acked) for a in agents))

    try:
        asyncio.run(run())
    finally:
        proc.kill()
    assert len(acked) >= KILL_AFTER

    with psycopg.connect(pg_database.url, passfile=str(pg_database.passfile)) as conn:
        rows = conn.execute(
            "SELECT a.id, o.seq, o.report_id FROM observations o JOIN agents a ON a.ref = o.agent_ref"
        ).fetchall()
    stored = {(agent, seq): report_id_of(bytes(rid)) for agent, seq, rid in rows}
    assert len(rows) == len(stored)  # none twice
    missing = {k: v for k, v in acked.items() if stored.get(k) != v}
    assert missing == {}  # every acknowledged report, with the id that was acknowledged


def test_the_password_can_come_as_a_systemd_credential(
    pg_database: PgDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "pgpass").write_bytes(pg_database.passfile.read_bytes())
    (creds / "pgpass").chmod(0o400)
    monkeypatch.delenv("PGPASSFILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.pgpass to fall back on
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = from_dict({"store": {"url": pg_database.url}}, "collector.toml")
    s = Store.for_config(cfg.store)
    s.open()
    try:
        assert s.read_sync(lambda c: c.execute("SELECT current_user").fetchone()) == ("erpath",)
    finally:
        s.close()


def test_a_deadlock_between_two_writers_is_retried_not_surfaced(pg_database: PgDatabase) -> None:
    """Two writer connections lock two rows in opposite orders: PostgreSQL kills one
    transaction's statement; the store rolls that job back to its savepoint and runs it
    again, so both callers see success and both updates are stored."""
    s = Store(pg_database.url, passfile=str(pg_database.passfile), writers=2)
    s.open()
    try:
        for name in ("one", "two"):
            s.write_sync(
                lambda c, n: c.execute(
                    "INSERT INTO sites(name, facts, from_agent, updated_s) VALUES (?, '{}', '', 0)",
                    (n,),
                ),
                name,
            )
        first_locked, second_locked = threading.Event(), threading.Event()
        runs: list[str] = []

        def lock_both(conn, me: str, mine: threading.Event, theirs: threading.Event, order):
            runs.append(me)
            conn.execute(
                "UPDATE sites SET from_agent = from_agent || ? WHERE name = ?", (me, order[0])
            )
            mine.set()
            assert theirs.wait(30)
            conn.execute(
                "UPDATE sites SET from_agent = from_agent || ? WHERE name = ?", (me, order[1])
            )

        a = s.submit(lock_both, "a", first_locked, second_locked, ("one", "two"))
        assert first_locked.wait(30)  # a's writer holds row one: b goes to the other writer
        b = s.submit(lock_both, "b", second_locked, first_locked, ("two", "one"))
        a.result(60)
        b.result(60)
        assert len(runs) >= 3  # one of them ran again
        rows = dict(
            s.read_sync(lambda c: c.execute("SELECT name, from_agent FROM sites").fetchall())
        )
        assert sorted(rows["one"]) == sorted(rows["two"]) == ["a", "b"]
    finally:
        s.close()


def test_forgetting_an_agent_waits_for_its_report_in_flight(pg_database: PgDatabase) -> None:
    """A replica applying the agent's report holds its row: `agent forget` on another
    waits for that commit, so the report cannot re-create rows after the deletes."""
    from collector.forget import forget

    s = Store(pg_database.url, passfile=str(pg_database.passfile))
    s.open()
    try:
        s.write_sync(
            lambda c: c.execute(
                "INSERT INTO agents(id, site, role, version, hostname, last_seq, first_seen_s,"
                " last_seen_s) VALUES ('br-1', 'ams', 'branch', '1', 'h', 1, 0, 0)"
            )
        )
        with psycopg.connect(pg_database.url, passfile=str(pg_database.passfile)) as other:
            # The report: the agent's row first, then its rows, committed after forget began.
            (ref,) = other.execute("SELECT ref FROM agents WHERE id = 'br-1' FOR UPDATE").fetchone()
            other.execute(
                "INSERT INTO latest_results(agent_ref, seq, received_s, body) VALUES (%s, 2, 5, '')",
                (ref,),
            )
            pid = other.execute("SELECT pg_backend_pid()").fetchone()[0]
            forgetting = s.submit(forget, "br-1", 10.0)
            # Deterministic: wait until PostgreSQL shows the forget blocked by that session.
            deadline_s = time.monotonic() + 30
            while True:
                (blocked,) = other.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                    (pid,),
                ).fetchone()
                if blocked or time.monotonic() > deadline_s:
                    break
                time.sleep(0.05)
            assert blocked == 1 and not forgetting.done()
            other.commit()
        assert forgetting.result(30).agent == "br-1"
        left = s.read_sync(lambda c: c.execute("SELECT count(*) FROM latest_results").fetchone())
        assert left == (0,)  # the report's rows went with the agent
    finally:
        s.close()
