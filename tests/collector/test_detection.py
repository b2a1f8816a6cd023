"""Detection through the API: flip hysteresis, alerts, asymmetry, silence, restarts."""

from __future__ import annotations

import pytest

from collector.app import evaluate_now
from collector.config import from_dict

from .conftest import API, make_config
from .reports import SITE_FACTS, er, finding, inet, report, result, simple
from .waiting import eventually

T = "api.powerapps.com"

pytestmark = pytest.mark.both_backends


async def alerts(c, name=None, state=None):
    params = {"state": state} if state else {}
    rows = (await c.get(f"{API}/alerts", **params))["alerts"]
    return [a for a in rows if name is None or a["alertname"] == name]


async def test_one_odd_report_records_an_event_but_raises_no_alert_two_do(start_collector):
    c = await start_collector()
    await c.post(simple("br-1", 1, er()))
    await c.post(simple("br-1", 2, er()))
    resp = await c.post(simple("br-1", 3, inet()))
    assert (await resp.json())["flips"] == 0
    events = (await c.get(f"{API}/events"))["events"]
    assert [e["kind"] for e in events] == ["path_deviation"]
    assert await alerts(c) == []
    paths = (await c.get(f"{API}/paths"))["paths"]
    assert paths[0]["path"] == "expressroute/ams-1" and paths[0]["pending"]["reports"] == 1

    resp = await c.post(simple("br-1", 4, inet()))
    assert (await resp.json())["flips"] == 1
    (flip,) = (await c.get(f"{API}/events", kind="route_flip"))["events"]
    assert flip["driver"] == "routing" and flip["before"]["path"] == "expressroute/ams-1"
    assert flip["before"]["link"] == "primary"
    assert flip["after"]["egress"] == "ams-inet" and flip["evidence"]
    (alert,) = await alerts(c, "ErpathRouteFlip", "firing")
    assert alert["labels"] == {
        "alertname": "ErpathRouteFlip",
        "site": "ams",
        "agent": "br-1",
        "target": T,
        "from": "expressroute/ams-1",
        "to": "internet/ams-inet",
        "severity": "critical",
    }
    for key in ("summary", "description", "evidence", "runbook_url", "dashboard_url"):
        assert alert["annotations"][key], key
    assert "MSEE of circuit ams-1" in alert["annotations"]["evidence"]
    assert (
        c.registry.get_sample_value(
            "erpath_route_flips_total", {"agent": "br-1", "site": "ams", "target": T, "family": "4"}
        )
        == 1
    )

    # The path returns (confirmed): the flip alert resolves and no new one fires.
    await c.post(simple("br-1", 5, er()))
    await c.post(simple("br-1", 6, er()))
    assert await alerts(c, "ErpathRouteFlip", "firing") == []
    (resolved,) = await alerts(c, "ErpathRouteFlip", "resolved")
    assert resolved["ends_at"]


async def test_a_chain_of_flips_is_one_alert_from_where_it_started(start_collector):
    """ams-1 → dub-2 → internet → ams-1: `from` stays ams-1, the return resolves all."""
    c = await start_collector()
    seq = 0
    for path in (er(), er(), er("dub-2"), er("dub-2"), inet(), inet()):
        seq += 1
        await c.post(simple("br-1", seq, path))
    (alert,) = await alerts(c, "ErpathRouteFlip", "firing")
    assert (alert["labels"]["from"], alert["labels"]["to"]) == (
        "expressroute/ams-1",
        "internet/ams-inet",
    )
    for path in (er(), er()):
        seq += 1
        await c.post(simple("br-1", seq, path))
    assert await alerts(c, "ErpathRouteFlip", "firing") == []
    assert len(await alerts(c, "ErpathRouteFlip", "resolved")) == 2


async def test_flip_alert_resolves_after_the_hold_time(start_collector):
    c = await start_collector(alerts={"flip_hold_s": 0.3})
    for seq, path in enumerate([er(), inet(), inet()], start=1):
        await c.post(simple("br-1", seq, path))
    assert len(await alerts(c, "ErpathRouteFlip", "firing")) == 1
    await eventually(lambda: alerts(c, "ErpathRouteFlip", "resolved"), 5)
    # The chain ended with its alert: the next flip tells its own story from internet,
    # and a return to ExpressRoute is a new flip, not the end of the old chain.
    (path,) = (await c.get(f"{API}/paths"))["paths"]
    assert path["flip_origin"] is None
    for seq in (4, 5):
        await c.post(simple("br-1", seq, er()))
    (alert,) = await alerts(c, "ErpathRouteFlip", "firing")
    assert (alert["labels"]["from"], alert["labels"]["to"]) == (
        "internet/ams-inet",
        "expressroute/ams-1",
    )
    assert alert["labels"]["severity"] == "warning"


async def test_dns_driven_flip_is_labelled(start_collector):
    c = await start_collector()
    await c.post(simple("br-1", 1, er(), address="198.51.100.20"))
    await c.post(simple("br-1", 2, inet(), address="198.18.7.7"))
    await c.post(simple("br-1", 3, inet(), address="198.18.7.7"))
    (flip,) = (await c.get(f"{API}/events", kind="route_flip"))["events"]
    assert flip["driver"] == "dns" and "DNS-driven" in flip["summary"]


async def test_ecmp_churn_is_a_path_change_never_an_alert(start_collector):
    c = await start_collector()
    await c.post(simple("br-1", 1, er(), asns=(65001, 12076, 8075)))
    await c.post(simple("br-1", 2, er(), asns=(65001, 12076, 8068, 8075)))
    (change,) = (await c.get(f"{API}/events"))["events"]
    assert change["kind"] == "path_change" and change["severity"] == "info"
    assert await alerts(c) == []


async def test_unexpected_path_fires_while_it_differs(start_collector):
    c = await start_collector()
    await c.post(simple("br-1", 1, inet(), expected="expressroute"))
    (alert,) = await alerts(c, "ErpathUnexpectedPath", "firing")
    assert alert["labels"]["expected"] == "expressroute" and alert["labels"]["target"] == T
    await c.post(simple("br-1", 2, er(), expected="expressroute"))
    await c.post(simple("br-1", 3, er(), expected="expressroute"))
    assert await alerts(c, "ErpathUnexpectedPath", "firing") == []
    assert (
        c.registry.get_sample_value(
            "erpath_path_expected", {"agent": "br-1", "site": "ams", "target": T, "family": "4"}
        )
        == 1
    )


async def test_reported_asymmetry_is_one_alert_per_site_and_circuit(start_collector):
    c = await start_collector()
    for agent in ("br-1", "br-2"):
        doc = report(
            agent,
            1,
            [
                result(T, inet(), findings=[finding()]),
                result("make.powerapps.com", inet(), findings=[finding()]),
            ],
        )
        assert (await c.post(doc)).status == 201
    (alert,) = await eventually(lambda: alerts(c, "ErpathPathAsymmetric", "firing"))
    assert alert["labels"] == {
        "alertname": "ErpathPathAsymmetric",
        "site": "ams",
        "circuit": "ams-1",
        "severity": "critical",
    }
    assert "4 agent/target pair(s)" in alert["annotations"]["summary"]
    assert alert["annotations"]["evidence"].count("NAT 192.0.2.10") == 4
    assert (
        c.registry.get_sample_value(
            "erpath_path_asymmetric", {"site": "ams", "circuit": "ams-1", "kind": "reported"}
        )
        == 1
    )
    # The findings disappear from both agents' next reports: the alert resolves.
    for agent in ("br-1", "br-2"):
        await c.post(report(agent, 2, [result(T, inet()), result("make.powerapps.com", inet())]))
    await eventually(lambda: alerts(c, "ErpathPathAsymmetric", "resolved"))
    kinds = [e["kind"] for e in (await c.get(f"{API}/events", site="ams"))["events"]]
    assert "asymmetry" in kinds and "asymmetry_cleared" in kinds


async def test_measured_reverse_path_pairs_with_the_sites_forward_path(start_collector):
    c = await start_collector()
    # Forward: the branch leaves via the internet edge (NAT 192.0.2.10) ...
    facts = {
        **SITE_FACTS,
        "circuits": [
            {
                **SITE_FACTS["circuits"][0],
                "advertised_prefixes": ["198.51.100.0/28", "192.0.2.10/32"],
            }
        ],
    }
    await c.post(simple("br-1", 1, inet(), facts=facts))
    # ... and an azure-side agent's trace back to that NAT address comes in over the circuit.
    rev = result("192.0.2.10", er(), address="192.0.2.10", role="reverse")
    await c.post(report("az-1", 1, [rev], site="azure-weu", role="azure-side", facts={}))
    (alert,) = await eventually(lambda: alerts(c, "ErpathPathAsymmetric", "firing"))
    assert alert["labels"]["site"] == "ams" and alert["labels"]["circuit"] == "ams-1"
    ev = alert["annotations"]["evidence"]
    assert "forward br-1 -> api.powerapps.com: internet via ams-inet" in ev
    assert "reverse az-1 -> 192.0.2.10: expressroute/ams-1" in ev
    assert (
        c.registry.get_sample_value(
            "erpath_path_asymmetric", {"site": "ams", "circuit": "ams-1", "kind": "measured"}
        )
        == 1
    )


async def test_silent_agent_is_an_event_in_the_api_and_metrics(start_collector):
    c = await start_collector()
    await c.post(simple("br-1", 1, er(), interval_s=0.2))

    async def silent():
        return (await c.get(f"{API}/agents"))["agents"][0]["silent"]

    await eventually(silent, 5)
    (ev,) = (await c.get(f"{API}/events", kind="agent_silent"))["events"]
    assert ev["agent"] == "br-1"
    assert (
        c.registry.get_sample_value(
            "erpath_agent_silent", {"agent": "br-1", "site": "ams", "role": "branch"}
        )
        == 1
    )
    await c.post(simple("br-1", 2, er(), interval_s=30))
    assert not await silent()
    assert (await c.get(f"{API}/events", kind="agent_recovered"))["events"]


async def test_events_filters(start_collector):
    c = await start_collector()
    for agent in ("br-1", "br-2"):
        for seq, path in enumerate([er(), inet(), inet()], start=1):
            await c.post(simple(agent, seq, path))
    assert len((await c.get(f"{API}/events", agent="br-1", kind="route_flip"))["events"]) == 1
    assert len((await c.get(f"{API}/events", site="ams", kind="route_flip"))["events"]) == 2
    assert len((await c.get(f"{API}/events", target="nope"))["events"]) == 0
    assert len((await c.get(f"{API}/events", since="2000-01-01T00:00:00Z", limit=1))["events"]) == 1
    assert (await c.get(f"{API}/events", until="2000-01-01T00:00:00Z"))["events"] == []


async def test_restart_keeps_paths_events_and_active_alerts(start_collector, tmp_path):
    cfg = make_config(tmp_path)
    c = await start_collector(cfg)
    for seq, path in enumerate([er(), inet(), inet()], start=1):
        await c.post(simple("br-1", seq, path))
    before = [await c.get(f"{API}/{what}") for what in ("paths", "events", "alerts")]
    await c.client.close()

    c2 = await start_collector(cfg)
    after = [await c2.get(f"{API}/{what}") for what in ("paths", "events", "alerts")]
    assert after[0] == before[0] and after[1] == before[1]
    assert [a["fingerprint"] for a in after[2]["alerts"]] == [
        a["fingerprint"] for a in before[2]["alerts"]
    ]
    assert after[2]["alerts"][0]["state"] == "firing"
    # The old token still works, the seq order still holds, the flip counter survived.
    c2.tokens = c.tokens
    resp = await c2.post(simple("br-1", 0, er()))
    assert (await resp.json())["applied"] is False
    assert (
        c2.registry.get_sample_value(
            "erpath_route_flips_total", {"agent": "br-1", "site": "ams", "target": T, "family": "4"}
        )
        == 1
    )


async def test_evaluate_now_is_idempotent(start_collector):
    c = await start_collector(detection={"evaluate_interval_s": 3600})
    await c.post(simple("br-1", 1, er()))
    first = await evaluate_now(c.app)
    second = await evaluate_now(c.app)
    assert first.events == second.events == 0 and not second.alerts_changed


def test_config_defaults_are_the_issue_defaults():
    cfg = from_dict({})
    assert cfg.detection.flip_confirm_reports == 2
    assert cfg.detection.silent_after_intervals == 3
    assert cfg.alerts.flip_hold_s == 3600
    assert cfg.store.observations_retention_days == 14 and cfg.store.events_retention_days == 90
