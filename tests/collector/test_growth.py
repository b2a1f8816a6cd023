"""Growth with bounds (issue 14 item 2): the per-agent target cap, expiring paths, unused
layouts, and forgetting a decommissioned agent."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from collector import queries, retention
from collector.app import create_app, evaluate_now, prune_now
from collector.cli import main
from collector.keys import STORE

from .conftest import API, Collector, make_config
from .reports import er, inet, report, result, simple

INTERVAL_S = 30.0


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def clocked(aiohttp_client, tmp_path):
    async def start(**sections):
        clock = FakeClock()
        # Evaluation is driven by hand (evaluate_now) at chosen fake times.
        cfg = make_config(tmp_path, detection={"evaluate_interval_s": 3600.0}, **sections)
        registry = CollectorRegistry()
        client = await aiohttp_client(create_app(cfg, registry=registry, clock=clock))
        return Collector(client, registry), clock

    return start


async def count(c: Collector, sql: str) -> int:
    return await c.app[STORE].read(lambda conn: conn.execute(sql).fetchone()[0])


async def test_ten_thousand_target_names_from_one_agent_stay_capped(clocked):
    # The default cap (2,048 paths per agent); the rate limit is not what this is about.
    c, clock = await clocked(ingest={"rate_per_agent_per_s": 1e6, "burst_per_agent": 1_000_000})
    names = [f"t{i:05d}.example.net" for i in range(10_000)]
    per_report = 250  # a report carries at most 256 results
    for seq, first in enumerate(range(0, len(names), per_report), start=1):
        doc = report("br-1", seq, [result(n, er()) for n in names[first : first + per_report]])
        resp = await c.post(doc)
        assert resp.status == 201, await resp.text()
        clock.now += 1.0
    assert await count(c, "SELECT count(*) FROM paths") == 2048
    (a,) = (await c.get(f"{API}/agents"))["agents"]
    assert a["targets_refused"] == per_report  # the last report's every target
    assert (
        c.registry.get_sample_value(
            "erpath_agent_targets_refused", {"agent": "br-1", "site": "ams"}
        )
        == per_report
    )
    infos = [s for m in c.registry.collect() if m.name == "erpath_path_info" for s in m.samples]
    assert len(infos) == 2048
    (ev,) = (await c.get(f"{API}/events", kind="targets_refused"))["events"]
    assert "max_targets_per_agent" in ev["summary"] and ev["agent"] == "br-1"


async def test_known_targets_are_kept_when_the_cap_is_reached(clocked):
    c, _ = await clocked(ingest={"max_targets_per_agent": 2})
    await c.post(report("br-1", 1, [result("a", er()), result("b", er())]))
    resp = await c.post(report("br-1", 2, [result("c", er()), result("b", inet())]))
    assert resp.status == 201
    paths = (await c.get(f"{API}/paths"))["paths"]
    assert sorted(p["target"] for p in paths) == ["a", "b"]


async def test_a_removed_target_expires_and_its_alerts_resolve(clocked):
    c, clock = await clocked(store={"path_expiry_intervals": 5.0})
    gone, kept = "old.example.net", "api.powerapps.com"
    seq = 0
    for _ in range(2):
        seq += 1
        await c.post(
            report(
                "br-1",
                seq,
                [result(gone, inet(), expected="expressroute"), result(kept, er())],
            )
        )
        clock.now += INTERVAL_S
    firing = (await c.get(f"{API}/alerts", state="firing"))["alerts"]
    assert [a["alertname"] for a in firing] == ["ErpathUnexpectedPath"]
    # The target leaves the agent's config: its path stays while it is young …
    for _ in range(4):
        seq += 1
        await c.post(simple("br-1", seq, er(), target=kept))
        clock.now += INTERVAL_S
    assert (await evaluate_now(c.app)).paths_expired == 0
    # … and expires once the agent reported without it for 5 intervals.
    seq += 1
    clock.now += INTERVAL_S
    await c.post(simple("br-1", seq, er(), target=kept))
    out = await evaluate_now(c.app)
    assert out.paths_expired == 1 and out.alerts_changed
    assert [p["target"] for p in (await c.get(f"{API}/paths"))["paths"]] == [kept]
    assert (await c.get(f"{API}/alerts", state="firing"))["alerts"] == []
    assert (
        c.registry.get_sample_value(
            "erpath_path_expected", {"agent": "br-1", "site": "ams", "target": gone, "family": "4"}
        )
        is None
    )
    (ev,) = (await c.get(f"{API}/events", kind="path_expired"))["events"]
    assert ev["target"] == gone


async def test_a_silent_agents_paths_do_not_expire(clocked):
    c, clock = await clocked(store={"path_expiry_intervals": 2.0})
    await c.post(simple("br-1", 1, er()))
    clock.now += 100 * INTERVAL_S
    out = await evaluate_now(c.app)
    assert out.silent == 1 and out.paths_expired == 0
    assert await count(c, "SELECT count(*) FROM paths") == 1


async def test_unused_layouts_and_sites_without_agents_are_pruned(clocked, tmp_path):
    c, clock = await clocked()
    for seq in range(1, 4):  # three layouts: the path class changes twice
        await c.post(simple("br-1", seq, er() if seq % 2 else inet(), target=f"t{seq}"))
    assert await count(c, "SELECT count(*) FROM layouts") == 3
    await prune_now(c.app)
    assert await count(c, "SELECT count(*) FROM layouts") == 3  # all in use
    # 15 days later a new report: every old observation is past retention.
    clock.now += 15 * retention.DAY_S
    await c.post(simple("br-1", 4, er(), target="t1"))
    pruned = await prune_now(c.app)
    assert pruned.observations == 3 and pruned.layouts == 2
    assert await count(c, "SELECT count(*) FROM layouts") == 1
    # The remaining layout is still found (the ingest's cache was dropped with the rows).
    await c.post(simple("br-1", 5, er(), target="t1"))
    await c.post(simple("br-1", 6, inet(), target="t9"))
    assert await count(c, "SELECT count(*) FROM layouts") == 2
    rows = await c.app[STORE].read(queries.observations, "br-1")
    assert [r["targets"][0]["target"] for r in rows] == ["t9", "t1", "t1"]


async def test_a_forgotten_agent_vanishes_and_its_alerts_resolve(clocked, tmp_path, capsys):
    c, clock = await clocked()
    await c.post(simple("br-1", 1, inet(), expected="expressroute"))
    await c.post(simple("br-2", 1, er()))
    clock.now += 10 * INTERVAL_S
    await evaluate_now(c.app)
    assert (
        c.registry.get_sample_value(
            "erpath_agent_silent", {"agent": "br-1", "site": "ams", "role": "branch"}
        )
        == 1
    )
    assert len((await c.get(f"{API}/alerts", state="firing"))["alerts"]) == 1

    # The command works beside the running collector (its own connection).
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "collector.db"}"\n')
    assert main(["agent", "forget", "br-1", "--config", str(config)]) == 0
    out = capsys.readouterr()
    assert "forgot agent br-1 (site ams): 1 path(s)" in out.out and "1 alert(s)" in out.out
    assert "token revoke br-1" in out.err

    assert [a["agent"] for a in (await c.get(f"{API}/agents"))["agents"]] == ["br-2"]
    assert [p["agent"] for p in (await c.get(f"{API}/paths"))["paths"]] == ["br-2"]
    assert (await c.get(f"{API}/alerts", state="firing"))["alerts"] == []
    names = {s.labels.get("agent") for m in c.registry.collect() for s in m.samples}
    assert "br-1" not in names and "br-2" in names
    assert (
        await count(
            c, "SELECT count(*) FROM observations WHERE agent_ref NOT IN (SELECT ref FROM agents)"
        )
        == 0
    )
    (ev,) = (await c.get(f"{API}/events", kind="agent_forgotten"))["events"]
    assert ev["agent"] == "br-1"

    assert main(["agent", "forget", "br-1", "--config", str(config)]) == 1
    assert "no agent 'br-1'" in capsys.readouterr().err


async def test_forgetting_the_last_agent_of_a_site_forgets_the_site(clocked, tmp_path):
    c, _ = await clocked()
    await c.post(simple("br-1", 1, er()))
    assert (
        c.registry.get_sample_value(
            "erpath_circuit_redundancy_lost", {"site": "ams", "circuit": "ams-1"}
        )
        is not None
    )
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "collector.db"}"\n')
    assert main(["agent", "forget", "br-1", "--config", str(config)]) == 0
    assert await count(c, "SELECT count(*) FROM sites") == 0
    assert (
        c.registry.get_sample_value(
            "erpath_circuit_redundancy_lost", {"site": "ams", "circuit": "ams-1"}
        )
        is None
    )
