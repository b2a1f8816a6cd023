"""Real ExpressRoute designs end to end: the lab's branch agent's reports into a collector.

Cycles run back to back (`probe once` in the branch namespace, the report
posted as the service would), so the walk takes seconds, not intervals.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

import pytest

from collector.redundancy import MIN_FLOWS
from tests.lab.agentconfig import write_config

from .conftest import API
from .test_detection import alerts

pytestmark = pytest.mark.lab

AGENT_BIN = str(Path(sys.executable).with_name("erpath-agent"))
TARGETS = ["make.powerapps.com", "login.microsoftonline.com", "content.powerapps.com"]
# Seconds for a router's ICMP token bucket to refill its burst of 6.
REFILL_S = 6.0


def _probe_once(lab) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config("branch", lab.current_scenario, Path(tmp))
        argv = ["env", f"STATE_DIRECTORY={tmp}", AGENT_BIN, "probe", "once", "--json"]
        proc = lab.run("branch", [*argv, "--config", str(config), *TARGETS], timeout=90)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


class Branch:
    """The lab's branch agent reporting to the collector under test, cycle after cycle."""

    def __init__(self, lab, collector):
        self.lab, self.c, self.seq = lab, collector, 0

    async def cycle(self, pause_s: float = 0.0) -> dict:
        """One cycle; `pause_s` first lets the routers' ICMP token buckets refill (about
        one time-exceeded per second after a burst of 6), as an agent's interval does."""
        await asyncio.sleep(pause_s)
        doc = await asyncio.to_thread(_probe_once, self.lab)
        self.seq += 1
        doc["seq"] = self.seq  # one agent identity across the throw-away state dirs
        resp = await self.c.post(doc)
        assert resp.status == 201, await resp.text()
        return doc


def flows(doc: dict, circuit: str) -> int:
    return sum(
        seen["flows"]
        for r in doc["results"]
        if r["verdict"] and r["verdict"]["circuit"] == circuit
        for seen in r["verdict"]["links_seen"]
    )


def circuit_links(doc: dict, circuit: str) -> set[str]:
    return {
        seen["link"]
        for r in doc["results"]
        if r["verdict"] and r["verdict"]["circuit"] == circuit
        for seen in r["verdict"]["links_seen"]
    }


async def test_active_active_link_down_and_back_flaky_msee_and_the_failover_order(
    lab, lab_scenario, start_collector
):
    c = await start_collector()
    branch = Branch(lab, c)

    # Active-active, healthy: no alert of any kind over ten cycles, both links seen.
    await asyncio.to_thread(
        lab_scenario, "er-active-active"
    )  # the lab builds with its own event loop
    seen: set[str] = set()
    for _ in range(10):
        doc = await branch.cycle()
        seen |= circuit_links(doc, "ams-er-1")
    assert await alerts(c) == [], "a healthy active-active circuit raises nothing"
    assert seen == {"primary", "secondary"}

    # The secondary link shut at the CE: redundancy lost after 3 reports that each
    # attributed enough flows (6) to the primary alone, and no route flip.  A report
    # whose MSEE hop answered fewer flows (the routers' ICMP rate limits) says nothing.
    await asyncio.to_thread(lab_scenario, "er-active-active-link-down")
    conclusive = 0
    for _ in range(6):
        doc = await branch.cycle(pause_s=REFILL_S)
        assert circuit_links(doc, "ams-er-1") <= {"primary"}
        conclusive += flows(doc, "ams-er-1") >= MIN_FLOWS
        if await alerts(c, "ErpathCircuitRedundancyLost", "firing"):
            break
    assert conclusive == 3
    (lost,) = await alerts(c, "ErpathCircuitRedundancyLost", "firing")
    assert lost["labels"]["circuit"] == "ams-er-1" and lost["labels"]["site"] == "branch"
    assert "link still in use: primary" in lost["annotations"]["evidence"]
    assert await alerts(c, "ErpathRouteFlip") == []

    # Restored: one report that sees both links resolves it.
    await asyncio.to_thread(lab_scenario, "er-active-active")
    await branch.cycle(pause_s=REFILL_S)
    assert await alerts(c, "ErpathCircuitRedundancyLost", "firing") == []

    # An MSEE dropping half its time-exceeded: the circuit stays named, nothing flips.
    await asyncio.to_thread(lab_scenario, "er-flaky-msee")
    for _ in range(10):
        await branch.cycle()
    assert await alerts(c, "ErpathRouteFlip") == []
    events = (await c.get(f"{API}/events", kind="route_flip"))["events"]
    assert events == []

    # Traffic on circuit 2 while circuit 1, first in the order, answers: unexpected.
    await asyncio.to_thread(lab_scenario, "failover-order")
    for _ in range(2):
        await branch.cycle()
    unexpected = await alerts(c, "ErpathUnexpectedPath", "firing")
    assert unexpected, "traffic off the preferred circuit"
    for a in unexpected:
        assert a["labels"]["expected"] == "expressroute/ams-er-1"
        assert a["annotations"]["evidence"].startswith(
            "on dub-er-2 while ams-er-1 is preferred and its links answer"
        )
