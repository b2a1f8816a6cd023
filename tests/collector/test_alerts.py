"""Alert delivery: retry with backoff, nothing lost, re-sends, webhook payload."""

from __future__ import annotations

import pytest
from aiohttp import web

from collector import alertrules
from collector.alertrules import Links

from .reports import er, inet, simple
from .waiting import eventually

pytestmark = pytest.mark.both_backends


def flaky_receiver(fail_first: int):
    seen: list[tuple[int, object]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append((len(seen), body))
        if len(seen) <= fail_first:
            return web.Response(status=503, text="try later")
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/api/v2/alerts", handle)
    app.router.add_post("/hook", handle)
    return app, seen


async def test_failed_deliveries_are_retried_and_nothing_is_lost(start_collector, aiohttp_server):
    app, seen = flaky_receiver(fail_first=3)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}"
    c = await start_collector(alerts={"alertmanager_urls": [url], "resend_interval_s": 30.0})
    for seq, path in enumerate([er(), inet(), inet()], start=1):
        await c.post(simple("br-1", seq, path))

    async def delivered():
        ok = [body for i, body in seen if i >= 3]
        return ok and any(a["labels"]["alertname"] == "ErpathRouteFlip" for a in ok[0])

    await eventually(delivered)
    assert (
        c.registry.get_sample_value(
            "erpath_alert_deliveries_total", {"receiver": url, "result": "failure"}
        )
        == 3
    )

    # The receiver has the body before the sender has read its 200.
    async def recovered():
        return (await c.get("/api/v1/alerts"))["receivers"][0]["last_error"] is None

    await eventually(recovered)
    alert = [a for i, body in seen if i >= 3 for a in body][0]
    assert alert["endsAt"] > alert["startsAt"]  # firing: endsAt a few re-sends ahead


async def test_alertmanager_gets_re_sends_the_webhook_only_changes(start_collector, aiohttp_server):
    am_app, am_seen = flaky_receiver(0)
    hook_app, hook_seen = flaky_receiver(0)
    am = await aiohttp_server(am_app)
    hook = await aiohttp_server(hook_app)
    c = await start_collector(
        alerts={
            "alertmanager_urls": [f"http://127.0.0.1:{am.port}"],
            "webhook_urls": [f"http://127.0.0.1:{hook.port}/hook"],
            "resend_interval_s": 0.4,
        }
    )
    for seq, path in enumerate([er(), inet(), inet()], start=1):
        await c.post(simple("br-1", seq, path))
    await eventually(lambda: _true(len(am_seen) >= 3), 10)
    assert len(hook_seen) == 1
    body = hook_seen[0][1]
    assert body["version"] == "erpath.webhook/1" and body["status"] == "firing"
    (a,) = body["alerts"]
    assert a["labels"]["alertname"] == "ErpathRouteFlip" and a["annotations"]["evidence"]
    # The path returns: the webhook hears "resolved" once.
    await c.post(simple("br-1", 4, er()))
    await c.post(simple("br-1", 5, er()))
    await eventually(lambda: _true(len(hook_seen) == 2))
    assert hook_seen[1][1]["alerts"][0]["status"] == "resolved"


async def _true(value: bool) -> bool:
    return value


def test_alert_fingerprint_depends_on_labels_only():
    links = Links("https://rb", "https://dash")
    from collector.state import PathEvent

    ev = PathEvent(
        "route_flip",
        "critical",
        "t",
        "s",
        before={"class": "expressroute", "circuit": "c", "link": "primary", "evidence": ["x"]},
        after={"class": "internet", "evidence": ["y"]},
    )
    a = alertrules.route_flip("ams", "br-1", ev, links, "expressroute/c")
    b = alertrules.route_flip(
        "ams", "br-1", ev, Links("https://other", "https://other"), "expressroute/c"
    )
    assert a.fingerprint == b.fingerprint and a.labels["from"] == "expressroute/c"
    assert a.annotations["evidence"].startswith(
        "family: IPv4\nbefore: expressroute/c (primary link) at None"
    )
    assert a.annotations["runbook_url"] == "https://rb/ErpathRouteFlip"


def test_asymmetry_alert_is_critical_only_when_a_member_is():
    from collector.state import Asymmetry

    links = Links("https://rb", "https://dash")
    may = Asymmetry("ams", "ams-1", "reported", "br-1", "t", ("br-1 -> t: may",), "warning")
    sure = Asymmetry("ams", "ams-1", "measured", "az-1", "t", ("reverse over ams-1",))
    warn = alertrules.path_asymmetric("ams", "ams-1", [may], links)
    crit = alertrules.path_asymmetric("ams", "ams-1", [may, sure], links)
    assert (warn.labels["severity"], crit.labels["severity"]) == ("warning", "critical")
    assert crit.annotations["evidence"] == "reverse over ams-1\nbr-1 -> t: may"  # by kind


def test_redundancy_alert_is_one_warning_per_site_and_circuit_with_its_evidence():
    links = Links("https://rb", "https://dash")
    a = alertrules.redundancy_lost("ams", "ams-1", ["link still in use: primary"], links)
    b = alertrules.redundancy_lost("ams", "ams-1", ["other evidence"], links)
    assert a.fingerprint == b.fingerprint
    assert a.labels == {
        "alertname": "ErpathCircuitRedundancyLost",
        "site": "ams",
        "circuit": "ams-1",
        "severity": "warning",
    }
    assert a.annotations["evidence"] == "link still in use: primary"
    assert a.annotations["runbook_url"] == "https://rb/ErpathCircuitRedundancyLost"
    assert a.annotations["dashboard_url"] == "https://dash?var-site=ams&var-circuit=ams-1"


async def test_a_late_receipt_never_lowers_the_acknowledged_version(open_store):
    """A leader cut off mid-delivery can commit its receipt after the new leader
    recorded a newer one: the older version must not win (it would be re-sent)."""
    from collector.alerts import mark_sent

    await open_store.write(mark_sent, "am", [("fp1", 3)], 100.0)
    await open_store.write(mark_sent, "am", [("fp1", 2)], 101.0)  # the late one
    await open_store.write(mark_sent, "am", [("fp2", 1)], 102.0)
    await open_store.write(mark_sent, "am", [("fp2", 1)], 130.0)  # a re-send of the same
    rows = await open_store.read(
        lambda c: c.execute(
            "SELECT fingerprint, version, sent_s FROM alert_receipts ORDER BY fingerprint"
        ).fetchall()
    )
    assert [tuple(r) for r in rows] == [("fp1", 3, 100.0), ("fp2", 1, 130.0)]
