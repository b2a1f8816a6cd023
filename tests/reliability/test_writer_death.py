"""A dead writer thread ends the collector (issue 14, item 9).

A ROLLBACK that itself failed used to kill the store's writer thread while the
event loop, and so the systemd watchdog, stayed happy: every later write waited
for ever, each holding an admission slot, until every POST got 503 and nothing
restarted the collector.  Now callers get an error at once, the watchdog pings
stop, and the process exits non-zero (Restart=on-failure restarts it).

The thread is killed the way it died in the field: a job leaves the write
connection unusable, so the savepoint's ROLLBACK and then the transaction's
ROLLBACK raise.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from collector.keys import HEALTH, STORE
from tests.collector.conftest import start_collector  # noqa: F401 - fixture
from tests.collector.reports import er, simple
from tests.reliability.procs import ROOT, CollectorProcess

pytestmark = pytest.mark.timeout(90)


def kill_writer(conn) -> None:
    conn.close()  # ROLLBACK TO job, then ROLLBACK, both fail: the writer thread ends
    raise RuntimeError("injected")


async def test_a_dead_writer_fails_callers_stops_the_watchdog_and_says_why(
    start_collector,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    notify = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    deaths: list[str] = []
    c = await start_collector()
    c.app[HEALTH].on_death = deaths.append
    try:
        assert (await c.post(simple("br-1", 1, er()))).status == 201
        await asyncio.sleep(0.5)
        pings = sock.recv(4096)
        assert b"WATCHDOG=1" in pings
        with pytest.raises(Exception, match="injected|closed|writer"):
            await c.app[STORE].write(kill_writer)
        # Every later write fails at once (503), it does not hang holding a slot.
        for seq in range(2, 6):
            resp = await asyncio.wait_for(c.post(simple("br-1", seq, er())), 5)
            assert resp.status == 503, await resp.text()
            assert "writer died" in (await resp.json())["detail"]
        assert (await c.client.get("/readyz")).status == 503
        for _ in range(50):
            if deaths:
                break
            await asyncio.sleep(0.1)
        assert deaths and "writer thread" in deaths[0]
        assert c.app[HEALTH].dead == deaths[0]
        # The watchdog pings stopped: systemd would restart a collector that did not exit.
        while True:
            try:
                sock.recv(4096)
            except BlockingIOError:
                break
        await asyncio.sleep(0.5)
        with pytest.raises(BlockingIOError):
            sock.recv(4096)
    finally:
        sock.close()


# `erpath-collector serve`, with the writer killed two seconds after it is ready.
SERVE_THEN_KILL_WRITER = textwrap.dedent(
    """
    import sys, threading
    from collector import cli, store

    opened = store.Store.open

    def kill_writer(conn):
        conn.close()
        raise RuntimeError("injected")

    def open_then_kill(self):
        opened(self)
        threading.Timer(2.0, lambda: self.submit(kill_writer)).start()

    store.Store.open = open_then_kill
    sys.exit(cli.main(sys.argv[1:]))
    """
)


def test_serve_exits_non_zero_when_the_writer_dies(tmp_path):
    proc = CollectorProcess(tmp_path)
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", SERVE_THEN_KILL_WRITER, "serve", "--config", str(proc.config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 70, out.stderr[-3000:]
    assert time.monotonic() - started < 30
    assert "writer thread" in out.stderr and "exiting for a restart" in out.stderr
