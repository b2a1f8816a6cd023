"""The IP VPN design (scenario er-ipvpn) is what it says, proven with Debian's tools.

The planning guide's alternative to a WAN into the datacenter's own circuit:
branch and datacenter on one IP VPN, the provider connecting to Microsoft at
an ExpressRoute location (its layer-3, any-to-any model).  A trace from the
branch crosses the provider's routers (PE, P, PE; AS64504), then the MSEE at
the second address of circuit ams-vpn-3's primary /30, whose first address
sits on the provider's PE, not on a router of the customer's.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from agent.config import load
from tests.lab import Lab, agentconfig, pathsim, plan, scenarios

from .tools import dig, flow_links, tcp_connect, traceroute

SERVICE = "198.19.16.10"  # make.powerapps.com
CDN = "198.19.128.10"  # content.powerapps.com (Front Door)
CIRCUIT = plan.circuit("ams-vpn-3")
PRIMARY = plan.LINKS_BY_KEY[CIRCUIT.primary_link]
SECONDARY = plan.LINKS_BY_KEY[CIRCUIT.secondary_link]
PROVIDER = ("pe1", "p1", "pe2")
# The customer's own routers: none of them may hold a peering address of circuit 3.
CUSTOMER_ROUTERS = ("wan", "dccore", "ce1", "ce2", "inet")
# Flows no other test uses, below the kernel's ephemeral range (32768-60999):
# no socket of another connection can hold one of these ports.
SPORTS = range(31000, 31006)


def _flat(hops: list[frozenset[str]]) -> list[str | None]:
    return [next(iter(h)) if h else None for h in hops]


def _in(address: str, prefix: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(prefix)


# --------------------------------------------------------------------------- the plan (no root)


def test_provider_pe_holds_the_customer_side_of_the_peering_30s() -> None:
    assert CIRCUIT.ce == "pe2" and CIRCUIT.provider
    for link in (PRIMARY, SECONDARY):
        net = ipaddress.ip_network(link.subnet)
        assert net.prefixlen == 30
        assert link.address("pe2") == str(net[1])  # the provider's PE: first usable
        assert link.peer("pe2") in ("msee1p", "msee1s")
        assert link.address(link.peer("pe2")) == str(net[2])  # the MSEE: second
        net6 = ipaddress.ip_network(link.subnet6)
        assert net6.prefixlen == 126 and net6.subnet_of(ipaddress.ip_network(plan.PEERING_BLOCK6))
    for node in PROVIDER:
        assert all(
            _in(a, plan.IPVPN_PROVIDER_BLOCK) or _in(a, "192.0.2.0/24")
            for a in [link.address(node) for link in plan.links_of(node)]
        ), node
    # Circuit 3's NAT pool is its own (unique per circuit) and holds both sites' addresses.
    pools = [ipaddress.ip_network(c.nat_pool) for c in plan.ALL_CIRCUITS]
    assert all(not a.overlaps(b) for i, a in enumerate(pools) for b in pools[i + 1 :])
    assert all(_in(a, CIRCUIT.nat_pool) for a in CIRCUIT.nat_addresses.values())
    assert set(CIRCUIT.nat_addresses.values()) <= set(plan.node("pe2").loopbacks)


def test_truth_branch_crosses_the_provider_then_the_msee() -> None:
    hops = pathsim.expected_hops("er-ipvpn", "branch", SERVICE)
    owners = [plan.owner_of(h) for h in hops]
    assert owners == ["wan", "pe1", "p1", "pe2", "msee1p", "mscore", "svc"], hops
    assert hops[4] == PRIMARY.address("msee1p") == "192.0.2.18"
    # The datacenter is on the same VPN: its PE, then the MSEE.
    owners = [plan.owner_of(h) for h in pathsim.expected_hops("er-ipvpn", "dchost", SERVICE)]
    assert owners == ["dccore", "pe2", "msee1p", "mscore", "svc"]
    # Content goes across the VPN to the datacenter's internet edge.
    assert "10.255.3.2" in pathsim.expected_hops("er-ipvpn", "branch", CDN, ecmp=False)


def test_site_facts_of_the_design_load_and_match_the_plan(tmp_path: Path) -> None:
    s = scenarios.get("er-ipvpn")
    for node in ("branch", "dchost", "dccore"):
        c = load(agentconfig.write_config(node, s.name, tmp_path))
        (mine,) = c.circuits
        assert (mine.name, mine.location, mine.sku) == ("ams-vpn-3", "Amsterdam", "standard")
        assert (mine.primary_subnet, mine.secondary_subnet) == (PRIMARY.subnet, SECONDARY.subnet)
        assert mine.advertised_prefixes == s.advertised["ams-vpn-3"] == (CIRCUIT.nat_pool,)
        assert mine.links == s.link_mode.get("ams-vpn-3", "active-standby")
        # The customer owns no router on the circuit: no CE address to list.
        assert mine.ce_addresses == ()
        assert c.site.prefer == s.prefer == ("ams-vpn-3", "internet")
        (edge,) = c.internet_edges
        assert edge.nat_addresses == tuple(sorted(set(plan.INTERNET_NAT_ADDRESSES.values())))
        assert not any(_in(a, CIRCUIT.nat_pool) for a in edge.nat_addresses)


# --------------------------------------------------------------------------- real packets


@pytest.fixture
def ipvpn(lab: Lab, lab_scenario) -> Lab:
    """The IP VPN design with ICMP rate limits off: hop lists are compared."""
    lab.set_rate_limit(False)
    return lab_scenario("er-ipvpn")


@pytest.mark.lab
def test_traceroute_shows_the_provider_hops_then_the_msee(ipvpn: Lab) -> None:
    env = ipvpn.env()
    assert [c["name"] for c in env["circuits"]] == ["ams-vpn-3"]
    assert env["circuits"][0]["provider"] and env["prefer"] == ["ams-vpn-3", "internet"]
    got = _flat(traceroute(ipvpn, "branch", SERVICE))
    assert got == ipvpn.expected_hops(None, "branch", SERVICE)
    msee = got.index(PRIMARY.address("msee1p"))
    # Before the MSEE: the provider's routers, each AS64504 in the Cymru zone
    # (the MSEE is AS12076) and named by the provider.
    for hop in got[1:msee]:
        assert _in(hop, plan.IPVPN_PROVIDER_BLOCK) and plan.owner_of(hop) in PROVIDER, got
        reversed_ip = ".".join(reversed(hop.split(".")))
        txt = dig(
            ipvpn, "branch", plan.DNS_PUBLIC, "+short", "TXT", f"{reversed_ip}.origin.asn.cymru.com"
        )
        assert txt.startswith('"64504 |'), (hop, txt)
        ptr = dig(ipvpn, "branch", plan.DNS_PUBLIC, "+short", "-x", hop).strip()
        assert ptr.endswith(".ipvpn.example.net."), (hop, ptr)
    reversed_msee = ".".join(reversed(got[msee].split(".")))
    txt = dig(
        ipvpn, "branch", plan.DNS_PUBLIC, "+short", "TXT", f"{reversed_msee}.origin.asn.cymru.com"
    )
    assert txt.startswith('"12076 |'), txt
    assert tcp_connect(ipvpn, "branch", SERVICE) == "open"


@pytest.mark.lab
def test_the_peering_30s_customer_side_is_on_the_providers_pe(ipvpn: Lab) -> None:
    def addresses(node: str) -> set[str]:
        out = json.loads(ipvpn.run(node, ["ip", "-j", "-4", "addr", "show"]).stdout)
        return {a["local"] for i in out for a in i.get("addr_info", [])}

    customer_side = {PRIMARY.address("pe2"), SECONDARY.address("pe2")}
    assert customer_side <= addresses("pe2")
    for node in CUSTOMER_ROUTERS:
        mine = addresses(node)
        assert not any(_in(a, PRIMARY.subnet) or _in(a, SECONDARY.subnet) for a in mine), node
    # Flows from the branch leave the PE on the primary link and come back on
    # it (active-standby): the PE is where the circuit begins.
    with flow_links(ipvpn, "pe2", ("msee1p", "msee1s"), SPORTS) as links:
        for sport in SPORTS:
            assert tcp_connect(ipvpn, "branch", SERVICE, sport=sport) == "open", sport
        for sport in SPORTS:
            assert links(sport) == ({"msee1p"}, {"msee1p"}), sport


@pytest.mark.lab
def test_the_datacenter_and_the_content_path(ipvpn: Lab) -> None:
    got = _flat(traceroute(ipvpn, "dchost", SERVICE))
    assert got == ipvpn.expected_hops(None, "dchost", SERVICE)
    assert [plan.owner_of(h) for h in got[:3]] == ["dccore", "pe2", "msee1p"]
    # Content: across the VPN to the datacenter's internet edge, never the circuit.
    with ipvpn.options(ecmp=False):
        got = traceroute(ipvpn, "branch", CDN)
        assert _flat(got) == ipvpn.expected_hops(None, "branch", CDN)
    assert "10.255.3.2" in _flat(got) and PRIMARY.address("msee1p") not in _flat(got)
    assert tcp_connect(ipvpn, "branch", CDN) == "open"


@pytest.mark.lab
def test_microsoft_returns_to_the_pool_over_the_providers_circuit(ipvpn: Lab) -> None:
    """From the azure side, the branch's NAT address is behind an MSEE and the PE."""
    nat = CIRCUIT.nat_addresses["branch"]
    got = _flat(traceroute(ipvpn, "azure", nat))
    assert got == ipvpn.expected_hops(None, "azure", nat)
    assert plan.owner_of(got[-2]) == "msee1p" and got[-1] == nat
