"""Every event kind the collector records can be asked for: `GET /api/v1/events?kind=`
accepts it (routes.EVENT_KINDS, the OpenAPI enum) and docs/collector.md names it.  A kind
left out is an event no one can filter for (a 400), as route_filter_* were."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import collector
from collector import openapi
from collector.routes import EVENT_KINDS

from .conftest import API

ROOT = Path(collector.__file__).parent
DOCS = ROOT.parent / "docs" / "collector.md"


def _literal_kind(node: ast.AST) -> str | None:
    """The kind of a journal.add_event(conn, at_s, "kind", …) call, or of a
    PathEvent(kind="…") the path state machine hands ingest to record."""
    if not isinstance(node, ast.Call):
        return None
    name = getattr(node.func, "attr", getattr(node.func, "id", None))
    if name == "add_event" and len(node.args) > 2 and isinstance(node.args[2], ast.Constant):
        return node.args[2].value
    if name == "PathEvent":
        for k in node.keywords:
            if k.arg == "kind" and isinstance(k.value, ast.Constant):
                return k.value.value
    return None


def recorded_kinds() -> set[str]:
    """Every literal event kind in the collector's code."""
    return {
        kind
        for source in ROOT.glob("*.py")
        for node in ast.walk(ast.parse(source.read_text(), str(source)))
        if (kind := _literal_kind(node)) is not None
    }


def test_every_recorded_kind_is_a_kind_the_api_and_docs_know():
    recorded = recorded_kinds()
    assert {"route_flip", "route_filter_excludes", "route_filter_cleared"} <= recorded
    assert recorded == set(EVENT_KINDS)
    enum = openapi.document()["components"]["schemas"]["Event"]["properties"]["kind"]["enum"]
    assert enum == list(EVENT_KINDS)
    text = DOCS.read_text()
    listed = text[text.index("Event kinds:") :].split("\n\n", 1)[0]
    assert set(re.findall(r"`([a-z_]+)`", listed)) >= set(EVENT_KINDS)


async def test_every_kind_is_a_filter_and_others_are_a_400_listing_them(start_collector):
    c = await start_collector()
    for kind in EVENT_KINDS:
        assert (await c.get(f"{API}/events", kind=kind))["events"] == []
    resp = await c.client.get(f"{API}/events", params={"kind": "route_filter"})
    assert resp.status == 400
    (error,) = (await resp.json())["errors"]
    assert error["field"] == "query/kind"
    assert "route_filter_excludes" in error["message"]
    assert "route_filter_cleared" in error["message"]
