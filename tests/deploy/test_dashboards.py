"""The committed dashboards: current with the generator, and shaped as Grafana requires."""

from __future__ import annotations

import re

import pytest

from grafana import generate
from grafana.panels import SCHEMA_VERSION
from tests.deploy.files import (
    DASHBOARD_DIR,
    PROVISIONING_DIR,
    dashboard_queries,
    dashboards,
    panels,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_committed_json_is_current():
    assert sorted(generate.DASHBOARDS) == sorted(dashboards()), "run: python -m grafana.generate"
    for name, build in generate.DASHBOARDS.items():
        assert (DASHBOARD_DIR / name).read_text() == generate.render(build), (
            f"{name}: run python -m grafana.generate"
        )


def test_uids_are_stable_and_unique():
    uids = {name: d["uid"] for name, d in dashboards().items()}
    assert uids == {
        "erpath-overview.json": "erpath",
        "erpath-site.json": "erpath-site",
        "erpath-agents.json": "erpath-agents",
    }


@pytest.mark.parametrize("name", sorted(generate.DASHBOARDS))
def test_structure(name):
    d = dashboards()[name]
    assert d["schemaVersion"] == SCHEMA_VERSION and d["title"] and d["uid"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource"
        and variables["datasource"]["query"] == "prometheus"
    )
    assert {"site", "agent"} <= set(variables)
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == DATASOURCE and v["allValue"] == ".*" and v["includeAll"]
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    occupied = set()
    for p in panels(d):
        g = p["gridPos"]
        assert set(g) == {"x", "y", "w", "h"} and g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & occupied, f"{p['title']} overlaps another panel"
        occupied |= cells
        if p["type"] == "row":
            continue
        assert p["datasource"] == DATASOURCE, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)) and all(refs), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE and t["expr"].strip(), p["title"]
    for a in d["annotations"]["list"]:
        if "expr" in a:
            assert a["datasource"] == DATASOURCE


def test_template_variables_are_used_and_defined():
    for name, d in dashboards().items():
        defined = {v["name"] for v in d["templating"]["list"]}
        for dash, title, expr in dashboard_queries():
            if dash == name:
                used = set(re.findall(r"\$(\w+)", expr)) - {
                    "__rate_interval",
                    "__range",
                    "__interval",
                }
                assert used <= defined, (name, title, used)


def test_class_colours_per_path_class():
    site = dashboards()["erpath-site.json"]
    timeline = next(p for p in site["panels"] if p["title"] == "Path class history")
    texts = {
        o["text"]: o["color"]
        for o in timeline["fieldConfig"]["defaults"]["mappings"][0]["options"].values()
    }
    assert (
        texts["ExpressRoute primary"] == "green"
        and texts["Internet"] == "orange"
        and texts["CDN"] == "blue"
    )


def test_provisioning_points_at_the_dashboards_folder():
    provider = (PROVISIONING_DIR / "dashboards" / "erpath.yml").read_text()
    assert "apiVersion: 1" in provider and "path: /var/lib/grafana/dashboards/erpath" in provider
    ds = (PROVISIONING_DIR / "datasources" / "erpath.yml").read_text()
    assert "type: prometheus" in ds and "uid: erpath-prometheus" in ds
