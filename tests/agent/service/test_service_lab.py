"""`erpath-agent run` in the lab: reports reach the collector exactly once, whatever happens.

The agent runs in the branch (or datacenter core) namespace and reports over
the management network to a real collector in its own namespace.
"""

from __future__ import annotations

import time

import pytest

from tests.lab.fleet import Fleet

pytestmark = pytest.mark.lab

INTERVAL_S = 10.0


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def fleet(lab, tmp_path):
    f = Fleet(lab, tmp_path / "fleet", interval_s=INTERVAL_S)
    try:
        yield f
    finally:
        f.stop()


def spool_files(fleet: Fleet, node: str) -> list:
    return sorted((fleet.workdir / f"{node}-state" / "spool").glob("*.json.gz"))


def first_report_then_collector_away(fleet: Fleet) -> None:
    """The branch agent's first report arrives; then the collector stops."""
    fleet.start_collector()
    fleet.start_agent("branch")
    wait_for(lambda: fleet.received_seqs("branch"), 30, "the first report")
    fleet.stop_collector()


def test_collector_outage_every_report_arrives_once(fleet):
    first_report_then_collector_away(fleet)
    # Several cycles while the collector is away: they wait in the spool.
    wait_for(lambda: len(spool_files(fleet, "branch")) >= 2, 4 * INTERVAL_S, "two spooled reports")
    fleet.start_collector()
    wait_for(lambda: not spool_files(fleet, "branch"), 30, "the spool to drain")
    seqs = fleet.received_seqs("branch")
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # none lost, none twice
    assert len(seqs) >= 3


def test_kill_9_with_reports_spooled_loses_nothing(fleet):
    first_report_then_collector_away(fleet)
    wait_for(lambda: len(spool_files(fleet, "branch")) >= 1, 2 * INTERVAL_S, "a spooled report")
    spooled = len(spool_files(fleet, "branch"))
    fleet.stop_agent("branch", kill=True)
    fleet.start_collector()
    fleet.start_agent("branch")
    wait_for(
        lambda: (
            not spool_files(fleet, "branch") and len(fleet.received_seqs("branch")) >= 2 + spooled
        ),
        40,
        "the replay",
    )
    seqs = fleet.received_seqs("branch")
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


def test_route_change_triggers_a_probe_long_before_the_interval(fleet, lab, lab_scenario):
    """The datacenter core router sees the scenario's route change itself (edge-host mode)."""
    fleet.start_collector()
    fleet.start_agent("dccore", interval_s=600)
    first = wait_for(lambda: fleet.received_seqs("dccore"), 60, "the first report")
    t0 = time.monotonic()
    lab_scenario("internet-failover")  # Microsoft prefixes move from the CE to the internet edge
    wait_for(lambda: len(fleet.received_seqs("dccore")) > len(first), 20, "a triggered report")
    latency_s = time.monotonic() - t0
    # The quick second probe (for the collector's flip confirmation) follows.
    wait_for(
        lambda: len(fleet.received_seqs("dccore")) > len(first) + 1, 20, "the confirmation probe"
    )
    print(f"route-change trigger: report received {latency_s:.2f} s after the route change")
    assert latency_s < 600 / 4  # long before the next interval
    paths = fleet.get("/api/v1/paths?agent=dccore")
    assert paths
