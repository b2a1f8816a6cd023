"""ErpathRouteFilterExcludes: one alert per site, circuit and community a route filter leaves
out, while any of the site's agents still reports it; nothing for an info finding."""

from __future__ import annotations

import copy

from collector.alertrules import Links, route_filter_excludes

from .reports import SITE_FACTS, er, inet, report, result
from .test_detection import alerts

NAME = "ErpathRouteFilterExcludes"
NE = "12076:51003"


def facts() -> dict:
    doc = copy.deepcopy(SITE_FACTS)
    doc["circuits"][0]["route_filter"] = "rf-ams"
    doc["circuits"][0]["route_filter_communities"] = ["12076:51002"]
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


def doc(agent: str, seq: int, *findings: dict, targets=("northeurope.api.powerplatform.com",)):
    path = inet() if findings else er()
    return report(
        agent,
        seq,
        [result(t, path, findings=list(findings)) for t in targets],
        facts=facts(),
    )


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


async def test_another_community_is_another_alert_and_info_raises_nothing(start_collector):
    c = await start_collector()
    await c.post(doc("br-1", 1, excludes(severity="info")))
    assert await alerts(c, NAME) == []
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
