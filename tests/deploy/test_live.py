"""Every dashboard query and rule returns data from a real Prometheus scraping a real collector.

The collector is fed the lab branch agent's real reports in every scenario
(plus two service cycles, for the health figures); Prometheus runs the
shipped config and rules and sends to Alertmanager with the shipped routing
tree.  Queries run over the whole test as Grafana would over its time range,
with the template variables set to All.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.collector.realparts import free_port
from tests.deploy import labfeed
from tests.deploy.files import dashboard_queries, rules
from tests.deploy.stack import Alertmanager, Collector, Prometheus, get_json, wait_for
from tests.lab.scenarios import SCENARIOS

pytestmark = pytest.mark.lab

# Ends in asymmetric-nat: TCP filtered, asymmetry active, so those alerts are live at the end.
SCENARIO_ORDER = [
    "er",
    "er-active-active",
    "er-active-active-link-down",
    "er-flaky-msee",
    "failover-order",
    "er-secondary",
    "internet-failover",
    "asymmetric-circuits",
    "route-filter-missing",
    "route-filter-fixed",
    # Another site design: the circuit is the IP VPN provider's (ams-vpn-3).
    "er-ipvpn",
    # Dual-stack: the agent's users reach the targets over IPv6 (RFC 6724 order), so the
    # family="6" series exist beside the IPv4 ones.
    "ipv6-er",
    "ipv6-asymmetric",
    "asymmetric-nat",
]

# Conditions the lab does not have: a day of history and a lasting slowdown; several
# collectors of which none leads (the lab's one collector on SQLite always leads).
# Their promtool unit tests prove the logic; here each of their selectors must return data.
NOT_IN_LAB = {"ErpathConnectRegression", "ErpathCollectorLeaderless"}


def grafana_to_promql(expr: str, range_s: int) -> str:
    """What Grafana sends with every variable at All (allValue .*)."""
    expr = re.sub(r"\$(site|agent|target|family)\b", ".*", expr)
    return (
        expr.replace("$__rate_interval", "5s")
        .replace("$__interval", "5s")
        .replace("$__range", f"{range_s}s")
    )


def selectors(expr: str) -> list[str]:
    """Vector selectors of an expression (metric name with its matchers), as instant queries."""
    return [m.group(0) for m in re.finditer(r"\b[a-z_:]*erpath_[a-z_:]+(\{[^}]*\})?", expr)]


@pytest.fixture
def stack(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # bound and released: connections are refused
    am = Alertmanager(tmp_path / "am", dead)
    collector = Collector(tmp_path / "collector", am.url, f"{dead}/hook")
    prom = Prometheus(tmp_path / "prom", f"127.0.0.1:{collector.port}", f"127.0.0.1:{am.port}")
    started = []
    try:
        for part in (am, collector, prom):
            part.start()
            started.append(part)
        yield collector, prom, am
    finally:
        for part in reversed(started):
            part.stop()


def test_every_query_returns_data(lab, lab_scenario, stack, tmp_path):
    collector, prom, am = stack
    assert set(SCENARIO_ORDER) == set(SCENARIOS), "visit every scenario"
    t0 = time.time()
    token = collector.token("branch")
    state = tmp_path / "agent-state"
    state.mkdir()
    for scenario in SCENARIO_ORDER:
        lab_scenario(scenario)
        cfg_dir = tmp_path / scenario
        cfg_dir.mkdir()
        labfeed.relay(collector, token, labfeed.probe_once(lab, cfg_dir, state))
        time.sleep(1.5)  # a scrape and an evaluation of this scenario's state
    # Both families' paths, each its own series (the path panels show both).
    families = {r["metric"]["family"] for r in prom.query("count by (family) (erpath_path_info)")}
    assert families == {"4", "6"}, families

    # The service, as a second agent of the site: reports with interval and health.
    lab_scenario("er")
    svc_dir = tmp_path / "service"
    svc_dir.mkdir()
    svc_token = collector.token("branch-svc")
    for path in labfeed.run_service(lab, svc_dir, "branch-svc"):
        labfeed.relay(collector, svc_token, path.read_bytes(), gzipped=True)
    # What the service agent runs with: its circuits' route filters, its (stale) service tags.
    (svc,) = get_json(f"{collector.url}/api/v1/agents", agent="branch-svc")["agents"]
    assert svc["service_tags"]["change_number"] is not None, svc
    assert svc["service_tags"]["age_s"] > 14 * 86400, svc
    assert svc["circuits"] and all("route_filter" in c for c in svc["circuits"]), svc

    # A few scrapes of the service's health, as rate and increase panels need.
    wait_for(
        lambda: prom.query(
            'count_over_time(erpath_agent_dropped_reports_total{agent="branch-svc"}[1m]) >= 5'
        ),
        15,
        "service health scraped",
    )
    # The probe-once agent is silent by now (3 x 5 s); then the collector goes down.
    wait_for(
        lambda: any(a["labels"]["alertname"] == "ErpathAgentSilent" for a in prom.alerts()),
        20,
        "ErpathAgentSilent active",
    )
    exposition = collector.exposition()
    assert_alertmanager_groups(am)
    collector.stop()
    wait_for(
        lambda: any(a["labels"]["alertname"] == "ErpathCollectorDown" for a in prom.alerts()),
        10,
        "ErpathCollectorDown pending",
    )
    t1 = time.time()
    range_s = int(t1 - t0) + 1

    # Every metric name used exists in the collector's exposition.
    exported = set(re.findall(r"^(erpath_\w+)", exposition, re.M))
    used = {
        name for _, _, expr in dashboard_queries() for name in re.findall(r"\berpath_\w+", expr)
    }
    used |= {name for _, _, expr in rules() for name in re.findall(r"(?<![:\w])erpath_\w+", expr)}
    assert used <= exported, f"not exported: {sorted(used - exported)}"

    empty = []
    for dash, title, expr in dashboard_queries():
        q = grafana_to_promql(expr, range_s)
        if title.startswith("variable "):
            metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", q).groups()
            if not get_json(f"{prom.url}/api/v1/label/{label}/values", **{"match[]": metric})[
                "data"
            ]:
                empty.append((dash, title, q))
        elif not prom.query_range(q, t0, t1):
            empty.append((dash, title, q))
    for kind, name, expr in rules():
        if name in NOT_IN_LAB:
            empty += [
                ("rules", name, s) for s in selectors(expr) if not prom.query_range(s, t0, t1)
            ]
        elif not prom.query_range(name if kind == "record" else expr, t0, t1):
            empty.append(("rules", name, expr))
    assert not empty, "queries without data:\n" + "\n".join(map(str, empty))

    groups = get_json(f"{prom.url}/api/v1/rules")["data"]["groups"]
    unhealthy = [
        (r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"
    ]
    assert not unhealthy and sum(len(g["rules"]) for g in groups) == len(rules())


def assert_alertmanager_groups(am: Alertmanager) -> None:
    """Prometheus' heartbeat and the collector's flips arrived, grouped as the tree says."""

    def groups():
        return get_json(f"{am.url}/api/v2/alerts/groups")

    def by_alertname():
        out = {}
        for g in groups():
            for a in g["alerts"]:
                out.setdefault(a["labels"]["alertname"], []).append(
                    (g["receiver"]["name"], g["labels"])
                )
        return out

    wait_for(
        lambda: {"ErpathWatchdog", "ErpathRouteFlip"} <= set(by_alertname()),
        15,
        f"Watchdog and route flips in Alertmanager (has {sorted(by_alertname())})",
    )
    seen = by_alertname()
    assert ("deadman", {"alertname": "ErpathWatchdog"}) in seen["ErpathWatchdog"]
    for receiver, labels in seen["ErpathRouteFlip"]:
        assert set(labels) == {"alertname", "from"} and receiver in (
            "network-team",
            "network-pager",
        )
    if "ErpathPathAsymmetric" in seen:
        assert all(
            set(labels) == {"alertname", "circuit"} for _, labels in seen["ErpathPathAsymmetric"]
        )
