"""The OpenAPI document: committed, served, and covering every route."""

from __future__ import annotations

import json

from aiohttp import web

from collector import openapi

from .conftest import API


def test_committed_document_is_current():
    from pathlib import Path

    path = Path(openapi.__file__).with_name("openapi.json")
    committed = json.loads(path.read_text())
    assert committed == json.loads(openapi.render()), "run: python -m collector.openapi"


async def test_served_and_complete(start_collector):
    c = await start_collector()
    doc = await c.get(f"{API}/openapi.json")
    assert doc["openapi"].startswith("3.1")
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in c.app.router.routes()
        if isinstance(r.resource, web.Resource) and r.method != "HEAD"
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    report = doc["components"]["schemas"]["Report"]
    assert "results" in report["properties"]
    # Every $ref resolves inside the document.
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        assert ref.split("/")[-1] in doc["components"]["schemas"], ref
