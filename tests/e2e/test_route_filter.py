"""A route filter without the Power Platform region's community, end to end (issue 16).

Real agent cycles (`erpath-agent probe once` in the branch's namespace, with
the config derived for the scenario: the circuits' route filter, its
communities and the lab's communities file), the real collector and a real
Alertmanager.  In `route-filter-missing` Microsoft advertises over the
circuits only the communities their filter allows, which lacks Azure North
Europe (12076:51003): northeurope.api.powerplatform.com goes over the
internet, the agent says which community is missing, and the collector
raises ErpathRouteFilterExcludes.  In `route-filter-fixed` the community is
in the filter (the config) and its prefix on the circuit (the routes): the
path is ExpressRoute and the alert resolves.
"""

from __future__ import annotations

import time

import pytest

from tests.lab import Lab, routefilter

from .test_designs import CIRCUIT, Stack, named, result

pytestmark = pytest.mark.lab

NODES = ("branch",)
SITE = "branch"
TARGET = routefilter.NORTH_EUROPE_TARGET
COMMUNITY = routefilter.NORTH_EUROPE
ALERT = "ErpathRouteFilterExcludes"


@pytest.fixture
def stack(lab: Lab, tmp_path):
    s = Stack(lab, tmp_path / "stack")
    try:
        s.start()
        yield s
    finally:
        s.stop()
        lab.scenario("er")


def _excludes(report: dict, circuit: str) -> dict | None:
    r = result(report, TARGET)
    return next(
        (
            f
            for f in r["findings"]
            if f["kind"] == "route-filter-excludes" and f["circuit"] == circuit
        ),
        None,
    )


def test_missing_community_is_internet_and_alerts_then_added_is_expressroute(
    stack: Stack,
    lab: Lab,
) -> None:
    t0 = time.monotonic()
    lab.scenario("route-filter-missing")
    reports = stack.cycle(NODES)
    r = result(reports["branch"], TARGET)
    assert r["address"] == routefilter.NORTH_EUROPE_ADDRESS
    assert r["verdict"]["class"] == "internet", r["verdict"]
    assert r["tcp"]["state"] == "open"
    # Both circuits carry the same filter: each says the community is missing.
    for circuit in (CIRCUIT, "dub-er-2"):
        f = _excludes(reports["branch"], circuit)
        assert f is not None and f["severity"] == "warning", (circuit, r["findings"])
        (ev,) = [e for e in f["evidence"] if e["kind"] == "route-filter"]
        assert (ev["community"], ev["service"], ev["region"]) == (
            COMMUNITY.value,
            COMMUNITY.name,
            "northeurope",
        ), ev
        assert ev["prefix"] == "198.19.17.0/24" and ev["circuit"] == circuit
        assert f"add community {COMMUNITY.value}" in f["fix"]
    # The communities the filter allows stay on the circuit, without a finding.
    other = result(reports["branch"], "make.powerapps.com")
    assert (other["verdict"]["class"], other["verdict"]["circuit"]) == ("expressroute", CIRCUIT)
    assert not [f for f in other["findings"] if f["kind"].startswith("route-filter")]

    both = lambda a: len(named(a, ALERT, site=SITE)) == 2  # noqa: E731
    alerts = named(stack.settled_alerts(reports, until=both), ALERT, site=SITE)
    assert sorted((a["labels"]["circuit"], a["labels"]["community"]) for a in alerts) == [
        (CIRCUIT, COMMUNITY.value),
        ("dub-er-2", COMMUNITY.value),
    ], [a["labels"] for a in alerts]
    alert = named(alerts, ALERT, circuit=CIRCUIT)[0]
    assert alert["labels"]["severity"] == "warning"
    assert f"{COMMUNITY.value} ({COMMUNITY.name})" in alert["annotations"]["summary"]
    assert f"branch -> {TARGET}" in alert["annotations"]["evidence"]
    fired_s = time.monotonic() - t0

    # The community added to the filter: the prefix comes over the circuit again.
    lab.scenario("route-filter-fixed")
    reports = stack.cycle(NODES)
    r = result(reports["branch"], TARGET)
    assert (r["verdict"]["class"], r["verdict"]["circuit"]) == ("expressroute", CIRCUIT), r[
        "verdict"
    ]
    assert r["verdict"]["matches_expected"] is True
    assert _excludes(reports["branch"], CIRCUIT) is None, r["findings"]
    none = lambda a: not named(a, ALERT, site=SITE)  # noqa: E731
    assert named(stack.settled_alerts(reports, until=none), ALERT, site=SITE) == []
    took = time.monotonic() - t0
    print(f"\nmissing -> alert in Alertmanager {fired_s:.1f} s; fixed -> resolved {took:.1f} s")
