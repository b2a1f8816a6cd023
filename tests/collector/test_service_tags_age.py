"""What each agent runs with (issue 16 item 4): its circuits' route filters, its service
tags' changeNumber and age, in GET /api/v1/agents and as metrics."""

from __future__ import annotations

import copy
import time

from prometheus_client import CollectorRegistry

from collector.app import create_app

from .conftest import API, Collector, make_config
from .reports import SITE_FACTS, er, simple

DAY_S = 86400.0


def with_tags(doc: dict, change_number: int, age_s: float) -> dict:
    doc["health"] |= {"service_tags_change_number": change_number, "service_tags_age_s": age_s}
    return doc


async def test_agents_show_route_filters_and_service_tags_age(aiohttp_client, tmp_path):
    now = [time.time()]
    registry = CollectorRegistry()
    app = create_app(make_config(tmp_path), registry=registry, clock=lambda: now[0])
    c = Collector(await aiohttp_client(app), registry)
    facts = copy.deepcopy(SITE_FACTS)
    facts["circuits"][0] |= {
        "route_filter": "rf-ams",
        "route_filter_communities": ["12076:5010", "12076:5040"],
    }
    resp = await c.post(with_tags(simple("br-1", 1, er(), facts=facts), 391, 15 * DAY_S))
    assert resp.status == 201, await resp.text()
    await c.post(simple("br-2", 1, er()))  # an agent without service tags

    a1, a2 = (await c.get(f"{API}/agents"))["agents"]
    assert a1["circuits"] == [
        {
            "name": "ams-1",
            "route_filter": "rf-ams",
            "route_filter_communities": ["12076:5010", "12076:5040"],
        }
    ]
    tags = a1["service_tags"]
    assert tags["change_number"] == 391 and tags["installed"].endswith("Z")
    assert 15 * DAY_S - 60 < tags["age_s"] < 15 * DAY_S + 60
    assert a2["service_tags"] == {"change_number": None, "installed": None, "age_s": None}
    assert a2["circuits"][0]["route_filter"] is None

    labels = {"agent": "br-1", "site": "ams"}
    assert registry.get_sample_value("erpath_agent_service_tags_change_number", labels) == 391
    age = registry.get_sample_value("erpath_agent_service_tags_age_seconds", labels)
    assert 15 * DAY_S - 60 < age < 15 * DAY_S + 60
    assert (
        registry.get_sample_value(
            "erpath_agent_service_tags_age_seconds", {"agent": "br-2", "site": "ams"}
        )
        is None
    )

    # A newer file installed a minute before the next report: the age starts again.
    now[0] += 30
    await c.post(with_tags(simple("br-1", 2, er(), facts=facts), 392, 60.0))
    assert registry.get_sample_value("erpath_agent_service_tags_change_number", labels) == 392
    assert registry.get_sample_value("erpath_agent_service_tags_age_seconds", labels) < 120


async def test_per_site_aggregates_show_the_oldest_tags(start_collector):
    c = await start_collector(metrics={"per_site_aggregates": True})
    await c.post(with_tags(simple("br-1", 1, er()), 391, 20 * DAY_S))
    await c.post(with_tags(simple("br-2", 1, er()), 400, 1 * DAY_S))
    site = {"site": "ams"}
    assert c.registry.get_sample_value("erpath_agent_service_tags_change_number", site) == 391
    assert c.registry.get_sample_value("erpath_agent_service_tags_age_seconds", site) > 19 * DAY_S
