"""A new or renamed receiver gets what is firing, not 90 days of resolved alerts (issue 14
item 12); it hears a resolution only of what it heard fire."""

from __future__ import annotations

from aiohttp import web

from .conftest import make_config
from .reports import er, inet, simple
from .waiting import eventually


def receiver():
    seen: list[dict] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        seen.extend(body["alerts"] if isinstance(body, dict) else body)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/api/v2/alerts", handle)
    app.router.add_post("/hook", handle)
    return app, seen


async def test_a_new_receiver_gets_only_what_is_firing(start_collector, aiohttp_server, tmp_path):
    # History without receivers: a flip that came and went, and a path still unexpected.
    c = await start_collector()
    for seq, path in enumerate([er(), inet(), inet(), er(), er()], start=1):
        await c.post(simple("br-1", seq, path))
    await c.post(simple("br-2", 1, inet(), expected="expressroute"))
    stored = (await c.get("/api/v1/alerts"))["alerts"]
    assert sorted((a["alertname"], a["state"]) for a in stored) == [
        ("ErpathRouteFlip", "resolved"),
        ("ErpathUnexpectedPath", "firing"),
    ]

    # Receivers added (or renamed: a new URL is a new receiver) on the same store.
    am_app, am_seen = receiver()
    hook_app, hook_seen = receiver()
    am, hook = await aiohttp_server(am_app), await aiohttp_server(hook_app)
    cfg = make_config(
        tmp_path,
        alerts={
            "alertmanager_urls": [f"http://127.0.0.1:{am.port}"],
            "webhook_urls": [f"http://127.0.0.1:{hook.port}/hook"],
        },
    )
    c2 = await start_collector(cfg)

    async def both_heard():
        return am_seen and hook_seen

    await eventually(both_heard)
    for seen in (am_seen, hook_seen):
        assert {a["labels"]["alertname"] for a in seen} == {"ErpathUnexpectedPath"}
    assert hook_seen[0]["status"] == "firing"

    # What they heard fire, they hear resolve.
    await c2.post(simple("br-2", 2, er(), expected="expressroute"))
    await c2.post(simple("br-2", 3, er(), expected="expressroute"))

    async def resolution_heard():
        return any(a.get("status") == "resolved" for a in hook_seen)

    await eventually(resolution_heard)
    resolved = [a for a in hook_seen if a["status"] == "resolved"]
    assert [a["labels"]["alertname"] for a in resolved] == ["ErpathUnexpectedPath"]
    # br-1's flip, resolved before the receivers existed, never reached them.
    assert all(a["labels"].get("agent") != "br-1" for a in am_seen + hook_seen)
