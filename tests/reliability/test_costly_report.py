"""One agent cannot stall ingest for everyone (issue 14, item 1).

An authenticated agent sends the most costly report the collector accepts
(every cap reached, ~3.7 MB, half reverse traces) back to back from two
connections; 50 ordinary agents report once a second meanwhile.  Their p99
ingest latency stays within 2x of the same run without it.  Before: the
decode held the event loop for about a second per report, the report's
asymmetry inputs were unbounded, and nothing charged the agent for its
size.  A real `erpath-collector serve` with its default limits.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.reliability.costly import run
from tests.reliability.procs import CollectorProcess, add_tokens

pytestmark = pytest.mark.timeout(120)

AGENTS = [f"br-{i:02d}" for i in range(50)]
COSTLY = "evil-1"
DURATION_S = 15.0


def test_the_most_costly_report_at_full_rate_does_not_stall_other_agents(tmp_path):
    tokens = add_tokens(tmp_path / "collector.db", [*AGENTS, COSTLY])
    proc = CollectorProcess(tmp_path, ingest="max_in_flight = 64")  # default rates and bursts
    proc.start()
    try:
        quiet = asyncio.run(run(proc.url, tokens, AGENTS, DURATION_S, 1.0, first_seq=1))
        loud = asyncio.run(
            run(proc.url, tokens, AGENTS, DURATION_S, 1.0, first_seq=1000, costly_agent=COSTLY)
        )
    finally:
        proc.stop()
    print(
        f"\nwithout: p50 {quiet.p50_s * 1000:.1f} ms p99 {quiet.p99_s * 1000:.1f} ms "
        f"({len(quiet.latencies_s)} reports)\n"
        f"with:    p50 {loud.p50_s * 1000:.1f} ms p99 {loud.p99_s * 1000:.1f} ms "
        f"({len(loud.latencies_s)} reports); costly reports accepted {loud.costly_accepted}, "
        f"refused {loud.costly_refused}"
    )
    assert set(quiet.statuses) == set(loud.statuses) == {201}, (quiet.statuses, loud.statuses)
    assert loud.costly_accepted >= 1  # it really was stored, not just refused
    assert len(loud.latencies_s) >= 0.9 * len(quiet.latencies_s)
    # Within 2x of the quiet run, with a 50 ms floor: p99 of a few hundred
    # millisecond-scale requests moves by tens of ms with one scheduler hiccup
    # on a shared 2-core machine, while the stall this guards against put p99
    # at ~500 ms.
    assert loud.p99_s <= max(2 * quiet.p99_s, 0.050), (quiet.p99_s, loud.p99_s)
    assert "Traceback" not in proc.log.read_text()
