"""ErpathRouteFilterExcludes: one alert per site, circuit and community a route filter leaves
out, while any of the site's agents still reports it; nothing for an info finding.  Its
firing and resolving are events (route_filter_excludes, route_filter_cleared), on both
backends."""

from __future__ import annotations

import copy

import pytest

from collector.alertrules import Links, route_filter_excludes

from .conftest import API
from .reports import SITE_FACTS, er, inet, report, result
from .test_detection import alerts

pytestmark = pytest.mark.both_backends

NAME = "ErpathRouteFilterExcludes"
NE = "12076:51003"


def facts(*communities: str) -> dict:
    doc = copy.deepcopy(SITE_FACTS)
    doc["circuits"][0]["route_filter"] = "rf-ams"
    doc["circuits"][0]["route_filter_communities"] = ["12076:51002", *communities]
    return doc


def excludes(severity: str = "warning", community: str = NE) -> dict:
    return {
        "kind": "route-filter-excludes",
        "severity": severity,
        "circuit": "ams-1",
        "predicted_only": False,
        "evidence": [
            {
                "kind": "route-filter",
                "text": f"198.18.1.10 is in 198.18.1.0/24, Azure North Europe ({community}, "
                "northeurope), which route filter rf-ams of circuit ams-1 does not allow",
                "circuit": "ams-1",
                "address": "198.18.1.10",
                "prefix": "198.18.1.0/24",
                "community": community,
                "service": "Azure North Europe",
                "region": "northeurope",
            }
        ],
        "fix": f"add community {community} (Azure North Europe) to route filter rf-ams",
    }


def doc(
    agent: str,
    seq: int,
    *findings: dict,
    targets=("northeurope.api.powerplatform.com",),
    allowed: tuple[str, ...] = (),
):
    path = inet() if findings else er()
    return report(
        agent,
        seq,
        [result(t, path, findings=list(findings)) for t in targets],
        facts=facts(*allowed),
    )


async def events(c, kind: str) -> list[dict]:
    return (await c.get(f"{API}/events", kind=kind))["events"]


async def test_fires_per_circuit_and_community_and_resolves_when_no_agent_reports_it(
    start_collector,
):
    c = await start_collector()
    two = ("northeurope.api.powerplatform.com", "contoso.crm4.dynamics.com")
    await c.post(doc("br-1", 1, excludes(), targets=two))
    await c.post(doc("br-2", 1, excludes()))
    (alert,) = await alerts(c, NAME, "firing")
    assert alert["labels"] == {
        "alertname": NAME,
        "site": "ams",
        "circuit": "ams-1",
        "community": NE,
        "severity": "warning",
    }
    assert "rf-ams" in alert["annotations"]["summary"]
    assert "12076:51003 (Azure North Europe)" in alert["annotations"]["summary"]
    evidence = alert["annotations"]["evidence"]
    assert "br-1 -> contoso.crm4.dynamics.com" in evidence
    assert "fix: add community 12076:51003" in evidence
    assert alert["annotations"]["runbook_url"].endswith("/ErpathRouteFilterExcludes")
    # One agent's filter view is fixed; the other still sees the exclusion: still firing.
    await c.post(doc("br-1", 2))
    assert len(await alerts(c, NAME, "firing")) == 1
    await c.post(doc("br-2", 2))
    assert await alerts(c, NAME, "firing") == []
    (resolved,) = await alerts(c, NAME, "resolved")
    assert resolved["labels"]["community"] == NE


async def test_an_event_when_it_fires_and_when_it_clears(start_collector):
    c = await start_collector()
    two = ("northeurope.api.powerplatform.com", "contoso.crm4.dynamics.com")
    await c.post(doc("br-1", 1, excludes(), targets=two))
    await c.post(doc("br-2", 1, excludes()))  # the same exclusion: no second event
    (alert,) = await alerts(c, NAME, "firing")
    (fired,) = await events(c, "route_filter_excludes")
    assert fired["severity"] == "warning"
    assert (fired["site"], fired["agent"], fired["circuit"]) == ("ams", "br-1", "ams-1")
    assert fired["target"] is None  # two targets: both are in `after`
    assert fired["summary"] == alert["annotations"]["summary"]
    assert fired["after"] == {
        "route_filter": "rf-ams",
        "community": NE,
        "service": "Azure North Europe",
        "region": "northeurope",
        "targets": list(two),
    }
    assert (
        "  fix: add community 12076:51003 (Azure North Europe) to route filter rf-ams"
        in (fired["evidence"])
    )
    assert await events(c, "route_filter_cleared") == []
    await c.post(doc("br-1", 2))
    assert await events(c, "route_filter_cleared") == []  # br-2 still reports it
    await c.post(doc("br-2", 2))
    (cleared,) = await events(c, "route_filter_cleared")
    assert cleared["severity"] == "info"
    assert (cleared["site"], cleared["agent"], cleared["circuit"]) == ("ams", "br-2", "ams-1")
    assert cleared["before"] == {"route_filter": "rf-ams", "community": NE}
    assert cleared["summary"] == (
        "no agent of ams reports route filter rf-ams of circuit ams-1 leaving out community "
        "12076:51003 any more"
    )
    assert cleared["at_s"] >= fired["at_s"]
    # A new episode is a new event; the filter fixed in the agents' facts says so on clearing.
    await c.post(doc("br-1", 3, excludes()))
    assert len(await events(c, "route_filter_excludes")) == 2
    await c.post(doc("br-1", 4, allowed=(NE,)))
    latest = (await events(c, "route_filter_cleared"))[0]
    assert latest["summary"] == (
        "route filter rf-ams of circuit ams-1 at ams now allows community 12076:51003"
    )
    assert latest["evidence"][0] == (
        "br-1's site facts list 12076:51003 in route filter rf-ams of circuit ams-1"
    )
    kinds = [e["kind"] for e in (await c.get(f"{API}/events", site="ams"))["events"]]
    assert kinds.count("route_filter_excludes") == 2 and kinds.count("route_filter_cleared") == 2


async def test_another_community_is_another_alert_and_info_raises_nothing(start_collector):
    c = await start_collector()
    await c.post(doc("br-1", 1, excludes(severity="info")))
    assert await alerts(c, NAME) == []
    assert await events(c, "route_filter_excludes") == []
    await c.post(doc("br-1", 2, excludes(), excludes(community="12076:5060")))
    assert sorted(a["labels"]["community"] for a in await alerts(c, NAME, "firing")) == [
        "12076:5060",
        NE,
    ]


def test_spec_names_region_and_filter():
    spec = route_filter_excludes(
        "ams",
        "ams-1",
        NE,
        "Azure North Europe",
        "northeurope",
        "rf-ams",
        ["line"],
        Links("https://rb", "https://d/x"),
    )
    assert spec.annotations["summary"] == (
        "route filter rf-ams of circuit ams-1 at ams lacks community 12076:51003 "
        "(Azure North Europe): its destinations go over the internet"
    )
    assert "(region northeurope)" in spec.annotations["description"]
    assert spec.annotations["runbook_url"] == "https://rb/ErpathRouteFilterExcludes"
