"""Real ExpressRoute designs through the API: active-active links, silent MSEEs, circuit
redundancy, the failover order, severities that follow the findings."""

from __future__ import annotations

import copy

from .conftest import API
from .reports import SITE_FACTS, er, finding, inet, report, result, simple, unknown
from .test_detection import alerts
from .waiting import eventually

T = "api.powerapps.com"
REDUNDANCY = "ErpathCircuitRedundancyLost"


def facts(links: str = "active-active", prefer: list[str] | None = None) -> dict:
    doc = copy.deepcopy(SITE_FACTS)
    doc["circuits"][0]["links"] = links
    doc["circuits"].append(
        {
            **copy.deepcopy(SITE_FACTS["circuits"][0]),
            "name": "dub-2",
            "primary_subnet": "203.0.113.8/30",
            "secondary_subnet": "203.0.113.12/30",
            "ce_addresses": ["203.0.113.9", "203.0.113.13"],
        }
    )
    if prefer is not None:
        doc["prefer"] = prefer
    return doc


def links_seen(c, circuit="ams-1"):
    return {
        link: c.registry.get_sample_value(
            "erpath_circuit_links_seen", {"site": "ams", "circuit": circuit, "link": link}
        )
        for link in ("primary", "secondary")
    }


async def test_active_active_hashing_is_never_a_flip_nor_an_alert(start_collector):
    """One flow's hash names primary, then secondary, then primary: the same path."""
    c = await start_collector()
    for seq, link in enumerate(["primary", "secondary", "secondary", "primary", "secondary"], 1):
        resp = await c.post(simple("br-1", seq, er(link=link), facts=facts()))
        assert (await resp.json())["flips"] == 0
    assert await alerts(c) == []
    assert (await c.get(f"{API}/events"))["events"] == []
    (path,) = (await c.get(f"{API}/paths"))["paths"]
    assert path["path"] == "expressroute/ams-1" and path["verdict"]["link"] == "secondary"


async def test_a_silent_msee_never_flips_the_path(start_collector):
    """The MSEE drops its time-exceeded: circuit and link unknown in some reports."""
    c = await start_collector()
    paths = [er(), er(None, None), er(None, None), unknown(), unknown(), er(), er(None, None)]
    for seq, path in enumerate(paths, 1):
        resp = await c.post(simple("br-1", seq, path))
        assert (await resp.json())["flips"] == 0
    assert await alerts(c) == []
    kinds = {e["kind"] for e in (await c.get(f"{API}/events"))["events"]}
    assert "route_flip" not in kinds and "path_deviation" not in kinds
    (path,) = (await c.get(f"{API}/paths"))["paths"]
    assert path["path"] == "expressroute/ams-1" and path["pending"] is None


async def test_one_link_for_three_reports_is_redundancy_lost_then_restored(start_collector):
    c = await start_collector()
    site = facts()
    # Healthy: two agents' flows land on both links.
    await c.post(simple("br-1", 1, er(links_seen={"primary": 4, "secondary": 2}), facts=site))
    await c.post(simple("br-2", 1, er(links_seen={"primary": 3, "secondary": 3}), facts=site))
    assert links_seen(c) == {"primary": 7.0, "secondary": 5.0}
    assert links_seen(c, "dub-2") == {"primary": 0.0, "secondary": 0.0}  # in the facts, unused
    # The secondary link goes down: every flow of every agent crosses the primary.
    seqs = {"br-1": 1, "br-2": 1}
    for n in range(3):
        for agent in ("br-1", "br-2"):
            seqs[agent] += 1
            await c.post(simple(agent, seqs[agent], er(links_seen={"primary": 6}), facts=site))
        # The site-wide union is single-link from br-2's first such report on: the
        # third report in a row (br-2's second) fires.
        assert bool(await alerts(c, REDUNDANCY, "firing")) == (n >= 1), n
    (alert,) = await alerts(c, REDUNDANCY, "firing")
    assert alert["labels"] == {
        "alertname": REDUNDANCY,
        "site": "ams",
        "circuit": "ams-1",
        "severity": "warning",
    }
    ev = alert["annotations"]["evidence"]
    assert "all 12 flow(s) of the site's latest reports crossed the primary link" in ev
    assert "link still in use: primary" in ev
    assert "br-1: primary 6 flow(s), secondary 0 flow(s)" in ev
    assert links_seen(c) == {"primary": 12.0, "secondary": 0.0}
    assert (
        c.registry.get_sample_value(
            "erpath_circuit_redundancy_lost", {"site": "ams", "circuit": "ams-1"}
        )
        == 1
    )
    # No route flip: the path is the circuit.
    assert await alerts(c, "ErpathRouteFlip") == []
    # The secondary is back: one report showing both links resolves it.
    seqs["br-1"] += 1
    await c.post(
        simple("br-1", seqs["br-1"], er(links_seen={"primary": 3, "secondary": 3}), facts=site)
    )
    assert await alerts(c, REDUNDANCY, "firing") == []
    kinds = [e["kind"] for e in (await c.get(f"{API}/events", site="ams"))["events"]]
    assert "redundancy_lost" in kinds and "redundancy_restored" in kinds


async def test_a_silent_agents_last_flows_do_not_hide_a_lost_link(start_collector):
    """br-1 saw both links, then fell silent; br-2 alone sees one link: lost."""
    c = await start_collector()
    site = facts()
    both = er(links_seen={"primary": 3, "secondary": 3})
    await c.post(simple("br-1", 1, both, facts=site, interval_s=0.2))
    await c.post(simple("br-2", 1, both, facts=site, interval_s=30))

    async def br1_silent():
        agents = (await c.get(f"{API}/agents"))["agents"]
        return next(a for a in agents if a["agent"] == "br-1")["silent"]

    await eventually(br1_silent, 5)
    for seq in (2, 3, 4):
        await c.post(simple("br-2", seq, er(links_seen={"primary": 6}), facts=site, interval_s=30))
    (alert,) = await alerts(c, REDUNDANCY, "firing")
    ev = alert["annotations"]["evidence"]
    assert "br-2: primary 6 flow(s), secondary 0 flow(s)" in ev
    assert "br-1" not in ev
    assert links_seen(c) == {"primary": 6.0, "secondary": 0.0}


async def test_all_flows_on_one_link_then_all_on_the_other_is_both_links_working(start_collector):
    c = await start_collector()
    links = ["primary", "secondary", "secondary", "primary", "primary", "secondary"]
    for seq, link in enumerate(links, 1):
        await c.post(simple("br-1", seq, er(link=link, links_seen={link: 6}), facts=facts()))
    assert await alerts(c, REDUNDANCY) == []


async def test_too_few_flows_or_silent_mssees_say_nothing_of_redundancy(start_collector):
    c = await start_collector()
    for seq in range(1, 6):
        # Five flows on one link: not enough to have seen a second link (MDA-lite: 6).
        await c.post(simple("br-1", seq, er(links_seen={"primary": 5}), facts=facts()))
    for seq in range(6, 10):
        # Six flows sent, the MSEE answered none: no link is known.
        await c.post(simple("br-1", seq, er(None, None, links_seen={}, msee_flows=6)))
    assert await alerts(c, REDUNDANCY) == []


async def test_active_standby_traffic_on_the_standby_link_is_redundancy_lost(start_collector):
    c = await start_collector(detection={"redundancy_lost_reports": 2})
    site = facts("active-standby")
    await c.post(simple("br-1", 1, er(links_seen={"primary": 1}), facts=site))
    assert await alerts(c, REDUNDANCY) == []  # the primary carries traffic, as designed
    for seq in (2, 3):
        await c.post(simple("br-1", seq, er("ams-1", "secondary"), facts=site))
    (alert,) = await alerts(c, REDUNDANCY, "firing")
    assert (
        "1 flow(s) on the standby secondary link and none on the primary"
        in (alert["annotations"]["evidence"])
    )
    await c.post(simple("br-1", 4, er(links_seen={"primary": 1}), facts=site))
    assert await alerts(c, REDUNDANCY, "firing") == []


def probes(circuit: str, answered: bool) -> list[dict]:
    base = {"ams-1": (2, 6), "dub-2": (10, 14)}[circuit]
    return [
        {
            "circuit": circuit,
            "link": link,
            "address": f"203.0.113.{n}",
            "answered": answered,
            "rtt_s": 0.002 if answered else None,
        }
        for link, n in zip(("primary", "secondary"), base, strict=True)
    ]


async def test_a_path_off_the_first_available_circuit_is_unexpected(start_collector):
    c = await start_collector()
    site = facts(prefer=["ams-1", "dub-2", "internet"])
    doc = simple("br-1", 1, er("dub-2"), facts=site)
    doc["msee_probes"] = probes("ams-1", True) + probes("dub-2", True)
    await c.post(doc)
    (alert,) = await alerts(c, "ErpathUnexpectedPath", "firing")
    assert alert["labels"]["expected"] == "expressroute/ams-1"
    ev = alert["annotations"]["evidence"]
    assert ev.startswith(
        "on dub-2 while ams-1 is preferred and its links answer "
        "(primary MSEE 203.0.113.2, secondary MSEE 203.0.113.6)"
    )
    assert "failover order: ams-1 > dub-2 > internet" in ev
    (path,) = (await c.get(f"{API}/paths"))["paths"]
    assert path["verdict"]["expected"] == "expressroute/ams-1"
    assert path["verdict"]["matches_expected"] is False

    # ams-1 stops answering: dub-2 is the first available one, as expected.
    doc = simple("br-1", 2, er("dub-2"), facts=site)
    doc["msee_probes"] = probes("ams-1", False) + probes("dub-2", True)
    await c.post(doc)
    assert await alerts(c, "ErpathUnexpectedPath", "firing") == []


async def test_another_agent_on_the_preferred_circuit_makes_it_available(start_collector):
    c = await start_collector()
    site = facts(prefer=["ams-1", "internet"])
    await c.post(simple("br-2", 1, er(), facts=site))  # no MSEE probes: another agent is on it
    await c.post(simple("br-1", 1, inet(), facts=site))
    (alert,) = await alerts(c, "ErpathUnexpectedPath", "firing")
    assert alert["labels"]["agent"] == "br-1"
    assert alert["annotations"]["evidence"].startswith(
        "on internet while ams-1 is preferred and agent br-2 of the site is on it"
    )
    # Nobody on it and no MSEE answers: the order falls through to the internet.
    await c.post(simple("br-2", 2, inet(), facts=site))
    await c.post(simple("br-2", 3, inet(), facts=site))
    await c.post(simple("br-1", 2, inet(), facts=site))
    assert await alerts(c, "ErpathUnexpectedPath", "firing") == []


async def test_a_targets_own_expectation_wins_over_the_order(start_collector):
    c = await start_collector()
    site = facts(prefer=["ams-1", "internet"])
    doc = simple("br-1", 1, inet(), facts=site, expected="internet")
    doc["msee_probes"] = probes("ams-1", True)
    await c.post(doc)
    assert await alerts(c, "ErpathUnexpectedPath") == []
    # A per-target order overrides the site's.
    doc = report(
        "br-2",
        1,
        [result(T, er(), prefer=["dub-2", "ams-1"])],
        facts=site,
        msee_probes=probes("dub-2", True),
    )
    await c.post(doc)
    (alert,) = await alerts(c, "ErpathUnexpectedPath", "firing")
    assert alert["labels"]["expected"] == "expressroute/dub-2"


async def test_asymmetry_alert_severity_follows_the_findings(start_collector):
    c = await start_collector()

    async def firing_severity(severity):
        rows = await alerts(c, "ErpathPathAsymmetric", "firing")
        return rows if [a["labels"]["severity"] for a in rows] == [severity] else None

    may = finding(severity="warning")
    await c.post(simple("br-1", 1, inet(), findings=[may]))
    await c.post(simple("br-2", 1, inet(), findings=[finding(predicted_only=True)]))
    (alert,) = await eventually(lambda: firing_severity("warning"))
    assert "(predicted from site facts, not observed)" in alert["annotations"]["evidence"]
    # One critical finding that the measurement did not contradict: critical.
    await c.post(simple("br-3", 1, inet(), findings=[finding()]))
    await eventually(lambda: firing_severity("critical"))
