"""`erpath-agent probe once` on the IP VPN design (scenario er-ipvpn), real packets.

Branch and datacenter sit on one IP VPN; the provider's PE at the
ExpressRoute location holds circuit ams-vpn-3 (the guide's "have the IP VPN
service provider connect to Microsoft at an ExpressRoute location").  The
sites' facts list the circuit's /30s and NAT pool but no CE address: the
traces cross the provider's routers (AS64504), then the MSEE.  ICMP rate
limits stay on, as on real routers, except where hops are compared with
Debian's traceroute.
"""

from __future__ import annotations

import pytest

# The cycle lab tests' helpers: probe once with the scenario's config, read the report.
from tests.agent import test_cycle_lab as cycle
from tests.lab import plan

pytestmark = pytest.mark.lab

SCENARIO = "er-ipvpn"
SERVICE = "make.powerapps.com"
CDN = "content.powerapps.com"
CIRCUIT = plan.circuit("ams-vpn-3")
MSEE_PRIMARY = plan.LINKS_BY_KEY[CIRCUIT.primary_link].address("msee1p")
ASYMMETRY = {"asymmetric-nat", "asymmetric-circuit", "handshake-blackhole"}


def _expected(role: str) -> str:
    return "cdn" if role == "cdn" else "expressroute"


@pytest.mark.parametrize("node", ["branch", "dchost"])
def test_service_over_the_providers_circuit_and_content_over_the_internet(lab, lab_scenario, node):
    lab_scenario(SCENARIO)
    rc, doc, _ = cycle.probe_once(lab, node, config=node)
    results = cycle.by_target(doc)
    assert set(results) == {t.name for t in plan.targets()}
    for name, r in results.items():
        role = next(t.role for t in plan.targets() if t.name == name)
        v = r["verdict"]
        assert v["expected"] == _expected(role) and v["matches_expected"] is True, (name, v)
        assert r["tcp"]["state"] == "open", name
        assert not cycle.kinds(r) & ASYMMETRY, (name, r["findings"])
        assert {f["severity"] for f in r["findings"]} <= {"info"}, (name, r["findings"])
        if role == "cdn":
            assert cycle.verdict(r)[0] == "cdn" and cycle.verdict(r)[3] == "ams-inet", (name, v)
            continue
        assert cycle.verdict(r)[:3] == ("expressroute", "ams-vpn-3", "primary"), (name, v)
        # The MSEE hop names the circuit and the link, copied or measured.
        msee = [e for e in v["evidence"] if e["kind"] == "msee-hop"]
        assert msee and all(
            (e["address"], e["circuit"], e["link"]) == (MSEE_PRIMARY, "ams-vpn-3", "primary")
            for e in msee
        ), (name, v["evidence"])
    # The site's failover order is followed: both links' MSEEs answer the
    # direct probe, the traffic is on the first circuit of the order.
    probes = {(p["circuit"], p["link"]): p["answered"] for p in doc["msee_probes"]}
    assert probes == {("ams-vpn-3", "primary"): True, ("ams-vpn-3", "secondary"): True}
    assert rc == 0


def test_a_providers_handover_to_the_msee_is_no_internet_transit(lab, lab_scenario):
    """The hop before the MSEE is the provider's PE (AS64504, on no list of the
    site's): in the layer-3 model that is how every path onto the circuit
    looks, so it must not count against ExpressRoute."""
    lab_scenario(SCENARIO)
    _, doc, _ = cycle.probe_once(lab, "branch", SERVICE, config="branch")
    r = cycle.by_target(doc)[SERVICE]
    assert cycle.verdict(r)[:3] == ("expressroute", "ams-vpn-3", "primary")
    conflicting = [e["text"] for e in r["verdict"]["evidence"] if e["conflicting"]]
    assert conflicting == [], conflicting


def test_hops_equal_debian_traceroute(lab, lab_scenario):
    """With rate limits off, the agent's hops are traceroute -T's, flow for flow:
    the provider's routers, then the MSEE for the service; the datacenter's
    internet edge for content."""
    lab_scenario(SCENARIO)
    with lab.options(rate_limit=False):
        _, doc, _ = cycle.probe_once(lab, "branch", SERVICE, CDN, config="branch")
        for r in doc["results"]:
            theirs, output = cycle.debian_traceroute(lab, "branch", r)
            assert cycle.first_replies(r) == theirs, (r["target"], output)
    hops = cycle.first_replies(cycle.by_target(doc)[SERVICE])
    assert [plan.owner_of(h) for h in hops] == [
        "wan",
        "pe1",
        "p1",
        "pe2",
        "msee1p",
        "mscore",
        "svc",
    ]


def test_reverse_traces_come_back_over_the_providers_circuit(lab, lab_scenario):
    """From the azure side each site's NAT address of the circuit is behind the
    MSEE (the pool sits on the provider's PE); the internet NAT addresses are not."""
    lab_scenario(SCENARIO)
    _, doc, _ = cycle.probe_once(lab, "azure", config="azure")
    got = {name: cycle.verdict(r)[:2] for name, r in cycle.by_target(doc).items()}
    assert got == {
        "branch-nat-ams-vpn-3": ("expressroute", "ams-vpn-3"),
        "dc-nat-ams-vpn-3": ("expressroute", "ams-vpn-3"),
        "branch-nat-inet": ("internet", None),
        "dc-nat-inet": ("internet", None),
    }
    assert all(r["verdict"]["matches_expected"] for r in doc["results"])
