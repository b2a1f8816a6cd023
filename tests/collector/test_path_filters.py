"""GET /api/v1/paths?family=: only one address family's paths (issue 15), on both
backends, through the cursor pages; any other value is a 400 naming the parameter."""

from __future__ import annotations

import pytest

from .conftest import API, Collector
from .reports import er, inet, report, result
from .test_families import T, v4, v6

pytestmark = pytest.mark.both_backends

PROBLEM = "application/problem+json"
OTHER = "make.powerapps.com"  # measured over IPv4 only


async def _fleet(c: Collector) -> None:
    """Three agents on two sites: T dual-stack everywhere, OTHER over IPv4 at br-2."""
    await c.post(report("br-1", 1, [v4(er()), v6(inet())]))
    await c.post(report("br-2", 1, [v4(er()), v6(er()), result(OTHER, inet())]))
    await c.post(report("dc-1", 1, [v4(inet()), v6(inet())], site="fra"))


def _keys(paths: list[dict]) -> list[tuple[str, str, int]]:
    return [(p["agent"], p["target"], p["family"]) for p in paths]


async def test_family_keeps_one_address_family_and_combines_with_the_other_filters(
    start_collector,
):
    c = await start_collector()
    await _fleet(c)
    every = (await c.get(f"{API}/paths"))["paths"]
    assert len(every) == 7
    six = (await c.get(f"{API}/paths", family="6"))["paths"]
    assert _keys(six) == [("br-1", T, 6), ("br-2", T, 6), ("dc-1", T, 6)]
    assert [p["path"] for p in six] == [
        "internet/ams-inet",
        "expressroute/ams-1",
        "internet/ams-inet",
    ]
    four = (await c.get(f"{API}/paths", family="4"))["paths"]
    assert _keys(four) == [("br-1", T, 4), ("br-2", T, 4), ("br-2", OTHER, 4), ("dc-1", T, 4)]
    # The two families are every path, each once.
    assert sorted(_keys(six + four)) == sorted(_keys(every))
    assert _keys((await c.get(f"{API}/paths", family="6", site="ams"))["paths"]) == [
        ("br-1", T, 6),
        ("br-2", T, 6),
    ]
    assert _keys((await c.get(f"{API}/paths", family="4", agent="br-2"))["paths"]) == [
        ("br-2", T, 4),
        ("br-2", OTHER, 4),
    ]
    assert (await c.get(f"{API}/paths", family="6", target=OTHER))["paths"] == []


async def test_family_pages_with_the_cursor(start_collector):
    c = await start_collector()
    await _fleet(c)
    for family, expected in (("6", 3), ("4", 4)):
        seen, cursor = [], None
        while True:
            params = {"family": family, "limit": "1"}
            if cursor is not None:
                params["cursor"] = cursor
            page = await c.get(f"{API}/paths", **params)
            assert len(page["paths"]) <= 1
            seen += page["paths"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == expected
        assert {p["family"] for p in seen} == {int(family)}
        assert _keys(seen) == _keys((await c.get(f"{API}/paths", family=family))["paths"])
    # Two to a page: the last page of IPv4 paths is full and says so (no empty page after).
    first = await c.get(f"{API}/paths", family="4", limit="2")
    second = await c.get(f"{API}/paths", family="4", limit="2", cursor=first["next_cursor"])
    assert second["next_cursor"] is None
    assert _keys(first["paths"] + second["paths"]) == _keys(
        (await c.get(f"{API}/paths", family="4"))["paths"]
    )


async def test_any_other_family_is_a_400_naming_the_parameter_and_the_values(start_collector):
    c = await start_collector()
    await _fleet(c)
    for value in ("ipv6", "IPv4", "v6", "06", "6.0", "5", "0", "", " 6", "4,6"):
        resp = await c.client.get(f"{API}/paths", params={"family": value})
        assert resp.status == 400 and resp.content_type == PROBLEM, value
        doc = await resp.json()
        assert doc["errors"] == [
            {"field": "query/family", "message": "must be 4 (IPv4) or 6 (IPv6)"}
        ], value
        assert doc["detail"] == f"family={value!r} is not an address family"
