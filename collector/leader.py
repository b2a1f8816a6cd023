"""Which replica leads: evaluates, delivers alerts and prunes.  Any replica takes reports.

Several collectors on one PostgreSQL elect their leader with a session-level
advisory lock held on a connection of its own (TCP keepalives, a TCP user
timeout and a statement timeout: a leader cut off from the database notices
within seconds).  The others try to take it every `RETRY_S`; when the
leader's process dies its socket closes, the server ends the session and
releases the lock, so another replica leads within `RETRY_S` plus a query.

The leader asks again that it still holds the lock (`confirm`, one query on
that connection) before each alert delivery batch and each evaluation write;
an answer of no, an error or no answer within `CHECK_TIMEOUT_S` is the end of
its leadership at once: `lost` is set and the application stops the duties.

On SQLite (one process owns the file) the replica always leads: `connect` is
None and no query is ever made.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

# The advisory lock's key, two int4 (pg_locks shows them as classid, objid with objsubid 2):
# 'erpa' and the alert leader.  Advisory locks are per database: one fleet, one database.
LOCK_KEY = (0x65727061, 1)
# A follower tries to take the lock this often; the leader re-checks it at least as often.
RETRY_S = 2.0
# A lock query that has not answered after this long counts as a lost lock.
CHECK_TIMEOUT_S = 3.0

TRY_LOCK = "SELECT pg_try_advisory_lock(%s, %s)"
HOLDS_LOCK = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    " AND classid = %s AND objid = %s AND objsubid = 2 AND granted"
)
UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"


class LockSession(Protocol):
    """A database session of its own (autocommit): the store's backend opens it."""

    def execute(self, query: Any, params: Any = ...) -> Any: ...

    def close(self) -> None: ...


class Leadership:
    """This replica's leadership: `leading`, events `won`/`lost`, `confirm()`, `run()`."""

    def __init__(
        self,
        connect: Callable[[], LockSession] | None,
        *,
        retry_s: float = RETRY_S,
        check_timeout_s: float = CHECK_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.shared = connect is not None
        self._connect = connect
        self.retry_s = retry_s
        self.check_timeout_s = check_timeout_s
        self.clock = clock
        self.leading = not self.shared
        self.won = asyncio.Event()
        self.lost = asyncio.Event()
        (self.won if self.leading else self.lost).set()
        self.since_s = clock()  # monotonic time of the last change
        self.changes = 0  # times leadership was taken or lost since start
        self.last_error: str | None = None  # why the last lock query failed
        self._session: LockSession | None = None
        # Every lock query runs on this one thread, in order: a query stuck on a cut-off
        # network holds only it, and the session is dropped after it (see _call).
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="erpath-lead")

    # ----------------------------------------------------------------- on the lock thread

    def _session_now(self) -> LockSession:
        if self._session is None:
            assert self._connect is not None
            self._session = self._connect()
        return self._session

    def _drop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(Exception):
                session.close()  # the server ends the session: the lock is released

    def _try_lock(self) -> bool:
        (got,) = self._session_now().execute(TRY_LOCK, LOCK_KEY).fetchone()
        return bool(got)

    def _holds(self) -> bool:
        if self._session is None:
            return False
        (held,) = self._session.execute(HOLDS_LOCK, LOCK_KEY).fetchone()
        return held == 1

    def _release(self) -> None:
        if self._session is not None and self.leading:
            with contextlib.suppress(Exception):
                self._session.execute(UNLOCK, LOCK_KEY).fetchone()
        self._drop()

    # ----------------------------------------------------------------- on the event loop

    async def _call(self, fn: Callable[[], bool]) -> bool:
        """fn on the lock thread; an error or a timeout is False and drops the session."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._thread, fn), self.check_timeout_s
            )
        except Exception as exc:  # noqa: BLE001 - any failure means "not known to hold it"
            error = f"{type(exc).__name__}: {exc}".strip(": ")
            if error != self.last_error:  # once per new error, not at every retry
                log.warning("the leader's lock query failed: %s", error)
            self.last_error = error
            # Queued behind a stuck query, the drop runs once that query gives up.
            with contextlib.suppress(RuntimeError):  # the thread is gone: closed already
                self._thread.submit(self._drop)
            return False

    def _win(self) -> None:
        self.last_error = None
        self.leading = True
        self.since_s = self.clock()
        self.changes += 1
        self.lost.clear()
        self.won.set()
        log.info("this replica now leads: it evaluates and delivers alerts")

    def _lose(self, why: str) -> None:
        if not self.leading:
            return
        self.leading = False
        self.since_s = self.clock()
        self.changes += 1
        self.won.clear()
        self.lost.set()
        log.warning("this replica no longer leads (%s): evaluation and delivery stop", why)

    async def confirm(self) -> bool:
        """True while this replica still holds the lock, asked now; False ends leadership."""
        if not self.shared:
            return True
        if not self.leading:
            return False
        if await self._call(self._holds):
            return True
        self._lose(self.last_error or "the lock is no longer held")
        return False

    async def attempt(self) -> bool:
        """Take the lock if it is free (a follower's try); True when this replica leads."""
        if not self.leading and await self._call(self._try_lock):
            self._win()
        return self.leading

    async def run(self) -> None:
        """Take the lock when free, keep checking it while held; until cancelled."""
        while True:
            await asyncio.sleep(self.retry_s)
            if self.leading:
                await self.confirm()
            else:
                await self.attempt()

    async def close(self) -> None:
        """Release the lock and close the session: another replica may lead at once."""
        if self.shared:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    loop.run_in_executor(self._thread, self._release), self.check_timeout_s
                )
            self._lose("this replica stops")
        self._thread.shutdown(wait=False)
