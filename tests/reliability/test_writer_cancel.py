"""A caller that goes away must not take the store's writer thread with it.

`Store.write` awaits the job's concurrent future through `asyncio.wrap_future`;
cancelling the awaiting task (background tasks at shutdown, test teardown)
cancels that future.  The writer then called `set_result` on a cancelled
future, got InvalidStateError and died: every later write hung forever.
Seen as "Exception in thread erpath-writer" while this suite ran under load;
fixed in `collector/store.py` (a cancelled job is skipped, a started one can
no longer be cancelled).
"""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

from collector.store import Store

pytestmark = pytest.mark.timeout(60)


def _blocking(conn, gate: threading.Event) -> int:
    gate.wait(10)
    return 1


def _one(conn) -> int:
    return conn.execute("SELECT 1").fetchone()[0]


def _row_count(conn) -> int:
    return conn.execute("SELECT count(*) FROM sites").fetchone()[0]


def _insert(conn) -> None:
    conn.execute("INSERT INTO sites(name, facts, from_agent, updated_s) VALUES ('x', '{}', 'a', 0)")


def test_a_cancelled_write_is_skipped_and_the_writer_lives_on(tmp_path):
    store = Store(tmp_path / "c.db")
    store.open()
    try:
        gate = threading.Event()
        busy = store.submit(_blocking, gate)  # occupies the writer
        doomed = store.submit(_insert)
        assert doomed.cancel()  # its caller went away while it was queued
        gate.set()
        assert busy.result(5) == 1
        assert store.submit(_one).result(5) == 1  # the writer still answers
        assert store.writer_alive
        assert store.read_sync(_row_count) == 0  # the cancelled job never ran
        # A job already running cannot be cancelled any more: its result is delivered.
        gate.clear()
        running = store.submit(_blocking, gate)
        for _ in range(100):
            if running.running():
                break
            threading.Event().wait(0.01)
        assert not running.cancel()
        gate.set()
        assert running.result(5) == 1
    except concurrent.futures.TimeoutError:
        pytest.fail("the writer thread died: later writes never complete")
    finally:
        gate.set()
        store.close()
