"""A real Alertmanager (Debian's prometheus-alertmanager) receives, keeps and resolves the alerts."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from .realparts import Alertmanager, binary, free_port
from .reports import er, finding, inet, report, result, simple
from .waiting import eventually

T = "api.powerapps.com"


async def am_alerts(session: aiohttp.ClientSession, am: Alertmanager) -> dict[str, dict]:
    async with session.get(f"{am.url}/api/v2/alerts") as resp:
        assert resp.status == 200
        return {a["labels"]["alertname"]: a for a in await resp.json()}


async def test_real_alertmanager_gets_flip_and_asymmetry_resolves_and_survives_restart(
    start_collector, aiohttp_server, tmp_path
):
    binary("prometheus-alertmanager")
    notifications: list[dict] = []

    async def capture(request: web.Request) -> web.Response:
        notifications.append(await request.json())
        return web.Response()

    capture_app = web.Application()
    capture_app.router.add_post("/hook", capture)
    hook = await aiohttp_server(capture_app)
    am = Alertmanager(tmp_path / "am", f"http://127.0.0.1:{hook.port}/hook", port=free_port())

    c = await start_collector(
        alerts={
            "alertmanager_urls": [am.url],
            "resend_interval_s": 1.0,
            "runbook_base_url": "https://runbooks.example/erpath",
            "dashboard_base_url": "https://grafana.example/d/erpath",
        }
    )
    try:
        # Alertmanager is down while the flip is confirmed: the alert waits, with backoff.
        for seq, path in enumerate([er(), inet(), inet()], start=1):
            await c.post(simple("br-1", seq, path))
        await eventually(
            lambda: asyncio.sleep(
                0,
                c.registry.get_sample_value(
                    "erpath_alert_deliveries_total", {"receiver": am.url, "result": "failure"}
                ),
            )
        )

        await asyncio.to_thread(am.start)
        async with aiohttp.ClientSession() as session:
            got = await eventually(lambda: am_alerts(session, am))
            flip = got["ErpathRouteFlip"]
            assert {
                k: flip["labels"][k] for k in ("site", "agent", "target", "from", "to", "severity")
            } == {
                "site": "ams",
                "agent": "br-1",
                "target": T,
                "from": "expressroute/ams-1",
                "to": "internet/ams-inet",
                "severity": "critical",
            }
            ann = flip["annotations"]
            assert "MSEE of circuit ams-1" in ann["evidence"] and "ams-inet" in ann["evidence"]
            assert ann["runbook_url"] == "https://runbooks.example/erpath/ErpathRouteFlip"
            assert ann["dashboard_url"].startswith("https://grafana.example/d/erpath?var-site=ams")
            assert ann["summary"] and ann["description"]

            await c.post(report("br-2", 1, [result(T, inet(), findings=[finding()])]))

            async def both():
                a = await am_alerts(session, am)
                return a if {"ErpathRouteFlip", "ErpathPathAsymmetric"} <= a.keys() else None

            got = await eventually(both)
            asym = got["ErpathPathAsymmetric"]
            assert asym["labels"]["site"] == "ams" and asym["labels"]["circuit"] == "ams-1"
            assert "advertised over ams-1" in asym["annotations"]["evidence"]

            # Alertmanager keeps alerts in memory only: after a restart the collector's
            # re-sends bring them back.
            await asyncio.to_thread(am.stop)
            await asyncio.to_thread(am.start)
            assert await eventually(both)

            # The path returns: the flip resolves in Alertmanager (it notifies "resolved").
            await c.post(simple("br-1", 4, er()))
            await c.post(simple("br-1", 5, er()))

            def resolved_flip():
                return [
                    a
                    for n in notifications
                    for a in n["alerts"]
                    if a["labels"]["alertname"] == "ErpathRouteFlip" and a["status"] == "resolved"
                ]

            async def flip_gone():
                return "ErpathRouteFlip" not in await am_alerts(session, am) and resolved_flip()

            (note, *_) = await eventually(flip_gone, 15)
            assert note["labels"]["to"] == "internet/ams-inet" and note["endsAt"] > note["startsAt"]
            # The asymmetry is still firing, and was notified as firing.
            assert "ErpathPathAsymmetric" in await am_alerts(session, am)
            assert any(
                a["labels"]["alertname"] == "ErpathPathAsymmetric" and a["status"] == "firing"
                for n in notifications
                for a in n["alerts"]
            )
        assert (
            c.registry.get_sample_value(
                "erpath_alert_deliveries_total", {"receiver": am.url, "result": "success"}
            )
            >= 3
        )
    finally:
        await asyncio.to_thread(am.stop)
