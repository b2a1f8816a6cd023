"""Write erpath's Grafana dashboards: `python -m grafana.generate` (stdlib only).

The JSON in grafana/dashboards/ is generated from here and committed, so it
can be provisioned or imported without Python; tests/deploy checks it is
current, structurally valid, and that every query returns data from a
Prometheus that scraped a real collector.

Dashboards query only the collector's own metric names, never the
recording rules: they work even where deploy/prometheus/rules is not loaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana.panels import (
    AGENT_SEL,
    ASYM_MAPPINGS,
    CLASS_MAPPINGS,
    PATH_BY,
    PATH_MAPPINGS,
    REDUNDANCY_MAPPINGS,
    SEL,
    SILENT_MAPPINGS,
    SITE_SEL,
    TCP_MAPPINGS,
    colour_column,
    dashboard,
    dashboard_links,
    path_code_expr,
    row,
    stat,
    state_timeline,
    table,
    target,
    tcp_state_expr,
    timeseries,
)

OUT_DIR = Path(__file__).with_name("dashboards")
INFO_HIDE = ["Time", "Value", "__name__", "job", "instance"]


def overview() -> dict[str, Any]:
    panels = [
        stat(
            "Pairs on their expected path",
            [target(f"avg(erpath_path_expected{{{SEL}}})", "on expected path")],
            w=6,
            h=5,
            unit="percentunit",
            description="Share of (agent, target) pairs whose path class is "
            "the one configured for the target; 100% is healthy.",
            thresholds=[
                {"color": "red", "value": None},
                {"color": "orange", "value": 0.9},
                {"color": "green", "value": 1},
            ],
        ),
        stat(
            "Pairs off their expected path",
            [
                target(
                    f"count(erpath_path_expected{{{SEL}}} == 0) or vector(0)", "off expected path"
                )
            ],
            w=6,
            h=5,
            thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}],
        ),
        stat(
            "Asymmetric circuits now",
            [target(f"sum(erpath_path_asymmetric{{{SITE_SEL}}}) or vector(0)", "asymmetric")],
            w=6,
            h=5,
            thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}],
        ),
        stat(
            "Route flips in range",
            [
                target(
                    f"sum(increase(erpath_route_flips_total{{{SEL}}}[$__range])) or vector(0)",
                    "flips",
                )
            ],
            w=6,
            h=5,
            thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}],
        ),
        row("Paths now"),
        table(
            "Path of every site and endpoint",
            [target(f"erpath_path_info{{{SEL}}}", instant=True, table=True)],
            w=24,
            h=12,
            hide=INFO_HIDE,
            order=["site", "agent", "target", "family", "class", "circuit", "link", "egress"],
            overrides=[colour_column("class", CLASS_MAPPINGS)],
            description="Current path class per agent, target and address family (4 or 6: a "
            "dual-stack target has a path per family); the circuit and link (ExpressRoute) or "
            "egress (internet) next to it. Colour: green ExpressRoute, orange internet, blue CDN.",
        ),
        timeseries(
            "Pairs per path class",
            [target(f"count by (site, class) (erpath_path_info{{{SEL}}})", "{{site}} {{class}}")],
            w=8,
            h=8,
            custom={"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 40},
        ),
        timeseries(
            "Paths per address family",
            [
                target(
                    f"count by (family, class) (erpath_path_info{{{SEL}}})",
                    "IPv{{family}} {{class}}",
                )
            ],
            w=8,
            h=8,
            custom={"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 40},
            description="Paths measured over IPv4 and over IPv6, per class. IPv6 paths that "
            "vanish while IPv4 ones stay: the agents' users fell back to IPv4 (ipv6-blackhole "
            "findings say why).",
        ),
        table(
            "Off their expected path now",
            [
                target(
                    f"erpath_path_info{{{SEL}}} and on ({PATH_BY}) (erpath_path_expected{{{SEL}}} == 0)",
                    instant=True,
                    table=True,
                )
            ],
            w=8,
            h=8,
            hide=INFO_HIDE,
            order=["site", "agent", "target", "family", "class", "circuit", "link", "egress"],
            overrides=[colour_column("class", CLASS_MAPPINGS)],
        ),
        row("Changes"),
        timeseries(
            "Route flips",
            [
                target(
                    f"sum by (site, target, family) (increase(erpath_route_flips_total{{{SEL}}}"
                    "[$__rate_interval]))",
                    "{{site}} {{target}} IPv{{family}}",
                )
            ],
            w=12,
            h=8,
            custom={"drawStyle": "bars", "fillOpacity": 80},
            description="Confirmed route flips per site, target and address family (also as "
            "annotations).",
        ),
        state_timeline(
            "Asymmetric routing",
            [target(f"erpath_path_asymmetric{{{SITE_SEL}}}", "{{site}} {{circuit}} {{kind}}")],
            ASYM_MAPPINGS,
            w=12,
            h=8,
            description="Per site and circuit: traffic leaves and returns by different paths.",
        ),
        state_timeline(
            "Circuit redundancy",
            [target(f"erpath_circuit_redundancy_lost{{{SITE_SEL}}}", "{{site}} {{circuit}}")],
            REDUNDANCY_MAPPINGS,
            w=12,
            h=8,
            description="Per site and circuit: one link means ErpathCircuitRedundancyLost fires "
            "(every flow on one link of an active-active circuit, or on the standby link).",
        ),
    ]
    return dashboard(
        "erpath",
        "erpath / Overview",
        "Which path each Power Platform endpoint takes from every site, right now and over time.",
        panels,
        var_names=("site", "agent", "target", "family"),
        links=dashboard_links(),
    )


def site_detail() -> dict[str, Any]:
    panels = [
        state_timeline(
            "Path class history",
            [target(path_code_expr(), "{{agent}} → {{target}} IPv{{family}}")],
            PATH_MAPPINGS,
            w=24,
            h=10,
            description="ExpressRoute primary/secondary, internet, CDN or unknown, per agent, "
            "target and address family.",
        ),
        timeseries(
            "TCP connect time by path class",
            [
                target(
                    f"avg by (site, target, family, class) (erpath_tcp_connect_seconds{{{SEL}}})",
                    "{{target}} IPv{{family}} ({{class}})",
                )
            ],
            w=12,
            unit="s",
        ),
        timeseries(
            "DNS resolution time",
            [target(f"erpath_dns_resolve_seconds{{{SEL}}}", "{{agent}} {{target}} IPv{{family}}")],
            w=12,
            unit="s",
        ),
        timeseries(
            "Hop count",
            [target(f"erpath_trace_hops{{{SEL}}}", "{{agent}} {{target}} IPv{{family}}")],
            w=12,
            custom={"drawStyle": "line", "lineInterpolation": "stepAfter"},
        ),
        state_timeline(
            "TCP state",
            [target(tcp_state_expr(), "{{agent}} → {{target}} IPv{{family}}")],
            TCP_MAPPINGS,
            w=12,
        ),
        timeseries(
            "Egress, circuit and link in use",
            [
                target(
                    f"count by (class, circuit, link, egress) (erpath_path_info{{{SEL}}})",
                    "{{class}} {{circuit}} {{link}} {{egress}}",
                )
            ],
            w=12,
            custom={"lineInterpolation": "stepAfter"},
            description="Pairs per circuit/link (ExpressRoute) and egress (internet): a change of "
            "circuit, link or egress moves pairs from one line to another.",
        ),
        timeseries(
            "Flows per circuit link",
            [
                target(
                    f"erpath_circuit_links_seen{{{SITE_SEL}}}",
                    "{{site}} {{circuit}} {{link}}",
                )
            ],
            w=12,
            custom={"lineInterpolation": "stepAfter"},
            description="Flows the site's latest reports saw crossing each link of each circuit. "
            "Active-active: both lines above zero; one line at zero is a link down or out of the "
            "CE's hash.",
        ),
        table(
            "Recent route flips",
            [
                target(
                    f"sum by ({PATH_BY}) (increase(erpath_route_flips_total{{{SEL}}}[$__range])) > 0",
                    instant=True,
                    table=True,
                )
            ],
            w=12,
            hide=["Time"],
            order=["site", "agent", "target", "family", "Value"],
            description="Flips in the time range. The collector's events (GET /api/v1/events) and the "
            "ErpathRouteFlip alert carry the before/after paths and their evidence.",
        ),
    ]
    return dashboard(
        "erpath-site",
        "erpath / Site and path detail",
        "Path history, timings, hops and changes of one site's targets.",
        panels,
        var_names=("site", "agent", "target", "family"),
        links=dashboard_links(),
    )


def agents() -> dict[str, Any]:
    age = (
        f"time() - max by (site, agent) (erpath_agent_last_report_timestamp_seconds{{{AGENT_SEL}}})"
    )
    panels = [
        table(
            "Last report",
            [target(age, instant=True, table=True)],
            w=12,
            h=8,
            hide=["Time"],
            order=["site", "agent", "Value"],
            unit="s",
            description="Seconds since the collector received the agent's last report.",
        ),
        state_timeline(
            "Silent agents",
            [
                target(
                    f"max by (site, agent) (erpath_agent_silent{{{AGENT_SEL}}})",
                    "{{site}} {{agent}}",
                )
            ],
            SILENT_MAPPINGS,
            w=12,
            h=8,
            description="Silent: no report for 3 of the agent's intervals (ErpathAgentSilent).",
        ),
        timeseries("Last report age", [target(age, "{{site}} {{agent}}")], w=12, unit="s"),
        timeseries(
            "Probe cycle duration",
            [
                target(
                    f"max by (site, agent) (erpath_agent_cycle_seconds{{{AGENT_SEL}}})",
                    "{{site}} {{agent}}",
                )
            ],
            w=12,
            unit="s",
        ),
        timeseries(
            "Spool depth",
            [
                target(
                    f"max by (site, agent) (erpath_agent_spool_reports{{{AGENT_SEL}}})",
                    "{{site}} {{agent}}",
                )
            ],
            w=12,
            description="Reports waiting in the agent's spool: above 0 the agent cannot deliver.",
        ),
        timeseries(
            "Dropped reports",
            [
                target(
                    f"max by (site, agent) (increase(erpath_agent_dropped_reports_total{{{AGENT_SEL}}}"
                    "[$__rate_interval]))",
                    "{{site}} {{agent}}",
                )
            ],
            w=12,
            custom={"drawStyle": "bars", "fillOpacity": 80},
            description="Reports the agent's spool dropped (full or too old): lost measurements.",
        ),
        timeseries(
            "Service tags age",
            [
                target(
                    f"max by (site, agent) (erpath_agent_service_tags_age_seconds{{{AGENT_SEL}}})",
                    "{{site}} {{agent}}",
                )
            ],
            w=12,
            unit="s",
            description="Since the agent's service tags file was installed (erpath-agent"
            " service-tags update); Azure publishes one weekly. ErpathStaleServiceTags"
            " above 14 days. The changeNumber is erpath_agent_service_tags_change_number.",
        ),
        timeseries(
            "Targets refused",
            [
                target(
                    f"max by (site, agent) (erpath_agent_targets_refused{{{AGENT_SEL}}})",
                    "{{site}} {{agent}}",
                )
            ],
            w=12,
            description="Targets of the agent's last report beyond the collector's [ingest]"
            " max_targets_per_agent: not stored, no series.",
        ),
        row("Collector"),
        timeseries(
            "Reports received",
            [
                target(
                    "sum by (result) (rate(erpath_reports_received_total[$__rate_interval]))",
                    "{{result}}",
                )
            ],
            w=8,
            unit="reqps",
        ),
        timeseries(
            "Ingest time p99",
            [
                target(
                    "histogram_quantile(0.99, sum by (le) "
                    "(rate(erpath_ingest_seconds_bucket[$__rate_interval])))",
                    "p99",
                )
            ],
            w=8,
            unit="s",
        ),
        timeseries(
            "Alert deliveries",
            [
                target(
                    "sum by (receiver, result) (increase(erpath_alert_deliveries_total[$__rate_interval]))",
                    "{{receiver}} {{result}}",
                )
            ],
            w=8,
        ),
    ]
    return dashboard(
        "erpath-agents",
        "erpath / Agents",
        "Agent health as the collector sees it, and the collector itself.",
        panels,
        var_names=("site", "agent"),
        links=dashboard_links(),
    )


DASHBOARDS = {
    "erpath-overview.json": overview,
    "erpath-site.json": site_detail,
    "erpath-agents.json": agents,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:] or [str(OUT_DIR)])[0])
    out.mkdir(parents=True, exist_ok=True)
    for name, build in DASHBOARDS.items():
        (out / name).write_text(render(build))
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
