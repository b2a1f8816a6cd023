"""The watchdog tells the truth: pinged while every worker loops (a sender backing off during a
collector outage loops), not pinged when the sender hangs, and a worker that dies ends the
process with status 1 so that systemd restarts it.

The service runs in this process (its run loop in the main thread, as `erpath-agent run` does),
probing 127.0.0.1 only, with a real NOTIFY_SOCKET and a real collector port that refuses.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import replace

import pytest

from agent.service.runner import EXIT_WORKER_DIED, AgentService

from .running import loopback_agent_config, run_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def service(tmp_path, monkeypatch):
    config = loopback_agent_config(tmp_path, "loop")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(0.1)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # ping every 0.2 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    svc = AgentService(str(config))
    svc.messages = []  # (when, message) as systemd would read them
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                svc.messages.append((time.monotonic(), notify.recv(4096).decode()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    yield svc
    done.set()
    reader.join()
    notify.close()


def received(svc) -> list[tuple[float, str]]:
    time.sleep(0.2)  # the last datagrams
    return list(svc.messages)


class _Bug:
    """A delivery that fails the way a bug does (an exception no one expects)."""

    def deliver(self, _item):
        raise RuntimeError("a bug in the sender")


class _Hang:
    def __init__(self):
        self.release = threading.Event()

    def deliver(self, _item):
        self.release.wait(60)
        raise RuntimeError("released")


def test_a_sender_backing_off_during_an_outage_is_healthy(service, caplog):
    code, _ = run_for(service, 4.0)
    assert code == 0
    pings = [t for t, m in received(service) if m == "WATCHDOG=1"]
    assert len(pings) >= 10, pings  # every 0.2 s while the sender retries
    assert "event=delivery_retry" in caplog.text and "code=unreachable" in caplog.text
    assert len(service.spool) >= 1  # the report waits for the collector


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_sender_ends_the_process_with_status_1(service, caplog):
    service.setup = replace(service.setup, sender=_Bug())
    code, took_s = run_for(service, 20.0)
    assert code == EXIT_WORKER_DIED, caplog.text
    assert took_s < 10, took_s  # at once, not at the next interval
    assert "event=worker_died worker=sender" in caplog.text
    messages = [m for _, m in received(service)]
    assert messages[-1] == "STOPPING=1", messages
    assert len(service.spool) == 1  # the report stays for the next process


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_hanging_sender_stops_the_watchdog_pings(service, caplog):
    hang = _Hang()
    service.setup = replace(service.setup, sender=hang)
    service.stuck_after_s = 1.0
    try:
        code, _ = run_for(service, 4.0)
    finally:
        hang.release.set()
    assert code == 0
    pings = [t for t, m in received(service) if m == "WATCHDOG=1"]
    stuck_at = service.workers["sender"].last_beat + 1.0
    assert pings and not [t for t in pings if t > stuck_at + 0.3], (pings, stuck_at)
    assert "event=worker_stuck worker=sender" in caplog.text
