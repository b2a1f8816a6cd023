"""Clock skew between agents and the collector (minutes, both ways).

The collector never trusts an agent's clock: reports are ordered by the
agent's `seq` and staleness is judged by the collector's receive time.  Here
the collector runs on a fake clock and agents stamp `started_at` up to ten
minutes off it, in both directions, and even step their clocks backwards.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from collector.app import create_app, evaluate_now
from tests.collector.conftest import Collector, make_config
from tests.collector.reports import er, inet, simple

T0 = 1_800_000_000.0
INTERVAL_S = 30.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def stamped(doc: dict, agent_clock_s: float) -> dict:
    doc["started_at"] = (
        datetime.fromtimestamp(agent_clock_s, UTC).isoformat().replace("+00:00", "Z")
    )
    return doc


@pytest.fixture
async def skewed(aiohttp_client, tmp_path):
    clock = FakeClock()
    # Evaluation is driven by hand (evaluate_now) at chosen fake times.
    cfg = make_config(
        tmp_path, detection={"evaluate_interval_s": 3600.0, "silent_after_intervals": 3.0}
    )
    registry = CollectorRegistry()
    client = await aiohttp_client(create_app(cfg, registry=registry, clock=clock))
    return Collector(client, registry), clock


async def events(c: Collector, kind: str) -> list[dict]:
    return (await c.get("/api/v1/events", kind=kind))["events"]


@pytest.mark.parametrize("skew_s", [-600.0, -90.0, 90.0, 600.0])
async def test_skewed_agents_are_accepted_applied_in_seq_order_and_never_falsely_silent(
    skewed, skew_s
):
    c, clock = skewed
    agent = "br-skew"
    for seq in range(1, 11):
        resp = await c.post(
            stamped(simple(agent, seq, er(), interval_s=INTERVAL_S), clock.now + skew_s)
        )
        body = await resp.json()
        assert resp.status == 201 and body["applied"], body
        clock.now += INTERVAL_S
        await evaluate_now(c.app)
    (a,) = (await c.get("/api/v1/agents"))["agents"]
    assert a["last_seq"] == 10 and not a["silent"]
    # last_seen is the collector's receive time of seq 10, whatever the agent's clock said.
    assert a["last_seen_s"] == pytest.approx(T0 + 9 * INTERVAL_S)
    assert not await events(c, "agent_silent") and not await events(c, "route_flip")
    # Silence is judged on the collector's clock: 3 intervals after the last receive, not before.
    clock.now = a["last_seen_s"] + 3 * INTERVAL_S - 1
    await evaluate_now(c.app)
    assert not (await c.get("/api/v1/agents"))["agents"][0]["silent"]
    clock.now += 2
    await evaluate_now(c.app)
    assert (await c.get("/api/v1/agents"))["agents"][0]["silent"]
    assert len(await events(c, "agent_silent")) == 1


async def test_an_agent_clock_stepping_back_changes_nothing_and_seq_decides(skewed):
    """NTP steps the agent's clock back 10 minutes mid-stream, then a spooled old report arrives."""
    c, clock = skewed
    agent = "br-step"
    agent_clock = [clock.now + 300, clock.now + 330, clock.now - 300, clock.now - 270]
    for seq, at in enumerate(agent_clock, start=1):
        resp = await c.post(stamped(simple(agent, seq, er()), at))
        assert resp.status == 201 and (await resp.json())["applied"]
        clock.now += INTERVAL_S
    # A late report (lower seq) claiming the newest time and another path: history only.
    late = stamped(simple(agent, 0, inet()), clock.now + 3600)
    resp = await c.post(late)
    assert resp.status == 201 and not (await resp.json())["applied"]
    (p,) = (await c.get("/api/v1/paths", agent=agent))["paths"]
    assert p["path"] == "expressroute/ams-1" and p["last_seq"] == 4 and p["pending"] is None
    assert p["flips_total"] == 0 and not await events(c, "route_flip")
    assert not await events(c, "path_deviation")


async def test_two_agents_one_fast_one_slow_are_judged_alike(skewed):
    c, clock = skewed
    for seq in range(1, 4):
        for agent, skew in (("br-fast", 600.0), ("br-slow", -600.0)):
            assert (await c.post(stamped(simple(agent, seq, er()), clock.now + skew))).status == 201
        clock.now += INTERVAL_S
    clock.now += 3 * INTERVAL_S  # both silent now, on the collector's clock
    await evaluate_now(c.app)
    agents = {a["agent"]: a["silent"] for a in (await c.get("/api/v1/agents"))["agents"]}
    assert agents == {"br-fast": True, "br-slow": True}
    # One report each brings both back, whatever their clocks say.
    for agent, skew in (("br-fast", 600.0), ("br-slow", -600.0)):
        assert (await c.post(stamped(simple(agent, 4, er()), clock.now + skew))).status == 201
    agents = {a["agent"]: a["silent"] for a in (await c.get("/api/v1/agents"))["agents"]}
    assert agents == {"br-fast": False, "br-slow": False}
    assert len(await events(c, "agent_recovered")) == 2
