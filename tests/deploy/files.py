"""Where the deployment files live, and the queries they contain."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_YML = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "rules" / "erpath.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "erpath.rules.test.yml"
AGENTS_EXAMPLE = PROMETHEUS_DIR / "erpath-agents.yml.example"
ALERTMANAGER_YML = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
PROVISIONING_DIR = ROOT / "grafana" / "provisioning"
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict) -> list[dict]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows hold their panels
    return out


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel or annotation title, expr) of every query."""
    out = []
    for name, d in dashboards().items():
        for p in panels(d):
            out.extend((name, p["title"], t["expr"]) for t in p.get("targets", []))
        out.extend(
            (name, f"annotation {a['name']}", a["expr"])
            for a in d["annotations"]["list"]
            if "expr" in a
        )
        out.extend(
            (name, f"variable {v['name']}", v["definition"])
            for v in d["templating"]["list"]
            if v["type"] == "query"
        )
    return out


# Without a YAML parser (none in the venv, and promtool is the real judge):
# the rule file is written as `- record:`/`- alert:` followed by `expr:`,
# either inline or as a `>-` block.
_RULE = re.compile(
    r"^\s*- (record|alert): (\S+)\n(?:\s+#.*\n)*\s+expr: (>-\n((?:\s{10,}.*\n)+)|(.*)\n)", re.M
)


def rules() -> list[tuple[str, str, str]]:
    """(record|alert, name, expr) of every rule."""
    out = []
    for m in _RULE.finditer(RULES.read_text()):
        expr = m.group(4) if m.group(4) else m.group(5)
        out.append((m.group(1), m.group(2), " ".join(line.strip() for line in expr.splitlines())))
    return out
