"""Verdicts and findings for IPv6 results: /126 MSEE hops, un-NATed sources, per-family NAT.

A dual-stack site: circuit ams-1 with IPv4 /30s and IPv6 /126s
(2001:db8:0:1::/126 primary, 2001:db8:0:1::4/126 secondary) advertising the
site's IPv6 prefix 2001:db8:100::/48 and the IPv4 NAT pool 192.0.2.0/25;
internet edge ams-inet NATs IPv4 to 192.0.2.10 (inside the pool: the guide's
asymmetric NAT) and lets IPv6 out un-NATed.  Microsoft in 2001:db8:ff::/48
(AS8075).
"""

from __future__ import annotations

from dataclasses import replace

from agent.report import (
    Circuit,
    DnsResult,
    InternetEdge,
    Result,
    RouteResult,
    SiteFacts,
    TcpResult,
)
from agent.verdict import classify as classifier
from agent.verdict.findings import find, site_findings
from tests.agent.verdict.test_classify import trace

MS, ISP = 8075, 64500
AMS1 = Circuit(
    name="ams-1",
    location="Amsterdam",
    sku="standard",
    primary_subnet="203.0.113.0/30",
    secondary_subnet="203.0.113.4/30",
    primary_subnet_v6="2001:db8:0:1::/126",
    secondary_subnet_v6="2001:db8:0:1::4/126",
    ce_addresses=("10.1.0.1", "2001:db8:10::1"),
    advertised_prefixes=("192.0.2.0/25", "2001:db8:100::/48"),
)
INET = InternetEdge(
    name="ams-inet",
    nat_addresses=("192.0.2.10",),
    hop_addresses=("10.1.0.9", "2001:db8:10::9"),
)
SITE = SiteFacts(circuits=(AMS1,), internet_edges=(INET,))
PP6 = "2001:db8:ff::10"
HOST6 = "2001:db8:100::20"  # the host's own address, inside the advertised /48
OPEN = TcpResult(port=443, state="open", method="connect", connect_s=0.02)
FILTERED = TcpResult(port=443, state="filtered", method="connect", failure="tcp.filtered")


def result(*hops: str | tuple[str, int], route=None, tcp=None) -> Result:
    return Result(
        target="contoso.crm4.dynamics.com",
        role="service",
        port=443,
        address=PP6,
        dns=DnsResult(addresses=("198.18.10.5", PP6)),
        route=route,
        tcp=tcp,
        trace=trace(*hops) if hops else None,
        family="ipv6",
    )


def classify(r: Result, site: SiteFacts, tags=None):
    return classifier.classify(r, site, tags, agent_role="datacenter", expect=None)


ER_V6 = result("2001:db8:10::1", "2001:db8:0:1::2", ("2001:db8:ff::1", MS), (PP6, MS))
ER_V6_SECONDARY = result("2001:db8:10::1", "2001:db8:0:1::6", ("2001:db8:ff::1", MS), (PP6, MS))
INTERNET_V6 = result("2001:db8:10::9", ("2001:db8:aa::1", ISP), ("2001:db8:ff::1", MS), (PP6, MS))


def test_an_msee_hop_inside_a_126_names_circuit_and_link():
    for r, link in ((ER_V6, "primary"), (ER_V6_SECONDARY, "secondary")):
        v = classify(r, SITE, None)
        assert (v.path_class, v.circuit, v.link) == ("expressroute", "ams-1", link)
        msee = next(e for e in v.evidence if e.kind == "msee-hop")
        assert (msee.circuit, msee.link, msee.ttl, msee.address) == (
            "ams-1",
            link,
            2,
            "2001:db8:0:1::2" if link == "primary" else "2001:db8:0:1::6",
        )


def test_a_route_via_the_ipv6_msee_names_circuit_and_link():
    r = result(route=RouteResult(interface="er0", gateway="2001:db8:0:1::6", protocol="bgp"))
    v = classify(r, SITE, None)
    assert (v.path_class, v.circuit, v.link) == ("expressroute", "ams-1", "secondary")
    route = next(e for e in v.evidence if e.kind == "route")
    assert (route.circuit, route.link, route.address, route.name) == (
        "ams-1",
        "secondary",
        "2001:db8:0:1::6",
        "er0",
    )


def test_ipv6_source_advertised_over_the_circuit_leaving_over_the_internet_is_asymmetric():
    r = replace(
        INTERNET_V6,
        route=RouteResult(interface="eth0", gateway="fe80::9", source=HOST6),
        tcp=FILTERED,
    )
    v = classify(r, SITE, None)
    assert (v.path_class, v.egress) == ("internet", "ams-inet")
    (f,) = [f for f in find(r, v, SITE) if f.kind == "asymmetric-nat"]
    assert (f.severity, f.circuit, f.asymmetry, f.predicted_only) == (
        "critical",
        "ams-1",
        True,
        False,
    )
    path, advert, back = f.evidence
    assert (path.kind, path.name, path.egress) == ("path", "internet", "ams-inet")
    assert (advert.kind, advert.circuit, advert.prefix, advert.address) == (
        "advertised",
        "ams-1",
        "2001:db8:100::/48",
        HOST6,
    )
    assert advert.text.startswith("un-NATed source address 2001:db8:100::20 lies in")
    assert (back.kind, back.circuit, back.address) == ("return-path", "ams-1", HOST6)
    assert "2001:db8:100::/48" in (f.fix or "")


def test_ipv6_leaves_without_the_edges_ipv4_nat_address():
    # The edge's IPv4 NAT address is in the advertised pool: an asymmetry for
    # IPv4 flows only.  This IPv6 flow's source lies outside every advertised prefix.
    r = replace(
        INTERNET_V6,
        route=RouteResult(interface="eth0", gateway="fe80::9", source="2001:db8:300::5"),
    )
    v = classify(r, SITE, None)
    assert [f.kind for f in find(r, v, SITE)] == []
    v4 = replace(
        r,
        address="198.18.10.5",
        family="ipv4",
        route=None,
        trace=trace("10.1.0.9", ("198.18.100.1", ISP), ("198.18.10.5", MS)),
    )
    v4_verdict = classify(v4, SITE, None)
    (f,) = [f for f in find(v4, v4_verdict, SITE) if f.kind == "asymmetric-nat"]
    assert f.evidence[1].address == "192.0.2.10"


def test_an_edge_ipv6_source_prefix_advertised_over_a_circuit():
    edge = replace(
        INET, nat_addresses=("198.51.100.10",), source_prefixes_v6=("2001:db8:100::/56",)
    )
    site = SiteFacts(circuits=(AMS1,), internet_edges=(edge,))
    (f,) = site_findings(site)
    assert (f.kind, f.severity, f.circuit) == ("nat-pool-on-internet", "warning", "ams-1")
    own, advert, _why = f.evidence
    assert (own.kind, own.egress, own.prefix) == ("nat", "ams-inet", "2001:db8:100::/56")
    assert (advert.kind, advert.circuit, advert.prefix, advert.name) == (
        "advertised",
        "ams-1",
        "2001:db8:100::/48",
        "2001:db8:100::/56",
    )
    # results over that circuit carry it (they break when it fails over), results elsewhere do not
    v = classify(replace(ER_V6, tcp=OPEN), site, None)
    assert [x.kind for x in find(ER_V6, v, site)] == ["nat-pool-on-internet"]
    clean = replace(edge, source_prefixes_v6=("2001:db8:200::/48",))
    assert site_findings(SiteFacts(circuits=(AMS1,), internet_edges=(clean,))) == ()


def test_an_edge_prefix_covering_two_advertised_prefixes_is_one_finding_per_circuit():
    """A /48 at the edge over two /52s a circuit advertises: one finding naming both /52s."""
    halves = ("2001:db8:100::/52", "2001:db8:100:1000::/52")
    ams = replace(AMS1, advertised_prefixes=("192.0.2.0/25", *halves))
    dub = replace(
        AMS1,
        name="dub-2",
        location="Dublin",
        primary_subnet="203.0.113.8/30",
        secondary_subnet="203.0.113.12/30",
        primary_subnet_v6="2001:db8:0:2::/126",
        secondary_subnet_v6="2001:db8:0:2::4/126",
        advertised_prefixes=(halves[1],),
    )
    edge = replace(
        INET, nat_addresses=("198.51.100.10",), source_prefixes_v6=("2001:db8:100::/48",)
    )
    site = SiteFacts(circuits=(ams, dub), internet_edges=(edge,))
    found = site_findings(site)
    assert [(f.kind, f.circuit) for f in found] == [
        ("nat-pool-on-internet", "ams-1"),
        ("nat-pool-on-internet", "dub-2"),
    ]
    on_ams = found[0]
    adverts = [e for e in on_ams.evidence if e.kind == "advertised"]
    assert [(e.circuit, e.prefix, e.name) for e in adverts] == [
        ("ams-1", halves[0], "2001:db8:100::/48"),
        ("ams-1", halves[1], "2001:db8:100::/48"),
    ]
    assert halves[0] in on_ams.fix and halves[1] in on_ams.fix
    # A result over ams-1 carries ams-1's finding once (dub-2 advertising a
    # /52 of ams-1 is another finding, asymmetric-circuit).
    v = classify(replace(ER_V6, tcp=OPEN), site, None)
    found = find(ER_V6, v, site)
    assert [x.circuit for x in found if x.kind == "nat-pool-on-internet"] == ["ams-1"]


def test_results_carry_the_nat_pool_findings_of_their_own_family():
    """Over the circuit, an IPv4 result gets the IPv4 NAT pool finding, an IPv6 one the IPv6 prefix's."""
    edge = replace(
        INET, source_prefixes_v6=("2001:db8:100::/56",)
    )  # NAT 192.0.2.10 in the pool too
    site = SiteFacts(circuits=(AMS1,), internet_edges=(edge,))
    v6 = replace(ER_V6, tcp=OPEN)
    (f6,) = [f for f in find(v6, classify(v6, site), site) if f.kind == "nat-pool-on-internet"]
    assert f6.evidence[0].prefix == "2001:db8:100::/56"
    v4 = replace(
        ER_V6,
        address="198.18.10.5",
        family="ipv4",
        tcp=OPEN,
        trace=trace("10.1.0.1", "203.0.113.2", ("198.18.10.1", MS), ("198.18.10.5", MS)),
    )
    v4_verdict = classify(v4, site)
    assert (v4_verdict.path_class, v4_verdict.circuit) == ("expressroute", "ams-1")
    (f4,) = [f for f in find(v4, v4_verdict, site) if f.kind == "nat-pool-on-internet"]
    assert f4.evidence[0].address == "192.0.2.10"


def test_an_ipv6_flow_leaving_the_internet_edge_names_no_ipv4_nat_address():
    v = classify(replace(INTERNET_V6, tcp=OPEN), SITE)
    (edge,) = [e for e in v.evidence if e.kind == "edge-hop"]
    assert (edge.egress, edge.address) == ("ams-inet", "2001:db8:10::9")
    assert "192.0.2.10" not in edge.text and "NAT" not in edge.text
