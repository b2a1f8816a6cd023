"""Local asymmetry findings: every kind, when it fires, when it must not, and its fix."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.report import Finding, RouteResult, SiteFacts, TcpResult
from agent.verdict.findings import find, site_findings
from tests.agent.verdict.test_classify import (
    AFD,
    AMS1,
    AMS2,
    BRANCH_GW,
    ER_PRIMARY,
    INET,
    INTERNET,
    ISP,
    MS,
    MS_CORE,
    PP_EUS,
    PP_WE,
    PREMIUM_INTERNET,
    REVERSE_ER,
    SITE,
    TAGS,
    result,
    texts,
    trace,
    verdict_of,
)

# The guide's asymmetric NAT: the internet edge NATs to 192.0.2.10, which is
# inside 192.0.2.0/25, the pool advertised over ams-1.
SHARED_POOL_EDGE = replace(INET, nat_addresses=("192.0.2.10",))
SHARED_POOL_SITE = SiteFacts(circuits=(AMS1, AMS2), internet_edges=(SHARED_POOL_EDGE,))

FILTERED = TcpResult(port=443, state="filtered", method="raw", failure="tcp.filtered")
OPEN = TcpResult(port=443, state="open", method="raw", connect_s=0.02)


def findings_for(r, site=SITE, *, agent_role="branch", **kw) -> tuple[Finding, ...]:
    v = verdict_of(r, site, agent_role=agent_role)
    return find(r, v, site, tags=TAGS, **kw)


def kinds(fs) -> list[str]:
    return [f.kind for f in fs]


def only(fs, kind: str) -> Finding:
    matching = [f for f in fs if f.kind == kind]
    assert len(matching) == 1, fs
    return matching[0]


# --------------------------------------------------------------------------- clean paths


@pytest.mark.parametrize(
    "r", [ER_PRIMARY, replace(ER_PRIMARY, tcp=OPEN), INTERNET], ids=["er", "er-open", "internet"]
)
def test_symmetric_site_has_no_findings(r):
    assert findings_for(r) == ()
    assert site_findings(SITE) == ()


# --------------------------------------------------------------------------- asymmetric-nat


def test_asymmetric_nat_when_leaving_through_an_edge_whose_nat_is_advertised():
    f = only(findings_for(INTERNET, SHARED_POOL_SITE), "asymmetric-nat")
    assert f.severity == "critical"
    assert texts(f) == (
        "the forward path leaves through internet edge ams-inet",
        "NAT address 192.0.2.10 of ams-inet lies in 192.0.2.0/25, advertised over circuit ams-1",
        "Microsoft prefers ExpressRoute for a prefix it learns both ways: replies to 192.0.2.10 "
        "return over ams-1, and a stateful firewall drops them",
    )
    assert f.fix.startswith(
        "advertise 192.0.2.0/25 only to the internet edge, or NAT at the ER edge to a separate pool"
    )
    # the path's own finding, not the static one as well
    assert "nat-pool-on-internet" not in kinds(findings_for(INTERNET, SHARED_POOL_SITE))


def test_asymmetric_nat_with_egress_unseen_but_a_single_edge():
    r = result(hops=trace(BRANCH_GW, ("198.18.100.1", ISP), MS_CORE, (PP_WE, MS)))
    v = verdict_of(r, SHARED_POOL_SITE)
    assert (v.path_class, v.egress) == ("internet", None)
    f = only(find(r, v, SHARED_POOL_SITE), "asymmetric-nat")
    assert "ams-inet is the site's only internet edge" in f.evidence[0].text


def test_no_asymmetric_nat_over_expressroute():
    assert "asymmetric-nat" not in kinds(findings_for(ER_PRIMARY, SHARED_POOL_SITE))


# --------------------------------------------------------------------------- nat-pool-on-internet


def test_nat_pool_on_internet_is_a_site_finding():
    (f,) = site_findings(SHARED_POOL_SITE)
    assert (f.kind, f.severity) == ("nat-pool-on-internet", "warning")
    assert texts(f)[:2] == (
        "internet edge ams-inet uses NAT address 192.0.2.10",
        "192.0.2.10 lies in 192.0.2.0/25, the NAT pool advertised over circuit ams-1",
    )
    assert "give internet edge ams-inet a NAT address outside 192.0.2.0/25" in f.fix


def test_nat_pool_on_internet_attached_to_results_over_that_circuit():
    fs = findings_for(ER_PRIMARY, SHARED_POOL_SITE)
    assert kinds(fs) == ["nat-pool-on-internet"]
    assert fs[0] == site_findings(SHARED_POOL_SITE)[0]
    # a result over the other circuit is not affected by ams-1's pool
    over_ams2 = result(hops=trace(BRANCH_GW, "10.1.0.5", "203.0.113.10", MS_CORE, (PP_WE, MS)))
    assert findings_for(over_ams2, SHARED_POOL_SITE) == ()


# --------------------------------------------------------------------------- asymmetric-circuit


def test_asymmetric_circuit_nat_only_over_the_other_circuit():
    fs = findings_for(ER_PRIMARY, nat_addresses=("192.0.2.130",))  # in ams-2's 192.0.2.128/26
    f = only(fs, "asymmetric-circuit")
    assert f.severity == "critical"
    assert texts(f) == (
        "the forward path goes over circuit ams-1",
        "source / NAT address 192.0.2.130 is advertised only over circuit ams-2 (192.0.2.128/26)",
        "Microsoft returns replies to 192.0.2.130 over ams-2",
    )
    assert "give circuit ams-2 its own, distinct NAT pool" in f.fix


@pytest.mark.parametrize(
    "ams2_prefix, severity, evidence",
    [
        (
            "192.0.2.0/25",
            "warning",
            "advertised over circuit ams-1 and, equally specific, over ams-2",
        ),
        ("192.0.2.0/28", "critical", "more specific than what circuit ams-1 advertises"),
    ],
    ids=["over-both-circuits-equally", "more-specific-elsewhere"],
)
def test_asymmetric_circuit_nat_advertised_over_ams2_too(ams2_prefix, severity, evidence):
    """The NAT address 192.0.2.10 is in ams-1's /25; ams-2 advertises it as well."""
    ams2 = replace(AMS2, advertised_prefixes=(ams2_prefix,))
    site = SiteFacts(circuits=(AMS1, ams2), internet_edges=(INET,))
    f = only(findings_for(ER_PRIMARY, site, nat_addresses=("192.0.2.10",)), "asymmetric-circuit")
    assert f.severity == severity
    assert evidence in f.evidence[1].text


def test_asymmetric_circuit_from_route_source_on_an_edge_host():
    r = result(route=RouteResult(gateway="203.0.113.2", protocol="bgp", source="192.0.2.130"))
    f = only(findings_for(r, agent_role="datacenter"), "asymmetric-circuit")
    assert "192.0.2.130 is advertised only over circuit ams-2" in f.evidence[1].text


def test_asymmetric_circuit_predicted_from_overlapping_advertisements():
    overlapping = replace(AMS2, advertised_prefixes=("192.0.2.0/24",))  # covers ams-1's /25
    site = SiteFacts(circuits=(AMS1, overlapping), internet_edges=(INET,))
    # ams-1's /25 is more specific than ams-2's /24: replies still come back over ams-1
    assert findings_for(ER_PRIMARY, site) == ()
    same = replace(AMS2, advertised_prefixes=("192.0.2.0/25",))
    site = SiteFacts(circuits=(AMS1, same), internet_edges=(INET,))
    f = only(findings_for(ER_PRIMARY, site), "asymmetric-circuit")
    assert f.severity == "warning"
    assert f.evidence[1].text == (
        "circuit ams-1 advertises 192.0.2.0/25 and circuit ams-2 advertises 192.0.2.0/25, "
        "which overlaps it at least as specifically"
    )


def test_asymmetric_circuit_nat_on_the_same_circuit_is_fine():
    assert findings_for(ER_PRIMARY, nat_addresses=("192.0.2.10",)) == ()


def test_reverse_trace_entering_over_the_wrong_circuit():
    into_ams2 = result(
        "192.0.2.10",
        target="ams-nat",
        role="reverse",
        hops=trace(("198.18.0.9", MS), "203.0.113.9", "192.0.2.10"),
    )
    f = only(findings_for(into_ams2, agent_role="azure-side"), "asymmetric-circuit")
    assert f.severity == "critical"
    assert f.evidence[0].text == "the reverse path to 192.0.2.10 enters the site over circuit ams-2"
    assert findings_for(REVERSE_ER, agent_role="azure-side") == ()


# --------------------------------------------------------------------------- handshake-blackhole


def test_handshake_blackhole_when_microsoft_answers_but_tcp_is_filtered():
    r = replace(INTERNET, tcp=FILTERED, trace=replace(INTERNET.trace, reached=False))
    f = only(findings_for(r), "handshake-blackhole")
    assert f.severity == "critical"
    assert texts(f) == (
        "the TCP handshake to 198.18.10.5 port 443 was filtered (no SYN-ACK, no RST)",
        "hop 4 198.18.0.1 is AS8075 (Microsoft global network): the trace reaches the "
        "Microsoft side",
        "the forward path is internet via internet edge ams-inet",
    )
    assert "advertise it only where the traffic leaves" in f.fix


def test_handshake_blackhole_trace_reached_destination():
    f = only(findings_for(replace(ER_PRIMARY, tcp=FILTERED)), "handshake-blackhole")
    assert f.evidence[1].text == "the trace reached 198.18.10.5 at hop 5"
    assert (
        f.evidence[2].text == "the forward path is expressroute over circuit ams-1 (primary link)"
    )


def test_handshake_blackhole_route_only_is_a_warning():
    r = result(route=RouteResult(interface="eth0", gateway="10.0.0.1"), tcp=FILTERED)
    f = only(findings_for(r), "handshake-blackhole")
    assert f.severity == "warning"
    assert f.evidence[1].text == "the route is up (via 10.0.0.1)"


@pytest.mark.parametrize("state", ["open", "closed", "error"])
def test_no_blackhole_unless_filtered(state):
    tcp = TcpResult(port=443, state=state, method="raw")
    assert "handshake-blackhole" not in kinds(findings_for(replace(ER_PRIMARY, tcp=tcp)))


def test_no_blackhole_without_route_or_microsoft():
    r = result(tcp=FILTERED, route=RouteResult(failure="route.none"))
    assert findings_for(r) == ()


# --------------------------------------------------------------------------- return-hops-mismatch


@pytest.mark.parametrize(
    "return_hops, threshold, fires", [(14, 4, True), (9, 4, False), (9, 3, True), (5, 4, False)]
)
def test_return_hops_mismatch(return_hops, threshold, fires):
    tcp = TcpResult(
        port=443, state="open", method="raw", reply_ttl=64 - return_hops, return_hops=return_hops
    )
    r = replace(ER_PRIMARY, tcp=tcp)  # forward: reached at hop 5
    fs = findings_for(r, return_hops_threshold=threshold)
    assert ("return-hops-mismatch" in kinds(fs)) == fires
    if fires:
        f = only(fs, "return-hops-mismatch")
        assert f.severity == "info"
        assert f.evidence[0].text == "the trace reached 198.18.10.5 in 5 hops"
        assert (
            f.evidence[1].text
            == f"the reply arrived with TTL {64 - return_hops}, about {return_hops} hops back"
        )


def test_return_hops_needs_a_trace_that_reached():
    tcp = TcpResult(port=443, state="open", method="raw", return_hops=20)
    r = replace(ER_PRIMARY, tcp=tcp, trace=replace(ER_PRIMARY.trace, reached=False))
    assert findings_for(r) == ()


# --------------------------------------------------------------------------- premium-required


def test_premium_required_for_a_us_tenant_on_a_european_standard_circuit():
    f = only(findings_for(PREMIUM_INTERNET), "premium-required")
    assert f.severity == "warning"
    assert texts(f) == (
        "198.18.30.5 is in service tag PowerPlatformInfra.EastUS: region eastus (North America)",
        "circuit ams-1 is Standard at Amsterdam (Europe)",
        "circuit ams-2 is Standard at Amsterdam2 (Europe)",
        "a Standard circuit reaches only the Azure regions of its own geopolitical region",
        "the path is internet: Microsoft does not advertise eastus's prefixes over these circuits",
    )
    assert f.fix == (
        "enable the ExpressRoute Premium add-on on circuit ams-1, ams-2, or connect a circuit "
        "at a peering location in North America (e.g. Atlanta)"
    )


def test_premium_observed_over_a_standard_circuit_questions_the_sku():
    r = result(PP_EUS, hops=trace(BRANCH_GW, "10.1.0.1", "203.0.113.2", MS_CORE, (PP_EUS, MS)))
    f = only(findings_for(r), "premium-required")
    assert "circuit ams-1 is Standard at Amsterdam (Europe)" in texts(f)
    assert f.evidence[-1].text.startswith("yet the path goes over circuit ams-1")


@pytest.mark.parametrize(
    "site",
    [
        SiteFacts(circuits=(replace(AMS1, sku="premium"),), internet_edges=(INET,)),
        SiteFacts(circuits=(AMS1, replace(AMS2, location="Washington DC")), internet_edges=(INET,)),
        SiteFacts(circuits=(replace(AMS1, location="Atlantis"),), internet_edges=(INET,)),
    ],
    ids=["premium-sku", "one-circuit-in-the-region", "unknown-location"],
)
def test_no_premium_finding_when_some_circuit_can_reach_or_we_cannot_tell(site):
    assert "premium-required" not in kinds(findings_for(PREMIUM_INTERNET, site))


def test_no_premium_finding_in_the_same_geography_or_without_tags():
    assert "premium-required" not in kinds(findings_for(INTERNET))
    v = verdict_of(PREMIUM_INTERNET)
    assert "premium-required" not in kinds(find(PREMIUM_INTERNET, v, SITE))  # no tags


def test_no_premium_finding_where_no_expressroute_is_expected():
    v = verdict_of(PREMIUM_INTERNET, expect="internet")
    assert find(PREMIUM_INTERNET, v, SITE, tags=TAGS) == ()


def test_every_finding_names_a_fix():
    site = SiteFacts(
        circuits=(AMS1, replace(AMS2, advertised_prefixes=("192.0.2.0/25",))),
        internet_edges=(SHARED_POOL_EDGE,),
    )
    tcp = TcpResult(port=443, state="filtered", method="raw", return_hops=15)
    cases = [
        (INTERNET, {}),
        (replace(ER_PRIMARY, tcp=tcp), {"nat_addresses": ("192.0.2.10",)}),
        (PREMIUM_INTERNET, {}),
    ]
    seen = set()
    for r, kw in cases:
        for f in findings_for(r, site, **kw):
            seen.add(f.kind)
            assert f.fix and f.evidence and f.severity in ("info", "warning", "critical")
    assert seen == {
        "asymmetric-nat",
        "asymmetric-circuit",
        "handshake-blackhole",
        "return-hops-mismatch",
        "nat-pool-on-internet",
        "premium-required",
    }


# --------------------------------------------------------------------------- facts as fields


def fields(e, *names: str) -> tuple:
    return tuple(getattr(e, n) for n in names)


def test_asymmetric_nat_evidence_as_fields():
    f = only(findings_for(INTERNET, SHARED_POOL_SITE), "asymmetric-nat")
    assert (f.circuit, f.predicted_only, f.asymmetry) == ("ams-1", False, True)
    path, advert, back = f.evidence
    assert fields(path, "kind", "name", "egress") == ("path", "internet", "ams-inet")
    assert fields(advert, "kind", "circuit", "prefix", "address") == (
        "advertised",
        "ams-1",
        "192.0.2.0/25",
        "192.0.2.10",
    )
    assert fields(back, "kind", "circuit", "address") == ("return-path", "ams-1", "192.0.2.10")


def test_asymmetric_circuit_evidence_as_fields():
    f = only(findings_for(ER_PRIMARY, nat_addresses=("192.0.2.130",)), "asymmetric-circuit")
    assert (f.circuit, f.asymmetry) == ("ams-1", True)
    path, advert, back = f.evidence
    assert fields(path, "kind", "circuit", "link") == ("path", "ams-1", "primary")
    assert fields(advert, "kind", "circuit", "prefix", "address") == (
        "advertised",
        "ams-2",
        "192.0.2.128/26",
        "192.0.2.130",
    )
    assert fields(back, "kind", "circuit") == ("return-path", "ams-2")


def test_nat_pool_finding_names_its_circuit():
    (f,) = site_findings(SHARED_POOL_SITE)
    assert (f.circuit, f.asymmetry) == ("ams-1", False)
    assert fields(f.evidence[0], "kind", "egress", "address") == ("nat", "ams-inet", "192.0.2.10")


def test_handshake_blackhole_reads_the_msee_hop_from_the_verdict_fields():
    """No Microsoft hop, not reached: the MSEE of the verdict's own circuit is the far side."""
    r = result(hops=trace(BRANCH_GW, "10.1.0.1", "203.0.113.2", None, reached=False), tcp=FILTERED)
    f = only(findings_for(r), "handshake-blackhole")
    assert (f.severity, f.circuit) == ("critical", "ams-1")
    tcp, reached, path = f.evidence
    assert fields(tcp, "kind", "name", "address") == ("tcp", "filtered", PP_WE)
    assert fields(reached, "kind", "circuit", "link", "ttl") == ("msee-hop", "ams-1", "primary", 3)
    assert reached.text == (
        "hop 3 203.0.113.2 is the MSEE of circuit ams-1 (primary link): the trace reaches the "
        "Microsoft side"
    )
    assert fields(path, "kind", "name", "circuit") == ("path", "expressroute", "ams-1")


def test_handshake_blackhole_ignores_a_conflicting_msee_hop():
    """An MSEE of another circuit than the verdict's is no proof of reaching Microsoft."""
    r = result(
        hops=trace(BRANCH_GW, "203.0.113.2", None, reached=False),
        route=RouteResult(interface="eth1", gateway="10.1.0.5", protocol="bgp"),
        tcp=FILTERED,
    )
    v = verdict_of(r, agent_role="datacenter")
    assert v.circuit == "ams-1"  # the MSEE hop outranks the route
    other = replace(v, circuit="ams-2")  # as if the route had decided
    f = only(find(r, other, SITE), "handshake-blackhole")
    assert (f.severity, f.evidence[1].kind) == ("warning", "route")


# --------------------------------------------------------------------------- who routes the replies

# A third-party CDN node: no service tag, a non-Microsoft ASN.
THIRD_PARTY_CDN = replace(
    INTERNET,
    target="static.contoso.com",
    role="cdn",
    address="198.18.70.9",
    dns=replace(INTERNET.dns, cname_chain=("static.contoso.com", "x.akamaized.net")),
    trace=trace(BRANCH_GW, "10.1.0.9", ("198.18.100.1", ISP), ("198.18.70.9", 20940)),
)
# A CDN target behind Front Door (a Microsoft prefix): replies are Microsoft's to route.
FRONT_DOOR = replace(INTERNET, target="content.powerapps.com", role="cdn", address=AFD)


def test_no_asymmetric_nat_for_a_third_party_cdn_node():
    v = verdict_of(THIRD_PARTY_CDN, SHARED_POOL_SITE)
    assert v.path_class == "cdn"
    assert "asymmetric-nat" not in kinds(find(THIRD_PARTY_CDN, v, SHARED_POOL_SITE, tags=TAGS))
    # without the tags file, its ASN still says it is not Microsoft's
    assert "asymmetric-nat" not in kinds(find(THIRD_PARTY_CDN, v, SHARED_POOL_SITE))


def test_no_asymmetric_nat_for_cdn_content_when_nothing_tells_whose_it_is():
    r = replace(THIRD_PARTY_CDN, trace=trace(BRANCH_GW, "10.1.0.9", None, reached=False))
    v = verdict_of(r, SHARED_POOL_SITE)
    assert v.path_class == "cdn"
    assert find(r, v, SHARED_POOL_SITE) == ()


def test_front_door_with_a_failed_handshake_is_critical():
    r = replace(FRONT_DOOR, tcp=FILTERED)
    f = only(findings_for(r, SHARED_POOL_SITE), "asymmetric-nat")
    assert (f.severity, f.predicted_only, f.circuit) == ("critical", False, "ams-1")


def test_front_door_with_a_successful_handshake_is_predicted_only():
    """Replies came back the way they left: the advertisement predicts asymmetry, the measurement does not show it."""
    r = replace(FRONT_DOOR, tcp=OPEN)
    v = verdict_of(r, SHARED_POOL_SITE)
    assert v.path_class == "cdn"
    f = only(find(r, v, SHARED_POOL_SITE, tags=TAGS), "asymmetric-nat")
    assert (f.severity, f.predicted_only, f.circuit) == ("warning", True, "ams-1")
    assert [e.kind for e in f.evidence] == ["path", "advertised", "return-path", "tcp"]
    assert fields(f.evidence[1], "circuit", "prefix", "address") == (
        "ams-1",
        "192.0.2.0/25",
        "192.0.2.10",
    )
    assert fields(f.evidence[3], "name", "address") == ("open", AFD)
    assert texts(f)[2:] == (
        "Microsoft prefers ExpressRoute for a prefix it learns both ways: replies to "
        "192.0.2.10 should return over ams-1",
        "yet the TCP handshake to 198.18.20.7 port 443 succeeded: replies came back the way "
        "the requests left, so this is predicted from the site's facts, not seen",
    )
    assert not any("drops them" in t for t in texts(f))


def test_unnated_public_source_inside_an_advertised_prefix_leaving_over_the_internet():
    r = replace(
        INTERNET,
        route=RouteResult(
            interface="eth0", gateway="10.1.0.9", protocol="static", source="192.0.2.20"
        ),
    )
    f = only(findings_for(r, agent_role="datacenter"), "asymmetric-nat")
    assert (f.severity, f.circuit) == ("critical", "ams-1")
    assert f.evidence[1].text == (
        "un-NATed source address 192.0.2.20 lies in 192.0.2.0/25, advertised over circuit ams-1"
    )
    assert fields(f.evidence[1], "kind", "circuit", "prefix", "address") == (
        "advertised",
        "ams-1",
        "192.0.2.0/25",
        "192.0.2.20",
    )
    assert fields(f.evidence[2], "kind", "circuit", "address") == (
        "return-path",
        "ams-1",
        "192.0.2.20",
    )


def test_private_source_leaving_through_a_clean_edge_is_fine():
    r = replace(
        INTERNET, route=RouteResult(interface="eth0", gateway="10.1.0.9", source="10.0.0.7")
    )
    assert findings_for(r) == ()


def test_explain_says_predicted_only():
    from agent.output import explain_result

    r = replace(FRONT_DOOR, tcp=OPEN)
    v = verdict_of(r, SHARED_POOL_SITE)
    r = replace(r, verdict=v, findings=find(r, v, SHARED_POOL_SITE, tags=TAGS))
    lines = explain_result(r)
    assert "  finding asymmetric-nat (warning, predicted only)" in lines
    assert (
        "    - yet the TCP handshake to 198.18.20.7 port 443 succeeded: replies came back the "
        "way the requests left, so this is predicted from the site's facts, not seen" in lines
    )


def test_unnated_source_with_the_egress_unseen_among_several_edges():
    other = replace(INET, name="ams-inet-2", nat_addresses=("198.51.100.20",), hop_addresses=())
    site = SiteFacts(circuits=(AMS1, AMS2), internet_edges=(INET, other))
    r = result(
        hops=trace(BRANCH_GW, ("198.18.100.1", ISP), MS_CORE, (PP_WE, MS)),
        route=RouteResult(interface="eth0", gateway="10.0.0.1", source="192.0.2.20"),
    )
    v = verdict_of(r, site, agent_role="datacenter")
    assert (v.path_class, v.egress) == ("internet", None)
    f = only(find(r, v, site, tags=TAGS), "asymmetric-nat")
    assert f.evidence[0].text == "the forward path is internet"
    assert fields(f.evidence[0], "kind", "name", "egress") == ("path", "internet", None)
    assert "or NAT at the ER edge to a separate pool: the internet edge needs" in f.fix


def test_the_table_shows_every_link_seen():
    from agent.output import _path
    from tests.agent.verdict.test_classify import msee_hop, trace_with

    hop = msee_hop(3, ("203.0.113.2", 1), ("203.0.113.6", 2))
    r = result(hops=trace_with(hop))
    v = verdict_of(r)
    assert _path(replace(r, verdict=v)) == "expressroute ams-1/primary+secondary"
    one = verdict_of(ER_PRIMARY)
    assert _path(replace(ER_PRIMARY, verdict=one)) == "expressroute ams-1/primary"


def test_one_asymmetric_nat_finding_per_circuit_with_every_nat_address():
    edge = replace(INET, nat_addresses=("192.0.2.10", "192.0.2.11"))
    site = SiteFacts(circuits=(AMS1, AMS2), internet_edges=(edge,))
    (f,) = [f for f in findings_for(INTERNET, site) if f.kind == "asymmetric-nat"]
    assert f.circuit == "ams-1"
    assert [(e.kind, e.address) for e in f.evidence[1:]] == [
        ("advertised", "192.0.2.10"),
        ("advertised", "192.0.2.11"),
        ("return-path", "192.0.2.10"),
        ("return-path", "192.0.2.11"),
    ]
    assert f.fix.startswith("advertise 192.0.2.0/25 only to the internet edge")


def test_explain_shows_the_links_seen():
    from agent.output import explain_result
    from tests.agent.verdict.test_classify import msee_hop, trace_with

    hop = msee_hop(3, ("203.0.113.2", 1), ("203.0.113.6", 2), ("203.0.113.6", 3))
    r = result(hops=trace_with(hop))
    lines = explain_result(replace(r, verdict=verdict_of(r)))
    assert (
        "  links seen at the MSEE of ams-1: primary (1 of 3 flows), secondary (2 of 3 flows)"
        in lines
    )


def test_asymmetric_nat_for_a_microsoft_address_outside_the_tags_file():
    """Microsoft 365 addresses are in no Azure service tag, but the path crosses Microsoft's network."""
    r = result(
        "198.18.80.5",
        target="outlook.office.com",
        hops=trace(BRANCH_GW, "10.1.0.9", ("198.18.100.1", ISP), MS_CORE, "198.18.80.5"),
    )
    f = only(findings_for(r, SHARED_POOL_SITE), "asymmetric-nat")
    assert (f.severity, f.circuit) == ("critical", "ams-1")
