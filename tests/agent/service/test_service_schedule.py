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

from .running import loopback_agent_config, run_for

pytestmark = pytest.mark.timeout(60)

SLOW_CYCLE_S = 6.0


def run_slowed(tmp_path, run_s: float, slow_s: float, cycles_slowed: int) -> list[float]:
    """Run the service for `run_s`, its first `cycles_slowed` cycles made `slow_s` slower;
    when each cycle started."""
    svc = AgentService(str(loopback_agent_config(tmp_path, "schedule")))
    starts: list[float] = []
    real = svc._cycle

    def slowed(targets, **kw):
        starts.append(time.monotonic())
        real(targets, **kw)
        if len(starts) <= cycles_slowed:
            time.sleep(slow_s)

    svc._cycle = slowed
    code, _ = run_for(svc, run_s)
    assert code == 0
    return starts


def test_the_interval_runs_from_start_to_start(tmp_path):
    # Start to start, the second cycle begins at 10 s; end to start, at 16 s.
    starts = run_slowed(tmp_path, 13.0, SLOW_CYCLE_S, cycles_slowed=2)
    assert len(starts) == 2, starts
    assert starts[1] - starts[0] < 10 + SLOW_CYCLE_S / 2, starts


def test_a_cycle_longer_than_the_interval_is_followed_at_once_and_logged(tmp_path, caplog):
    # Past the 10 s interval; the next interval would start at 20.5 s.
    starts = run_slowed(tmp_path, 15.0, 10.5, cycles_slowed=1)
    assert len(starts) == 2, starts  # the second at once, not 10 s after the first ended
    assert "event=cycle_overran" in caplog.text and "interval_s=10" in caplog.text
