"""Cycles start an interval apart, start to start, however long each one takes.

A probe interval is read like a scrape interval: the collector confirms a path
change in reports, and users size alerts in intervals.  If the interval ran
from the end of one cycle to the start of the next, every slow trace would
stretch the detection time.  The service runs in this process, probing
127.0.0.1 only; the cycle is made slow by waiting after the real one.
"""

from __future__ import annotations

import time

import pytest

from agent.service.runner import AgentService
from tests.collector.realparts import free_port

from .running import run_for

pytestmark = pytest.mark.timeout(60)

CONFIG = """
[agent]
id = "schedule"
site = "lab"
[probe]
builtin_targets = false
interval_s = 10
jitter_s = 0
[collector]
url = "http://127.0.0.1:{port}"
token_file = "{token}"
allow_plaintext = true
[spool]
dir = "{spool}"
[[target]]
name = "loopback"
address = "127.0.0.1"
port = 9
"""

SLOW_CYCLE_S = 6.0


def test_the_interval_runs_from_start_to_start(tmp_path):
    token = tmp_path / "token"
    token.write_text("tok\n")
    token.chmod(0o600)
    config = tmp_path / "agent.toml"
    config.write_text(CONFIG.format(port=free_port(), token=token, spool=tmp_path / "spool"))
    svc = AgentService(str(config))
    starts: list[float] = []
    real = svc._cycle

    def slow(targets, **kw):
        starts.append(time.monotonic())
        real(targets, **kw)
        time.sleep(SLOW_CYCLE_S)

    svc._cycle = slow
    # Start to start, the second cycle begins at 10 s; end to start, at 16 s.
    code, _ = run_for(svc, 13.0)
    assert code == 0
    assert len(starts) == 2, starts
    assert starts[1] - starts[0] < 10 + SLOW_CYCLE_S / 2, starts
