"""Building blocks of erpath's Grafana dashboards (classic JSON model).

Every panel queries the datasource variable, never a fixed datasource uid,
so the dashboards import into any Grafana whose Prometheus scrapes the
collector.  Ids and grid positions are assigned by `layout`, so panels can
be listed in reading order without counting.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 41  # Grafana 12; older versions load it as is, newer migrate it
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24

# Path classes as the agent's verdicts name them; the same colours everywhere.
CLASS_COLOURS = {"expressroute": "green", "internet": "orange", "cdn": "blue", "unknown": "text"}
CLASS_TEXT = {
    "expressroute": "ExpressRoute",
    "internet": "Internet",
    "cdn": "CDN",
    "unknown": "unknown",
}

# A state timeline needs one number per (agent, target): the class (and ER
# link) coded as a value, mapped back to text and colour.  `max by` keeps one
# series per pair whatever the circuit and egress labels are.
PATH_CODES = [
    ("expressroute", "primary", 1, "ExpressRoute primary", "green"),
    ("expressroute", "secondary", 2, "ExpressRoute secondary", "yellow"),
    ("internet", None, 3, "Internet", "orange"),
    ("cdn", None, 4, "CDN", "blue"),
    ("unknown", None, 5, "unknown", "text"),
]
TCP_STATE_CODES = [
    ("open", 1, "green"),
    ("closed", 2, "orange"),
    ("filtered", 3, "red"),
    ("error", 4, "purple"),
]

# Path series carry their address family ("4" or "6"): a dual-stack target has a path per
# family, and the path panels show both (one line or row per family).
SEL = 'site=~"$site", agent=~"$agent", target=~"$target", family=~"$family"'
PATH_BY = "site, agent, target, family"
SITE_SEL = 'site=~"$site"'
AGENT_SEL = 'site=~"$site", agent=~"$agent"'


def path_code_expr(by: str = PATH_BY) -> str:
    parts = []
    for cls, link, code, _, _ in PATH_CODES:
        link_sel = f', link="{link}"' if link else ""
        parts.append(f'{code} * erpath_path_info{{{SEL}, class="{cls}"{link_sel}}}')
    # An ER path without a link (reverse traces) counts as primary.
    parts.append(f'1 * erpath_path_info{{{SEL}, class="expressroute", link=""}}')
    return f"max by ({by}) (\n  " + "\n  or ".join(parts) + "\n)"


def tcp_state_expr() -> str:
    parts = [
        f'{code} * erpath_tcp_state{{{SEL}, state="{state}"}}' for state, code, _ in TCP_STATE_CODES
    ]
    return f"max by ({PATH_BY}) (\n  " + "\n  or ".join(parts) + "\n)"


def value_mappings(entries: list[tuple[Any, str, str]]) -> list[dict[str, Any]]:
    options = {
        str(value): {"text": text, "color": colour, "index": i}
        for i, (value, text, colour) in enumerate(entries)
    }
    return [{"type": "value", "options": options}]


PATH_MAPPINGS = value_mappings([(code, text, colour) for _, _, code, text, colour in PATH_CODES])
CLASS_MAPPINGS = value_mappings([(c, CLASS_TEXT[c], colour) for c, colour in CLASS_COLOURS.items()])
TCP_MAPPINGS = value_mappings([(code, state, colour) for state, code, colour in TCP_STATE_CODES])
SILENT_MAPPINGS = value_mappings([(0, "reporting", "green"), (1, "silent", "red")])
ASYM_MAPPINGS = value_mappings([(0, "symmetric", "green"), (1, "asymmetric", "red")])
REDUNDANCY_MAPPINGS = value_mappings([(0, "both links", "green"), (1, "one link", "orange")])


def target(
    expr: str, legend: str = "", *, instant: bool = False, table: bool = False
) -> dict[str, Any]:
    t: dict[str, Any] = {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
    }
    if table:
        t["format"] = "table"
    return t


def panel(
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    *,
    w: int = 12,
    h: int = 8,
    description: str = "",
    unit: str | None = None,
    mappings: list | None = None,
    options: dict | None = None,
    custom: dict | None = None,
    overrides: list | None = None,
    transformations: list | None = None,
    thresholds: list | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {"custom": custom or {}}
    if unit:
        defaults["unit"] = unit
    if mappings:
        defaults["mappings"] = mappings
    defaults["thresholds"] = {
        "mode": "absolute",
        "steps": thresholds or [{"color": "green", "value": None}],
    }
    p: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
        "targets": [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
    }
    if transformations:
        p["transformations"] = transformations
    return p


def row(title: str) -> dict[str, Any]:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"w": GRID_WIDTH, "h": 1},
    }


def timeseries(title: str, targets: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "never",
        "spanNulls": False,
        **kw.pop("custom", {}),
    }
    options = {
        "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel("timeseries", title, targets, custom=custom, options=options, **kw)


def state_timeline(
    title: str, targets: list[dict[str, Any]], mappings: list, **kw: Any
) -> dict[str, Any]:
    options = {
        "showValue": "never",
        "mergeValues": True,
        "rowHeight": 0.8,
        "alignValue": "left",
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return panel(
        "state-timeline",
        title,
        targets,
        mappings=mappings,
        options=options,
        custom={"fillOpacity": 80, "lineWidth": 0},
        **kw,
    )


def stat(title: str, targets: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "background",
        "graphMode": "area",
        "textMode": "auto",
        "justifyMode": "auto",
    }
    return panel("stat", title, targets, options=options, **kw)


def table(
    title: str,
    targets: list[dict[str, Any]],
    *,
    hide: list[str],
    order: list[str] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    organize = {
        "id": "organize",
        "options": {
            "excludeByName": {name: True for name in hide},
            "indexByName": {name: i for i, name in enumerate(order or [])},
            "renameByName": {},
        },
    }
    options = {
        "showHeader": True,
        "cellHeight": "sm",
        "footer": {"show": False, "reducer": ["sum"]},
        "sortBy": [{"displayName": (order or ["site"])[0], "desc": False}],
    }
    return panel(
        "table",
        title,
        targets,
        options=options,
        transformations=[organize],
        custom={"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True},
        **kw,
    )


def colour_column(field: str, mappings: list) -> dict[str, Any]:
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [
            {"id": "mappings", "value": mappings},
            {"id": "custom.cellOptions", "value": {"type": "color-background", "mode": "basic"}},
        ],
    }


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ids in order, and panels placed left to right, wrapping at the grid width."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        p["id"] = i
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > GRID_WIDTH or p["type"] == "row":
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        x, row_h = x + w, max(row_h, h)
        if p["type"] == "row":
            x, y, row_h = 0, y + h, 0
    return panels


def query_var(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": {
            "qryType": 1,
            "query": query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "hide": 0,
    }


def variables(*names: str) -> list[dict[str, Any]]:
    """The datasource variable, then site, agent, target, family (each filtered by the ones
    before)."""
    out: list[dict[str, Any]] = [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Prometheus",
            "query": "prometheus",
            "current": {},
            "options": [],
            "refresh": 1,
            "regex": "",
            "hide": 0,
        }
    ]
    queries = {
        "site": "label_values(erpath_agent_last_report_timestamp_seconds, site)",
        "agent": 'label_values(erpath_agent_last_report_timestamp_seconds{site=~"$site"}, agent)',
        "target": 'label_values(erpath_path_info{site=~"$site", agent=~"$agent"}, target)',
        "family": 'label_values(erpath_path_info{site=~"$site", agent=~"$agent"}, family)',
    }
    for name in names:
        out.append(query_var(name, name.capitalize(), queries[name]))
    return out


def flip_annotation(var_names: tuple[str, ...]) -> dict[str, Any]:
    """Route flips as annotations on every time-series panel, filtered by the dashboard's variables."""
    sel = ", ".join(f'{v}=~"${v}"' for v in var_names)
    return {
        "name": "Route flips",
        "enable": True,
        "iconColor": "red",
        "datasource": DATASOURCE,
        "expr": f"sum by ({PATH_BY}) (increase(erpath_route_flips_total{{{sel}}}[$__interval])) > 0",
        "step": "1m",
        "titleFormat": "Route flip",
        "textFormat": "{{agent}} ({{site}}) → {{target}} IPv{{family}}",
        "tagKeys": "site,agent,target,family",
        "useValueForTime": False,
    }


BUILTIN_ANNOTATION = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[dict[str, Any]],
    *,
    var_names: tuple[str, ...],
    links: list[dict[str, Any]],
    time_from: str = "now-6h",
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["erpath"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "refresh": "1m",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {"list": [BUILTIN_ANNOTATION, flip_annotation(var_names)]},
        "templating": {"list": variables(*var_names)},
        "links": links,
        "panels": layout(panels),
    }


def dashboard_links() -> list[dict[str, Any]]:
    """Links between the three dashboards, carrying time range and variables."""
    return [
        {
            "type": "dashboards",
            "tags": ["erpath"],
            "asDropdown": False,
            "title": "erpath",
            "includeVars": True,
            "keepTime": True,
            "icon": "external link",
            "targetBlank": False,
            "tooltip": "",
            "url": "",
        }
    ]
