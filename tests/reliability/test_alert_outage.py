"""Alertmanager down and back, around a resolution.

tests/collector/test_alertmanager.py proves with Debian's real Alertmanager
that an alert raised while it is down arrives once it is up, and that its
restart loses nothing.  The gap closed here: the *resolution* happens while
the receiver is down (it answers 503, then refuses connections) — it must
still arrive, with its endsAt, once the receiver is back, and so must an
alert that fired and resolved entirely during the outage.
"""

from __future__ import annotations

import time
from datetime import datetime

from aiohttp import web

from tests.collector.conftest import make_config, start_collector  # noqa: F401 - fixture
from tests.collector.realparts import free_port
from tests.collector.reports import er, inet, simple
from tests.collector.waiting import eventually


class Receiver:
    """An Alertmanager API v2 stand-in that can be switched to 503 and to gone."""

    def __init__(self) -> None:
        self.up = True
        self.posts: list[tuple[float, list[dict]]] = []  # (received at, alerts)
        app = web.Application()
        app.router.add_post("/api/v2/alerts", self.alerts)
        self.runner = web.AppRunner(app)
        self.port = free_port()
        self.site: web.TCPSite | None = None

    async def alerts(self, request: web.Request) -> web.Response:
        if not self.up:
            return web.Response(status=503)
        self.posts.append((time.time(), await request.json()))
        return web.Response()

    async def start(self) -> None:
        await self.runner.setup()
        await self.listen()

    async def listen(self) -> None:
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await self.site.start()

    async def gone(self) -> None:
        assert self.site is not None
        await self.site.stop()

    def latest(self, alertname: str, target: str) -> tuple[float, dict] | None:
        found = None
        for at, post in self.posts:
            for a in post:
                if a["labels"]["alertname"] == alertname and a["labels"].get("target") == target:
                    found = at, a
        return found

    def resolved(self, alertname: str, target: str) -> bool:
        """The latest version received says resolved: endsAt is not after its arrival.
        (A firing alert's endsAt is four re-sends ahead.)"""
        got = self.latest(alertname, target)
        return got is not None and _epoch(got[1]["endsAt"]) <= got[0] + 1.0


async def test_resolutions_made_while_alertmanager_is_down_arrive_when_it_is_back(start_collector):  # noqa: F811
    rx = Receiver()
    await rx.start()
    c = await start_collector(
        alerts={
            "alertmanager_urls": [f"http://127.0.0.1:{rx.port}"],
            "resend_interval_s": 30.0,
            "backoff_initial_s": 0.1,
            "backoff_max_s": 0.3,
        }
    )
    try:
        for seq, path in enumerate([er(), inet(), inet()], start=1):
            assert (await c.post(simple("br-1", seq, path, target="a.example"))).status == 201

        async def fired() -> bool:
            return rx.latest("ErpathRouteFlip", "a.example") is not None and not rx.resolved(
                "ErpathRouteFlip", "a.example"
            )

        await eventually(fired)

        rx.up = False  # 503 first …
        for seq, path in enumerate([er(), er()], start=4):
            await c.post(simple("br-1", seq, path, target="a.example"))  # flip back: resolution
        # … a second alert fires and resolves entirely during the outage
        for seq, path in enumerate([er(), inet(), inet(), er(), er()], start=1):
            await c.post(simple("br-2", seq, path, target="b.example"))
        failures = {"receiver": f"http://127.0.0.1:{rx.port}", "result": "failure"}
        await eventually(lambda: _value(c, failures, 2))
        await rx.gone()  # … then connection refused
        before = c.registry.get_sample_value("erpath_alert_deliveries_total", failures)
        await eventually(lambda: _value(c, failures, before + 2))

        rx.up = True
        await rx.listen()

        async def resolved() -> bool:
            return rx.resolved("ErpathRouteFlip", "a.example") and rx.resolved(
                "ErpathRouteFlip", "b.example"
            )

        await eventually(resolved, timeout_s=10)
        (state,) = [a for a in (await c.get("/api/v1/alerts"))["receivers"]]
        assert state["last_error"] is None
    finally:
        await rx.runner.cleanup()


async def _value(c, labels: dict, at_least: float) -> bool:
    return (c.registry.get_sample_value("erpath_alert_deliveries_total", labels) or 0) >= at_least


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
