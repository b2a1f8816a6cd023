"""/metrics: the exposition is valid (promtool), bounded, and a real Prometheus can query it."""

from __future__ import annotations

import asyncio
import subprocess

import aiohttp
import pytest

from collector.app import evaluate_now

from .realparts import Prometheus, binary
from .reports import er, inet, report, result, simple
from .waiting import eventually

T = "api.powerapps.com"


async def _fleet(c) -> None:
    for agent in ("br-1", "br-2"):
        for seq, path in enumerate([er(), inet(), inet()], start=1):
            await c.post(simple(agent, seq, path, expected="expressroute"))
    await c.post(
        report(
            "az-1",
            1,
            [result("192.0.2.10", er(), role="reverse", address="192.0.2.10")],
            site="azure-weu",
            role="azure-side",
            facts={},
        )
    )
    await evaluate_now(c.app)  # pairs the reverse path: internet out, ExpressRoute back


async def test_exposition_passes_promtool_and_has_every_metric(start_collector):
    c = await start_collector()
    await _fleet(c)
    resp = await c.client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith(
        "text/plain; version=0.0.4"
    )
    text = await resp.text()
    for name in (
        "erpath_path_info",
        "erpath_path_expected",
        "erpath_tcp_connect_seconds",
        "erpath_tcp_state",
        "erpath_dns_resolve_seconds",
        "erpath_trace_hops",
        "erpath_route_flips_total",
        "erpath_path_asymmetric",
        "erpath_circuit_links_seen",
        "erpath_circuit_redundancy_lost",
        "erpath_agent_last_report_timestamp_seconds",
        "erpath_agent_cycle_seconds",
        "erpath_agent_spool_reports",
        "erpath_agent_dropped_reports_total",
        "erpath_reports_received_total",
        "erpath_ingest_seconds_bucket",
        "erpath_alert_deliveries_total",
    ):
        assert f"# TYPE {name.removesuffix('_bucket')}" in text or f"\n{name}" in text, name
    assert (
        'erpath_path_info{agent="br-1",circuit="",class="internet",egress="ams-inet",family="4",'
        'link="",site="ams",target="api.powerapps.com"} 1.0'
    ) in text
    assert (
        'erpath_tcp_state{agent="br-1",family="4",site="ams",state="open",'
        'target="api.powerapps.com"} 1.0' in text
    )
    assert "10.0.1.1" not in text  # hop addresses never become labels
    get = c.registry.get_sample_value
    assert (
        get("erpath_path_expected", {"agent": "br-1", "site": "ams", "target": T, "family": "4"})
        == 0
    )
    assert (
        get(
            "erpath_tcp_connect_seconds",
            {"agent": "br-1", "site": "ams", "target": T, "family": "4", "class": "internet"},
        )
        == 0.012
    )
    assert (
        get("erpath_trace_hops", {"agent": "br-1", "site": "ams", "target": T, "family": "4"}) == 3
    )
    assert get("erpath_agent_cycle_seconds", {"agent": "br-1", "site": "ams"}) == 2.5
    assert get("erpath_reports_received_total", {"result": "accepted"}) == 7
    promtool = binary("promtool")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


@pytest.mark.parametrize("per_site", [False, True])
async def test_circuit_links_are_the_flows_of_the_sites_latest_reports(start_collector, per_site):
    """Per site, circuit and link in both exports; every circuit of the facts."""
    c = await start_collector(metrics={"per_site_aggregates": per_site})
    await c.post(simple("br-1", 1, er(links_seen={"primary": 4, "secondary": 2})))
    await c.post(simple("br-2", 1, er(links_seen={"primary": 1})))
    await c.post(simple("br-2", 2, er(links_seen={"secondary": 3})))  # replaces br-2's first
    get = c.registry.get_sample_value

    def seen(link: str) -> float | None:
        return get("erpath_circuit_links_seen", {"site": "ams", "circuit": "ams-1", "link": link})

    assert (seen("primary"), seen("secondary")) == (4, 5), per_site
    assert get("erpath_circuit_redundancy_lost", {"site": "ams", "circuit": "ams-1"}) == 0
    # An agent that left the circuit no longer counts.
    await c.post(simple("br-1", 2, inet()))
    assert (seen("primary"), seen("secondary")) == (0, 3)


async def test_per_site_aggregates_drop_the_agent_label(start_collector):
    c = await start_collector(metrics={"per_site_aggregates": True})
    await _fleet(c)
    text = await (await c.client.get("/metrics")).text()
    assert "agent=" not in text
    get = c.registry.get_sample_value
    assert (
        get(
            "erpath_path_info",
            {
                "site": "ams",
                "target": T,
                "family": "4",
                "class": "internet",
                "circuit": "",
                "link": "",
                "egress": "ams-inet",
            },
        )
        == 2
    )
    assert get("erpath_route_flips_total", {"site": "ams", "target": T, "family": "4"}) == 2
    assert get("erpath_agent_last_report_timestamp_seconds", {"site": "ams", "role": "branch"}) > 0
    check = subprocess.run(
        [binary("promtool"), "check", "metrics"], input=text.encode(), capture_output=True
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


async def test_real_prometheus_scrapes_and_queries_the_series(start_collector, tmp_path):
    c = await start_collector()
    await _fleet(c)
    prom = Prometheus(tmp_path / "prom", f"127.0.0.1:{c.client.server.port}")
    await asyncio.to_thread(prom.start)
    try:
        async with aiohttp.ClientSession() as session:

            async def query(q: str):
                async with session.get(f"{prom.url}/api/v1/query", params={"query": q}) as resp:
                    body = await resp.json()
                    assert body["status"] == "success", body
                    return body["data"]["result"]

            rows = await eventually(lambda: query('erpath_path_info{site="ams"}'), 20)
            assert {r["metric"]["agent"] for r in rows} == {"br-1", "br-2"}
            assert {r["metric"]["class"] for r in rows} == {"internet"}
            flips = await query("sum(erpath_route_flips_total)")
            assert float(flips[0]["value"][1]) == 2
            up = await query('up{job="erpath-collector"}')
            assert up[0]["value"][1] == "1"
            assert await query("erpath_ingest_seconds_count")
    finally:
        await asyncio.to_thread(prom.stop)


async def test_fast_render_equals_prometheus_client(start_collector):
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from collector.keys import REGISTRY, STORE_COLLECTOR
    from collector.metrics import render

    c = await start_collector()
    await _fleet(c)
    await c.post(simple("br-3", 1, er(), target='odd"name\\with\nescapes'))
    registry, collector = c.app[REGISTRY], c.app[STORE_COLLECTOR]
    fast = await asyncio.to_thread(render, registry, collector)
    slow = await asyncio.to_thread(generate_latest, registry)

    def parsed(text: bytes):
        return [
            (
                f.name,
                f.type,
                f.documentation,
                sorted(
                    (s.name, sorted(s.labels.items()), s.value)
                    for s in f.samples
                    if not s.name.endswith("_created")
                ),
            )
            for f in text_string_to_metric_families(text.decode())
        ]

    assert parsed(fast) == parsed(slow)
