"""End to end in the lab: agents, collector, Prometheus and Alertmanager, every scenario.

One walk through the scenarios, as `make demo` does, with what a user must
see asserted at each step.  Detection latencies (scenario switch to alert
visible in Alertmanager's API) are printed for BENCHMARKS.md.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.lab.demo import ALERTMANAGER, PROMETHEUS, Demo

pytestmark = pytest.mark.lab

INTERVAL_S = 10.0


def erpath_alerts(alerts):
    return [a for a in alerts if a["labels"]["alertname"] != "ErpathWatchdog"]


def named(alerts, name, **labels):
    return [
        a
        for a in alerts
        if a["labels"]["alertname"] == name
        and all(a["labels"].get(k) == v for k, v in labels.items())
    ]


# Bounds are in reports, not seconds (the product confirms a change in reports;
# seconds are for the benchmark).  A flip is confirmed by 2 reports, and the
# report of a cycle the switch interrupted may still show the old path: 3.
CONFIRMED_WITHIN_REPORTS = 3
# A lost link by 3 (`redundancy_lost_reports`' default), and that report: 4.
REDUNDANCY_WITHIN_REPORTS = 4
# After the last of those reports: the collector's evaluation (1 s), its
# delivery to Alertmanager, and its re-send (10 s) when Alertmanager was away.
GRACE_S = 15.0


def wait_alerts(
    demo: Demo,
    check,
    what: str,
    agents: tuple[str, ...],
    since_wall_s: float,
    reports: int = CONFIRMED_WITHIN_REPORTS,
):
    """Poll Alertmanager until `check` holds; fail once each agent's `reports` are in and stale."""
    t0 = time.monotonic()
    all_in = None  # when the last agent's last report counted was stored
    while True:
        alerts = demo.obs.alerts()
        if check(alerts):
            return alerts, time.monotonic() - t0
        counts = {a: demo.fleet.reports_since(a, since_wall_s) for a in agents}
        if all_in is None and min(counts.values()) >= reports:
            all_in = time.monotonic()
        # The wall-clock cap only stops a hung lab: reports are the bound.
        if (all_in is not None and time.monotonic() - all_in > GRACE_S) or (
            time.monotonic() - t0 > reports * 60
        ):
            shown = json.dumps([a["labels"] for a in erpath_alerts(alerts)], indent=1)[:3000]
            raise AssertionError(
                f"{what}: not after {reports} reports of {', '.join(agents)} "
                f"(stored since the switch: {counts}) and {GRACE_S:.0f} s; active: {shown}"
            )
        time.sleep(0.5)


def switch(demo: Demo, scenario: str) -> tuple[float, float]:
    """Switch the lab; the monotonic and the wall-clock time of the switch."""
    wall_s = time.time()
    return demo.switch(scenario), wall_s


@pytest.fixture
def demo(lab, tmp_path):
    lab.scenario("er")
    d = Demo(lab, tmp_path / "demo", interval_s=INTERVAL_S, say=lambda _m: None)
    try:
        d.start()
        yield d
    finally:
        d.stop()
        lab.scenario("er")


def test_every_scenario_end_to_end(demo, lab):
    latencies: dict[str, float] = {}
    forward = ("branch", "dchost", "dccore")

    # Steady `er` for several cycles: no alert at all.
    demo.wait_until_reported(reports=2)
    time.sleep(2 * INTERVAL_S)
    assert erpath_alerts(demo.obs.alerts()) == []

    # er -> er-secondary: the primary link fails.  A link change is no route
    # flip; the lab's circuit is active-standby, so traffic on the standby link
    # is one ErpathCircuitRedundancyLost for the circuit, per site.
    _, wall = switch(demo, "er-secondary")
    alerts, latencies["er-secondary (redundancy lost)"] = wait_alerts(
        demo,
        lambda a: (
            named(a, "ErpathCircuitRedundancyLost", site="branch", circuit="ams-er-1")
            and named(a, "ErpathCircuitRedundancyLost", site="dc", circuit="ams-er-1")
        ),
        "redundancy lost on ams-er-1 at both sites",
        forward,
        wall,
        reports=REDUNDANCY_WITHIN_REPORTS,
    )
    assert not named(alerts, "ErpathRouteFlip"), "a link change is not a route flip"
    lost = named(alerts, "ErpathCircuitRedundancyLost", site="branch")[0]
    assert "secondary" in lost["annotations"]["evidence"]
    # Alertmanager groups as the example routing says: per site, one
    # notification per receiver.
    groups = demo.obs.get(f"{ALERTMANAGER}/api/v2/alerts/groups")
    receivers = [
        g["receiver"]["name"]
        for g in groups
        if any(
            a["labels"]["alertname"] == "ErpathCircuitRedundancyLost"
            and a["labels"]["site"] == "branch"
            for a in g["alerts"]
        )
    ]
    assert receivers and len(receivers) == len(set(receivers)), receivers

    # Back to er resolves it.
    _, wall = switch(demo, "er")
    wait_alerts(
        demo,
        lambda a: not named(a, "ErpathCircuitRedundancyLost"),
        "redundancy restored",
        forward,
        wall,
        reports=REDUNDANCY_WITHIN_REPORTS,
    )
    assert not named(demo.obs.alerts(), "ErpathRouteFlip")

    # internet-failover: flip expressroute -> internet and the unexpected path.
    t_switch, wall = switch(demo, "internet-failover")
    wait_alerts(
        demo,
        lambda a: named(a, "ErpathRouteFlip", agent="dccore", to="internet/ams-inet"),
        "the datacenter core router's flip",
        ("dccore",),
        wall,
    )
    latencies["internet-failover (dccore, route-change trigger)"] = time.monotonic() - t_switch
    alerts, _ = wait_alerts(
        demo,
        lambda a: (
            named(a, "ErpathRouteFlip", agent="branch", to="internet/ams-inet")
            and named(a, "ErpathUnexpectedPath", agent="branch")
        ),
        "branch flip to the internet",
        ("branch",),
        wall,
    )
    latencies["internet-failover (branch)"] = time.monotonic() - t_switch
    assert (
        named(alerts, "ErpathRouteFlip", agent="branch", target="make.powerapps.com")[0]["labels"][
            "from"
        ]
        == "expressroute/ams-er-1"
    )

    _, wall = switch(demo, "er")
    wait_alerts(
        demo,
        lambda a: not erpath_alerts(a),
        "everything resolved after failover",
        forward,
        wall,
    )

    # asymmetric-nat: one alert with the branch's findings and the azure-side reverse trace.
    t_switch, wall = switch(demo, "asymmetric-nat")

    def asym_both(a):
        for x in named(a, "ErpathPathAsymmetric", site="branch", circuit="ams-er-1"):
            ev = x["annotations"]["evidence"]
            if "asymmetric-nat" in ev and "reverse azure -> 198.51.100.10" in ev:
                return True
        return False

    # Alertmanager restarts mid-scenario: the collector re-sends, nothing is lost.
    demo.obs.stop("alertmanager")
    time.sleep(2)
    demo.obs.start_alertmanager()
    alerts, _ = wait_alerts(
        demo,
        asym_both,
        "asymmetry with both kinds of evidence",
        ("branch", "azure"),
        wall,
        reports=CONFIRMED_WITHIN_REPORTS + 1,
    )
    latencies["asymmetric-nat (branch findings + reverse trace)"] = time.monotonic() - t_switch
    # The TCP failures are visible in the metrics, from Prometheus's next
    # scrape (every 5 s here) on: the alert may reach Alertmanager first.
    query = (
        f"{PROMETHEUS}/api/v1/query?query="
        "erpath_tcp_state%7Bagent%3D%22branch%22%2Cstate%3D%22filtered%22%7D"
    )
    deadline = time.monotonic() + GRACE_S
    while not (filtered := demo.obs.get(query)["data"]["result"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert filtered, "erpath_tcp_state{state=filtered} for the branch"

    # asymmetric-circuits: the alert names both circuits.
    _, wall = switch(demo, "er")
    wait_alerts(
        demo,
        lambda a: not named(a, "ErpathPathAsymmetric"),
        "asymmetry resolved",
        ("branch", "azure"),
        wall,
        reports=CONFIRMED_WITHIN_REPORTS + 1,
    )
    t_switch, wall = switch(demo, "asymmetric-circuits")
    alerts, _ = wait_alerts(
        demo,
        lambda a: any(
            "ams-er-1" in json.dumps(x) and "dub-er-2" in json.dumps(x)
            for x in named(a, "ErpathPathAsymmetric")
        ),
        "asymmetry naming both circuits",
        forward + ("azure",),
        wall,
        reports=CONFIRMED_WITHIN_REPORTS + 1,
    )
    latencies["asymmetric-circuits"] = time.monotonic() - t_switch

    # Every alert resolves after the lab returns to er.
    _, wall = switch(demo, "er")
    wait_alerts(
        demo,
        lambda a: not erpath_alerts(a),
        "every alert resolved",
        forward + ("azure",),
        wall,
        reports=CONFIRMED_WITHIN_REPORTS + 1,
    )

    print("\ndetection latency (scenario switch to alert in Alertmanager):")
    for what, seconds in latencies.items():
        print(f"  {what:<52} {seconds:5.1f} s")
