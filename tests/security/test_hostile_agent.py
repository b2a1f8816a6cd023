"""One agent's token must not stall the fleet (issue 14): an agent that ignores
Retry-After and resends large reports is held unread, then closed.

Before: every refused request was answered (429 with Retry-After), and aiohttp
then read and discarded its whole body so that the client would see the
answer; a hostile agent resending 1.8 MB reports from 32 connections made the
collector drain ~0.8 GB/s (BENCHMARKS.md, "One hostile agent among 2,000").
Now a request refused by the agent's own limits while the agent is still
inside an earlier refusal's Retry-After waits until then without being read,
and its connection is closed without an answer.  An agent that honours
Retry-After never gets there: the first refusal is the same 429 as before.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from collector.ratelimit import RetryAfterWatch
from tests.collector.reports import er, simple
from tests.reliability.procs import CollectorProcess, add_tokens

pytestmark = pytest.mark.timeout(180)

API = "/api/v1"
# The most the collector's kernel may buffer for a connection that is not read (receive
# buffer autotuning stops there), plus aiohttp's read-ahead and the resender's own send
# buffer (a few hundred KiB): the most it can push into a collector that does not read.
RMEM_MAX_BYTES = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
UNREAD_MOST_BYTES = RMEM_MAX_BYTES + 4 * 1024 * 1024
# Twice that: a collector that reads the body takes all of it.
BODY_BYTES = 2 * UNREAD_MOST_BYTES


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_only_a_refusal_inside_an_earlier_retry_after_beyond_the_allowance_is_held():
    clock = Clock()
    watch = RetryAfterWatch(allowance=2, clock=clock)
    assert watch.refused("a", 10.0) == 0.0  # the first refusal is answered: 10 s window
    clock.now_s += 1
    assert watch.refused("a", 9.0) == 0.0  # a second request in progress, refused too
    clock.now_s += 1
    assert watch.refused("a", 8.0) == pytest.approx(8.0)  # ignores it: hold 8 s
    assert watch.refused("b", 10.0) == 0.0  # other agents have windows of their own
    clock.now_s += 8
    assert watch.refused("a", 5.0) == 0.0  # came back when told: answered, a new window
    # The in-flight limit's refusals open no window (requests sent together before
    # any answer ignored nothing) ...
    watch = RetryAfterWatch(allowance=1, clock=clock)
    assert [watch.refused("c", 0.0) for _ in range(5)] == [0.0] * 5
    # ... but count inside a bucket refusal's window.
    assert watch.refused("c", 3.0) == 0.0
    assert watch.refused("c", 0.0) == pytest.approx(3.0)


def test_held_places_are_capped_and_windows_bounded():
    clock = Clock()
    watch = RetryAfterWatch(allowance=1, max_held=2, clock=clock, max_keys=100)
    assert [watch.hold(), watch.hold(), watch.hold()] == [True, True, False]
    watch.release()
    assert watch.hold() and watch.held == 2
    for i in range(1000):
        watch.refused(f"agent-{i}", 60.0)
        clock.now_s += 0.01
    assert len(watch) <= 100


def _metric(proc: CollectorProcess, name: str, labels: str = "") -> float:
    status, _, body = proc.request("GET", "/metrics")
    assert status == 200
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", body.decode(), re.M)
    assert match is not None, f"{name}{labels} not exported"
    return float(match.group(1))


class Resender(threading.Thread):
    """An agent that ignored the Retry-After: a report with a large body, sent at once
    on a new connection, pushed until the collector closes the connection."""

    def __init__(self, port: int, token: str):
        super().__init__(daemon=True)
        self.port, self.token = port, token
        self.sent_bytes = 0
        self.answer = b""
        self.ended_by: str | None = None

    def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A fixed send buffer (no autotuning): what was sent and not read waits here.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.connect(("127.0.0.1", self.port))
        try:
            sock.sendall(
                (
                    f"POST {API}/reports HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {BODY_BYTES}\r\n\r\n"
                ).encode()
            )
            chunk = b" " * 65536
            while self.sent_bytes < BODY_BYTES:
                self.sent_bytes += sock.send(chunk[: BODY_BYTES - self.sent_bytes])
            self.ended_by = "body sent"
        except OSError as exc:  # the collector closed the connection (reset, broken pipe)
            self.ended_by = type(exc).__name__
        try:
            while data := sock.recv(65536):
                self.answer += data
        except OSError:
            pass
        sock.close()


def test_an_agent_that_ignores_retry_after_is_closed_unread_while_others_report(
    tmp_path: Path,
):
    agents = ["evil-1", "br-1"]
    tokens = add_tokens(tmp_path / "collector.db", agents)
    # A slow bucket (Retry-After ~100 s after the burst) and one report in progress per
    # agent, so the second refusal inside a Retry-After is past the allowance.
    proc = CollectorProcess(
        tmp_path,
        ingest="rate_per_agent_per_s = 0.01\nburst_per_agent = 3\nmax_in_flight_per_agent = 1",
    )
    proc.start()
    try:

        def post(agent: str, seq: int) -> tuple[int, dict, bytes]:
            return proc.request(
                "POST",
                f"{API}/reports",
                json.dumps(simple(agent, seq, er())).encode(),
                {"Authorization": f"Bearer {tokens[agent]}", "Content-Type": "application/json"},
            )

        assert [post("evil-1", seq)[0] for seq in (1, 2, 3)] == [201] * 3
        # The first refusal: the same 429 problem+json with Retry-After as ever.
        status, headers, body = post("evil-1", 4)
        assert status == 429, body
        assert headers["content-type"].startswith("application/problem+json")
        assert int(headers["retry-after"]) >= 60
        problem = json.loads(body)
        assert problem["status"] == 429 and problem["type"].endswith("rate-limited")
        assert "sends faster than the collector accepts" in problem["detail"]

        # At once again, with a large body: held, unread.
        resender = Resender(proc.port, tokens["evil-1"])
        resender.start()
        # Until the collector has it (held now, or already closed if this process was
        # starved of CPU for the whole hold).
        while (
            _metric(proc, "erpath_ingest_held_requests") < 1
            and _metric(proc, "erpath_ingest_closed_unread_total") < 1
        ):
            time.sleep(0.01)
        # Meanwhile another agent's reports are acknowledged.
        assert [post("br-1", seq)[0] for seq in (1, 2, 3)] == [201] * 3
        resender.join(120)
        assert not resender.is_alive()

        print(f"\nthe resender pushed {resender.sent_bytes} of {BODY_BYTES} bytes")
        assert resender.answer == b""  # closed without an answer
        assert resender.ended_by != "body sent", resender.sent_bytes
        # Not read: the resender could push no more than the buffers hold.
        assert resender.sent_bytes < UNREAD_MOST_BYTES, resender.sent_bytes
        assert _metric(proc, "erpath_ingest_closed_unread_total") == 1
        assert _metric(proc, "erpath_ingest_held_requests") == 0
        # The one refusal answered; the held request is not a report received.
        assert _metric(proc, "erpath_reports_received_total", '{result="rejected"}') == 1
        assert _metric(proc, "erpath_reports_received_total", '{result="accepted"}') == 6
        assert proc.request("GET", "/readyz")[0] == 200
    finally:
        proc.stop()
    assert "Traceback" not in proc.log.read_text()
