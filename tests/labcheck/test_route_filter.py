"""Route filters in the lab, proven with traceroute -T -p 443 -n and plain TCP connects.

A route filter without the Power Platform North Europe community: its prefix
is not advertised over ExpressRoute, so it leaves via the internet edge while
West Europe stays on the circuit; with the community added it takes the MSEE.
"""

from __future__ import annotations

import json

import pytest

from tests.lab import Lab, routefilter

from .tools import tcp_connect, traceroute

pytestmark = pytest.mark.lab

NORTH_EUROPE = routefilter.NORTH_EUROPE_ADDRESS
WEST_EUROPE = "198.19.16.10"  # make.powerapps.com, in the community the filter allows


@pytest.fixture
def switch(lab: Lab, lab_scenario):
    """Switch scenario with ICMP rate limiting off (every hop answers)."""
    lab.set_rate_limit(False)
    return lab_scenario


def _seen(lab: Lab, dst: str) -> set[str]:
    return set().union(*traceroute(lab, "branch", dst))


def _edges(lab: Lab) -> tuple[set[str], set[str]]:
    """(the internet edge's hop addresses, the circuit 1 MSEEs)."""
    env = lab.env()
    edge = set(env["internet_edges"][0]["hop_addresses"])
    c = next(c for c in env["circuits"] if c["name"] == "ams-er-1")
    return edge, set(c["msee_addresses"].values())


def test_missing_community_leaves_via_the_internet_edge(switch, lab: Lab) -> None:
    lab_ = switch("route-filter-missing")
    edge, msee = _edges(lab_)
    seen = _seen(lab_, NORTH_EUROPE)
    assert seen & edge, seen
    assert not seen & msee, seen
    assert NORTH_EUROPE in seen
    assert tcp_connect(lab_, "branch", NORTH_EUROPE) == "open"
    # The communities the filter allows still come over the circuit.
    seen = _seen(lab_, WEST_EUROPE)
    assert seen & msee and not seen & edge, seen


def test_community_added_takes_the_msee(switch, lab: Lab) -> None:
    lab_ = switch("route-filter-fixed")
    edge, msee = _edges(lab_)
    seen = _seen(lab_, NORTH_EUROPE)
    assert seen & msee, seen
    assert not seen & edge, seen
    assert tcp_connect(lab_, "branch", NORTH_EUROPE) == "open"


def test_committed_communities_file_matches_the_plan() -> None:
    assert json.loads(routefilter.FILE.read_text()) == routefilter.document(), (
        'regenerate: python -c "from tests.lab import routefilter; routefilter.write()"'
    )
