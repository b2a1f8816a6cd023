"""A path per (agent, target, family) (issue 15, collector): a dual-stack target's IPv4 and
IPv6 paths flip, alert, expire, pair and export on their own; IPv4 paths and their alerts
come through the upgrade unchanged."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.report import report_from_dict, to_dict
from collector import alertrules, evaluate, ingest, queries, state
from collector.app import create_app, evaluate_now
from collector.keys import STORE
from collector.state import PathKey, SitePath
from collector.store import MIGRATIONS, SCHEMA_VERSION

from .conftest import API, Collector, make_config
from .reports import SITE_FACTS, er, inet, report, result, simple
from .test_alert_replay import receiver
from .waiting import eventually

T = "api.powerapps.com"
V6 = "2001:db8:18::10"
LABELS = {"agent": "br-1", "site": "ams", "target": T}


def v6(path: dict[str, Any], *, family: bool = True, **kw: Any) -> dict[str, Any]:
    """An IPv6 result for T; without `family` as an older agent wrote it (the collector
    derives the family from the address)."""
    out = result(T, path, address=V6, **kw)
    out["dns"]["addresses"] = [V6]
    for i, hop in enumerate(out["trace"]["hops"]):
        hop["replies"][0]["address"] = f"2001:db8:{i}::1"
    if family:
        out["family"] = "ipv6"
    return out


def v4(path: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {**result(T, path, **kw), "family": "ipv4"}


async def test_a_dual_stack_target_has_a_path_per_family(start_collector):
    c = await start_collector()
    resp = await c.post(report("br-1", 1, [v4(er()), v6(inet())]))
    assert resp.status == 201, await resp.text()
    paths = (await c.get(f"{API}/paths"))["paths"]
    assert [(p["target"], p["family"], p["path"]) for p in paths] == [
        (T, 4, "expressroute/ams-1"),
        (T, 6, "internet/ams-inet"),
    ]
    assert paths[1]["address"] == V6
    get = c.registry.get_sample_value
    for family, cls in (("4", "expressroute"), ("6", "internet")):
        assert get("erpath_trace_hops", {**LABELS, "family": family}) == 3
        assert (
            get("erpath_tcp_connect_seconds", {**LABELS, "family": family, "class": cls}) == 0.012
        )
    # A page ends between the two families of one target and the next page goes on.
    first = await c.get(f"{API}/paths", limit=1)
    second = await c.get(f"{API}/paths", limit=1, cursor=first["next_cursor"])
    assert [p["family"] for p in first["paths"] + second["paths"]] == [4, 6]
    bad = await c.client.get(f"{API}/paths", params={"cursor": "WyJhIiwiYiIsIjUiXQ"})
    assert bad.status == 400  # ["a", "b", "5"]: no family 5


async def test_per_site_aggregates_keep_the_family(start_collector):
    c = await start_collector(metrics={"per_site_aggregates": True})
    await c.post(report("br-1", 1, [v4(er()), v6(inet())]))
    await c.post(report("br-2", 1, [v4(er()), v6(er())]))
    get = c.registry.get_sample_value
    info = {"site": "ams", "target": T, "link": "", "egress": "ams-inet"}
    v6_inet = {**info, "family": "6", "class": "internet", "circuit": ""}
    assert get("erpath_path_info", v6_inet) == 1
    v4_er = {**info, "family": "4", "class": "expressroute", "circuit": "ams-1"}
    assert get("erpath_path_info", {**v4_er, "link": "primary", "egress": ""}) == 2


async def test_an_ipv6_flip_alerts_on_its_own_and_names_the_family(start_collector):
    c = await start_collector()
    seq = 0

    async def cycle(p4: dict[str, Any], p6: dict[str, Any]) -> None:
        nonlocal seq
        seq += 1
        resp = await c.post(report("br-1", seq, [v4(p4), v6(p6, family=False)]))
        assert resp.status == 201, await resp.text()

    await cycle(er(), er())
    await cycle(er(), inet())
    await cycle(er(), inet())  # confirmed (confirm_reports = 2): the IPv6 path flipped
    (flip,) = (await c.get(f"{API}/alerts", state="firing"))["alerts"]
    assert flip["labels"] == {
        "alertname": "ErpathRouteFlip",
        **LABELS,
        "family": "6",
        "from": "expressroute/ams-1",
        "to": "internet/ams-inet",
        "severity": "critical",
    }
    assert f"reaches {T} (IPv6) over internet/ams-inet" in flip["annotations"]["summary"]
    assert flip["annotations"]["evidence"].startswith("family: IPv6\n")
    assert flip["annotations"]["dashboard_url"].endswith(
        "&var-family=6"
    )  # the dashboards' variable
    (ev,) = (await c.get(f"{API}/events", kind="route_flip"))["events"]
    assert f"{T} (IPv6): path flipped" in ev["summary"]
    get = c.registry.get_sample_value
    assert get("erpath_route_flips_total", {**LABELS, "family": "6"}) == 1
    assert get("erpath_route_flips_total", {**LABELS, "family": "4"}) == 0

    # The IPv4 path flips too: its alert has the labels IPv4 flips always had.
    await cycle(inet(), inet())
    await cycle(inet(), inet())
    firing = (await c.get(f"{API}/alerts", state="firing"))["alerts"]
    assert sorted(a["labels"].get("family", "-") for a in firing) == ["-", "6"]
    (v4_flip,) = [a for a in firing if "family" not in a["labels"]]
    assert set(v4_flip["labels"]) == {"alertname", "site", "agent", "target", "from", "to"} | {
        "severity"
    }
    assert v4_flip["annotations"]["evidence"].startswith("family: IPv4\n")

    # IPv6 comes back: only its own flip resolves.
    await cycle(inet(), er())
    await cycle(inet(), er())
    (still,) = (await c.get(f"{API}/alerts", state="firing"))["alerts"]
    assert "family" not in still["labels"] and still["labels"]["to"] == "internet/ams-inet"


async def test_unexpected_path_alerts_are_per_family(start_collector):
    c = await start_collector()
    doc = report(
        "br-1", 1, [v4(er(), expected="expressroute"), v6(inet(), expected="expressroute")]
    )
    await c.post(doc)
    (alert,) = (await c.get(f"{API}/alerts", state="firing"))["alerts"]
    assert alert["labels"]["alertname"] == "ErpathUnexpectedPath"
    assert alert["labels"]["family"] == "6"
    assert "family: IPv6" in alert["annotations"]["evidence"]
    # The IPv4 path matching its expectation leaves the IPv6 alert firing.
    await c.post(report("br-1", 2, [v4(er(), expected="expressroute")]))
    assert len((await c.get(f"{API}/alerts", state="firing"))["alerts"]) == 1
    for seq in (3, 4):  # a flip back takes confirm_reports reports
        both = [v4(er(), expected="expressroute"), v6(er(), expected="expressroute")]
        await c.post(report("br-1", seq, both))
    firing = (await c.get(f"{API}/alerts", state="firing"))["alerts"]
    assert [(a["alertname"], a["labels"]["family"]) for a in firing] == [("ErpathRouteFlip", "6")]


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_an_ipv6_path_no_longer_measured_expires_alone(aiohttp_client, tmp_path):
    """Users of the target moved to IPv4 (ipv6-blackhole, or the agent's [probe] addresses):
    the IPv6 path and its alert go, the IPv4 path stays."""
    clock = FakeClock()
    cfg = make_config(
        tmp_path, detection={"evaluate_interval_s": 3600.0}, store={"path_expiry_intervals": 2.0}
    )
    c = Collector(await aiohttp_client(create_app(cfg, clock=clock)), CollectorRegistry())
    await c.post(report("br-1", 1, [v4(er()), v6(inet(), expected="expressroute")]))
    assert len((await c.get(f"{API}/alerts", state="firing"))["alerts"]) == 1
    for seq in range(2, 5):
        clock.now += 30.0
        await c.post(report("br-1", seq, [v4(er())]))
    out = await evaluate_now(c.app)
    assert out.paths_expired == 1
    assert [(p["family"], p["path"]) for p in (await c.get(f"{API}/paths"))["paths"]] == [
        (4, "expressroute/ams-1")
    ]
    assert (await c.get(f"{API}/alerts", state="firing"))["alerts"] == []
    (ev,) = (await c.get(f"{API}/events", kind="path_expired"))["events"]
    assert f"{T} (IPv6) not reported" in ev["summary"]


async def test_traces_are_kept_per_family(start_collector):
    c = await start_collector()
    await c.post(report("br-1", 1, [v4(er()), v6(inet())]))
    traces = await c.app[STORE].read(queries.traces, "br-1", T)
    assert [(t["family"], t["results"][0]["address"]) for t in traces] == [
        (4, "198.18.1.10"),
        (6, V6),
    ]


def test_ipv4_layouts_are_the_ones_stored_before_paths_had_a_family():
    doc = report_from_dict(simple("br-1", 1, er()))
    (obs,) = state.observations(doc)
    layout, _, times = ingest.encode((obs,))
    assert len(json.loads(layout)[0]) == 9  # the row of the pre-issue-15 layout
    (six,) = state.observations(report_from_dict(report("br-1", 1, [v6(inet())])))
    layout6, _, times6 = ingest.encode((obs, six))
    assert [r["family"] for r in ingest.decode(layout6, times6)] == [4, 6]
    assert ingest.decode(layout, times)[0]["family"] == 4


# --------------------------------------------------------------------------- asymmetry

V6_FACTS = {
    **SITE_FACTS,
    "circuits": [
        {
            **SITE_FACTS["circuits"][0],
            "primary_subnet_v6": "2001:db8:ff::/126",
            "secondary_subnet_v6": "2001:db8:ff::4/126",
            # The site's IPv6 prefix is advertised over the circuit as well as leaving
            # through the internet edge un-NATed: replies to it come back over ExpressRoute.
            "advertised_prefixes": ["198.51.100.0/28", "2001:db8:a::/48"],
        }
    ],
    "internet_edges": [
        {**SITE_FACTS["internet_edges"][0], "source_prefixes_v6": ["2001:db8:a::/48"]}
    ],
}
ER = PathKey("expressroute", "ams-1")
NET = PathKey("internet", None, "ams-inet")


def _v6_site() -> dict[str, Any]:
    return {"ams": report_from_dict(report("x", 1, [], facts=V6_FACTS)).site}


def test_the_stored_facts_keep_both_families():
    facts = evaluate.site_facts(to_dict(_v6_site()["ams"]))
    assert [s for _, s in facts.circuits[0].link_subnets()] == [
        "203.0.113.0/30",
        "203.0.113.4/30",
        "2001:db8:ff::/126",
        "2001:db8:ff::4/126",
    ]
    assert facts.internet_edges[0].source_prefixes_v6 == ("2001:db8:a::/48",)


def test_an_ipv6_reverse_trace_pairs_with_the_sites_ipv6_forward_paths_only():
    source = "2001:db8:a::5"  # a branch host's un-NATed source, from the edge's prefix
    fwd6 = SitePath("br-1", "ams", T, NET, V6, ("egress via ams-inet",), 6)
    fwd4 = SitePath("br-2", "ams", T, NET, "198.18.1.10", ("egress via ams-inet",), 4)
    rev = SitePath("az-1", "azure-weu", source, ER, source, ("hop 2 is MSEE of ams-1",), 6)
    (a,) = state.measured_asymmetries(_v6_site(), [rev], {"ams": [fwd4, fwd6]})
    assert (a.agent, a.circuit, a.family) == ("br-1", "ams-1", 6)
    assert a.evidence[0].startswith(f"forward br-1 -> {T} (IPv6): internet via ams-inet")
    spec = alertrules.path_asymmetric("ams", "ams-1", [a], alertrules.Links("http://r", "http://d"))
    assert f"br-1->{T} (IPv6)" in spec.annotations["description"]
    assert "family" not in spec.labels  # one asymmetry alert per site and circuit, as before


def test_an_ipv4_reverse_trace_does_not_pair_with_ipv6_forward_paths():
    site = _v6_site()["ams"]
    circuit = replace(site.circuits[0], advertised_prefixes=("192.0.2.0/28",))
    facts = {"ams": replace(site, circuits=(circuit,))}
    fwd6 = SitePath("br-1", "ams", T, NET, V6, (), 6)
    rev = SitePath("az-1", "azure-weu", "192.0.2.10", ER, "192.0.2.10", (), 4)
    assert state.measured_asymmetries(facts, [rev], {"ams": [fwd6]}) == []
    fwd4 = SitePath("br-1", "ams", T, NET, "198.18.1.10", (), 4)
    assert len(state.measured_asymmetries(facts, [rev], {"ams": [fwd4, fwd6]})) == 1


async def test_a_reported_ipv6_finding_names_its_family(start_collector):
    c = await start_collector()
    finding = {
        "kind": "asymmetric-nat",
        "severity": "critical",
        "circuit": "ams-1",
        "evidence": [
            {
                "kind": "advertised",
                "text": "source 2001:db8:a::5 lies in 2001:db8:a::/48 advertised over ams-1",
                "circuit": "ams-1",
                "prefix": "2001:db8:a::/48",
                "address": "2001:db8:a::5",
            }
        ],
    }
    await c.post(report("br-1", 1, [v4(er()), v6(inet(), findings=[finding])], facts=V6_FACTS))
    await evaluate_now(c.app)
    (alert,) = (await c.get(f"{API}/alerts", state="firing"))["alerts"]
    assert alert["labels"]["alertname"] == "ErpathPathAsymmetric"
    assert f"br-1 -> {T} (IPv6): asymmetric-nat" in alert["annotations"]["evidence"]
    rows = await c.app[STORE].read(
        lambda conn: conn.execute("SELECT family FROM reported_asymmetries").fetchall()
    )
    assert rows == [(6,)]


# --------------------------------------------------------------------------- the upgrade


def _as_before_issue_15(path: Path) -> None:
    """The database as the collector before issue 15 left it: schema 5 (the shipped
    migrations 1 to 5, never edited), holding what the running collector stored, in the
    columns schema 5 has (no family anywhere; nothing of later migrations)."""
    old = path.with_name("schema5.db")
    conn = sqlite3.connect(old, isolation_level=None)
    for step in MIGRATIONS[:5]:
        if callable(step):
            step(conn)
        else:
            conn.executescript(step)
    conn.execute("PRAGMA user_version=5")
    conn.execute("ATTACH DATABASE ? AS cur", (str(path),))
    tables = [t for (t,) in conn.execute("SELECT name FROM main.sqlite_master WHERE type='table'")]
    for table in tables:
        mine = {r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")}
        cols = ", ".join(
            r[1] for r in conn.execute(f"PRAGMA cur.table_info({table})") if r[1] in mine
        )
        conn.execute(f"INSERT OR REPLACE INTO main.{table}({cols}) SELECT {cols} FROM cur.{table}")
    conn.execute("DETACH DATABASE cur")
    conn.close()
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    old.replace(path)


@pytest.mark.skipif(sqlite3.sqlite_version_info < (3, 35), reason="DROP COLUMN needs 3.35")
async def test_the_upgrade_neither_resolves_nor_refires_ipv4_alerts(
    start_collector, aiohttp_server, tmp_path
):
    assert SCHEMA_VERSION >= 6
    assert "paths_by_family" in MIGRATIONS[5]  # migration 6 is this issue's
    hook_app, heard = receiver()
    hook = await aiohttp_server(hook_app)
    cfg = make_config(tmp_path, alerts={"webhook_urls": [f"http://127.0.0.1:{hook.port}/hook"]})
    c = await start_collector(cfg)
    seq = 0
    for path in (er(), inet(), inet()):  # a route flip, firing
        seq += 1
        await c.post(simple("br-1", seq, path, expected="expressroute"))

    async def both_heard():
        return len(heard) >= 2

    await eventually(both_heard)
    before = {a["labels"]["alertname"]: a["labels"] for a in heard}
    # Exactly the labels the pre-issue-15 collector gave them: their fingerprints are its.
    assert before == {
        "ErpathRouteFlip": {
            "alertname": "ErpathRouteFlip",
            **LABELS,
            "from": "expressroute/ams-1",
            "to": "internet/ams-inet",
            "severity": "critical",
        },
        "ErpathUnexpectedPath": {
            "alertname": "ErpathUnexpectedPath",
            **LABELS,
            "expected": "expressroute",
            "severity": "warning",
        },
    }
    fingerprints = {alertrules.fingerprint(lab) for lab in before.values()}
    await c.client.close()
    _as_before_issue_15(tmp_path / "collector.db")
    heard.clear()

    # The new collector on that database: the migration, then the same path reported again.
    c2 = await start_collector(cfg)
    seq += 1
    resp = await c2.post(simple("br-1", seq, inet(), expected="expressroute"))
    assert resp.status == 201, await resp.text()
    (path,) = (await c2.get(f"{API}/paths"))["paths"]
    assert (path["family"], path["path"], path["flips_total"]) == (4, "internet/ams-inet", 1)
    # A control: a new alert (another agent's) reaches the webhook; nothing before it did.
    await c2.post(simple("br-2", 1, inet(), expected="expressroute"))

    async def control_heard():
        return any(a["labels"]["agent"] == "br-2" for a in heard)

    await eventually(control_heard)
    await evaluate_now(c2.app)
    assert [a["labels"]["agent"] for a in heard] == ["br-2"], heard
    firing = (await c2.get(f"{API}/alerts", state="firing"))["alerts"]
    mine = {a["fingerprint"] for a in firing if a["labels"]["agent"] == "br-1"}
    assert mine == fingerprints
    # And the IPv4 path goes on from its stored state: back on ExpressRoute resolves the flip.
    for _ in range(2):
        seq += 1
        await c2.post(simple("br-1", seq, er(), expected="expressroute"))

    async def resolution_heard():
        return any(a["status"] == "resolved" for a in heard)

    await eventually(resolution_heard)
    resolved = [a for a in heard if a["status"] == "resolved"]
    assert {alertrules.fingerprint(a["labels"]) for a in resolved} == fingerprints


async def test_an_ipv6_reverse_trace_to_the_sites_source_prefix_is_paired_by_the_collector(
    start_collector,
):
    """End to end: the branch leaves via the internet edge in both families (IPv6 un-NATed);
    an azure-side trace back to the branch's IPv6 source comes in over the circuit that
    advertises the site's IPv6 prefix."""
    c = await start_collector()
    await c.post(report("br-1", 1, [v4(inet()), v6(inet())], facts=V6_FACTS))
    source = "2001:db8:a::5"
    rev = {**result(source, er(), address=source, role="reverse"), "family": "ipv6"}
    rev["dns"]["addresses"] = [source]
    await c.post(report("az-1", 1, [rev], site="azure-weu", role="azure-side", facts={}))
    await evaluate_now(c.app)
    (alert,) = (await c.get(f"{API}/alerts", state="firing"))["alerts"]
    assert alert["labels"]["alertname"] == "ErpathPathAsymmetric"
    assert alert["labels"]["circuit"] == "ams-1"
    ev = alert["annotations"]["evidence"]
    assert f"forward br-1 -> {T} (IPv6): internet via ams-inet" in ev
    assert "reverse az-1 -> 2001:db8:a::5 (IPv6): expressroute/ams-1" in ev
    # The IPv4 path leaves by the same edge, but from the NAT pool: the trace says nothing of it.
    assert ev.count("forward ") == 1
