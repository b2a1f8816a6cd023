"""The path classifier on recorded results: one table row per path the lab (and life) produces.

The site mirrors the lab of DESIGN.md §5: a datacenter with circuit ams-1
(primary /30 203.0.113.0/30, secondary 203.0.113.4/30, CE 10.1.0.1) and
circuit ams-2 (its own CE 10.1.0.5), an internet edge ams-inet (inside hop
10.1.0.9, outside 198.51.100.1, NAT 198.51.100.10); Microsoft in
198.18.0.0/16 (AS8075), an ISP in AS64500.  The builders are shared with
test_findings.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.report import (
    Circuit,
    DnsResult,
    Hop,
    InternetEdge,
    LinkSeen,
    Reply,
    Result,
    RouteResult,
    SiteFacts,
    TcpResult,
    Trace,
    Verdict,
    report_from_dict,
    to_dict,
)
from agent.verdict.classify import classify, expected_class, path_facts
from agent.verdict.servicetags import ServiceTags
from tests.agent.servicetags_doc import tag_entry, tags_document

AMS1 = Circuit(
    name="ams-1",
    location="Amsterdam",
    sku="standard",
    primary_subnet="203.0.113.0/30",
    secondary_subnet="203.0.113.4/30",
    ce_addresses=("10.1.0.1",),
    advertised_prefixes=("192.0.2.0/25",),
)
AMS2 = Circuit(
    name="ams-2",
    location="Amsterdam2",
    sku="standard",
    primary_subnet="203.0.113.8/30",
    secondary_subnet="203.0.113.12/30",
    ce_addresses=("10.1.0.5",),
    advertised_prefixes=("192.0.2.128/26",),
)
INET = InternetEdge(
    name="ams-inet", nat_addresses=("198.51.100.10",), hop_addresses=("10.1.0.9", "198.51.100.1")
)
SITE = SiteFacts(circuits=(AMS1, AMS2), internet_edges=(INET,))
NO_CIRCUIT_SITE = SiteFacts(internet_edges=(INET,))

PP_WE = "198.18.10.5"  # PowerPlatformInfra.WestEurope
PP_EUS = "198.18.30.5"  # PowerPlatformInfra.EastUS
AFD = "198.18.20.7"  # AzureFrontDoor.Frontend

TAGS = ServiceTags.from_document(
    tags_document(
        tag_entry("PowerPlatformInfra", ["198.18.10.0/24", "198.18.30.0/24"]),
        tag_entry("PowerPlatformInfra.WestEurope", ["198.18.10.0/24"], region="westeurope"),
        tag_entry("PowerPlatformInfra.EastUS", ["198.18.30.0/24"], region="eastus"),
        tag_entry("AzureFrontDoor.Frontend", ["198.18.20.0/24"]),
    ),
    source="synthetic",
)

MS = 8075
ISP = 64500


def trace(*hops: str | tuple | None, reached: bool = True) -> Trace:
    """Hops in TTL order: an address, (address, asn), (address, asn, ptr), or None (silent)."""
    out = []
    for ttl, h in enumerate(hops, start=1):
        if h is None:
            out.append(Hop(ttl=ttl))
            continue
        addr, asn, ptr = (h, None, None) if isinstance(h, str) else (*h, None, None)[:3]
        out.append(Hop(ttl=ttl, replies=(Reply(address=addr, rtt_s=0.001, asn=asn, ptr=ptr),)))
    return Trace(protocol="tcp", flow=1, reached=reached, hops=tuple(out))


def result(
    address: str | None = PP_WE,
    *,
    target: str = "contoso.crm4.dynamics.com",
    role: str = "service",
    chain: tuple[str, ...] = (),
    route: RouteResult | None = None,
    tcp: TcpResult | None = None,
    hops: Trace | None = None,
    failure: str | None = None,
) -> Result:
    dns = DnsResult(cname_chain=chain, addresses=(address,) if address else (), failure=failure)
    return Result(
        target=target,
        role=role,
        port=443,
        address=address,
        dns=dns,
        route=route,
        tcp=tcp,
        trace=hops,
        failure=failure,
    )


BRANCH_GW = "10.0.0.1"
MS_CORE = ("198.18.0.1", MS, "ae1-0.ams30.ntwk.msn.net")

ER_PRIMARY = result(hops=trace(BRANCH_GW, "10.1.0.1", "203.0.113.2", MS_CORE, (PP_WE, MS)))
ER_SECONDARY = result(hops=trace(BRANCH_GW, "10.1.0.1", "203.0.113.6", MS_CORE, (PP_WE, MS)))
INTERNET = result(hops=trace(BRANCH_GW, "10.1.0.9", ("198.18.100.1", ISP), MS_CORE, (PP_WE, MS)))
CDN_CNAME = result(
    "198.18.50.9",
    target="content.powerapps.com",
    chain=("content.powerapps.com", "powerapps-content.azureedge.net"),
    hops=trace(BRANCH_GW, "10.1.0.9", ("198.18.100.1", ISP), ("198.18.50.9", 15133)),
)
CDN_TAG = result(AFD, hops=trace(BRANCH_GW, "10.1.0.9", ("198.18.100.1", ISP), (AFD, MS)))
ROUTE_BGP_MSEE = result(route=RouteResult(interface="er0", gateway="203.0.113.2", protocol="bgp"))
ROUTE_BGP_CE = result(route=RouteResult(interface="eth1", gateway="10.1.0.1", protocol="bgp"))
CONFLICT_CDN = result(
    target="static.contoso.com",
    chain=("static.contoso.com", "contoso.azureedge.net"),
    hops=trace(BRANCH_GW, "10.1.0.1", "203.0.113.2", MS_CORE, (PP_WE, MS)),
)
CONFLICT_CIRCUIT = result(
    hops=trace(BRANCH_GW, "10.1.0.1", "203.0.113.2", MS_CORE, (PP_WE, MS)),
    route=RouteResult(interface="eth1", gateway="10.1.0.5", protocol="bgp"),
)
UNKNOWN = result()
UNKNOWN_DNS = result(None, failure="dns.nxdomain")
UNKNOWN_SILENT = result(hops=trace(None, None, None, reached=False))
ASN_12076_ONLY = result(hops=trace(BRANCH_GW, ("198.18.1.1", 12076), MS_CORE, (PP_WE, MS)))
MICROSOFT_ONLY = result(hops=trace(BRANCH_GW, MS_CORE, (PP_WE, MS)))
REVERSE_ER = result(
    "192.0.2.10",
    target="ams-nat",
    role="reverse",
    hops=trace(("198.18.0.9", MS), ("198.18.0.2", MS), "203.0.113.1", "192.0.2.10"),
)
REVERSE_ER_SECONDARY = result(
    "192.0.2.10",
    target="ams-nat",
    role="reverse",
    hops=trace(("198.18.0.9", MS), ("198.18.0.6", MS), "203.0.113.5", "192.0.2.10"),
)
REVERSE_INTERNET = result(
    "198.51.100.10",
    target="ams-inet-nat",
    role="reverse",
    hops=trace(("198.18.0.9", MS), ("198.18.100.1", ISP), "198.51.100.1", "198.51.100.10"),
)
PREMIUM_INTERNET = result(
    PP_EUS, hops=trace(BRANCH_GW, "10.1.0.9", ("198.18.100.1", ISP), MS_CORE, (PP_EUS, MS))
)


def verdict_of(r: Result, site: SiteFacts = SITE, *, agent_role: str = "branch", expect=None):
    return classify(r, site, TAGS, agent_role=agent_role, expect=expect)


def texts(v) -> tuple[str, ...]:
    """The rendered sentences of a verdict's or finding's evidence, for people (and messages)."""
    return tuple(e.text for e in v.evidence)


def of_kind(v, kind: str) -> list:
    return [e for e in v.evidence if e.kind == kind]


# name, result, agent role, class, circuit, link, egress, min confidence, max confidence,
# evidence that must be present (substrings, in this order), expected class
CASES = [
    (
        "er-primary",
        ER_PRIMARY,
        "branch",
        "expressroute",
        "ams-1",
        "primary",
        None,
        0.95,
        0.99,
        [
            "hop 3 203.0.113.2 is the MSEE of circuit ams-1 (primary link)",
            "hop 2 10.1.0.1 is a CE address of circuit ams-1",
            "198.18.10.5 is in service tags PowerPlatformInfra, PowerPlatformInfra.WestEurope "
            "(region westeurope)",
            "hop 4 198.18.0.1 is AS8075 (Microsoft global network)",
            "expected expressroute: the site has circuit ams-1, ams-2",
        ],
        "expressroute",
    ),
    (
        "er-secondary",
        ER_SECONDARY,
        "branch",
        "expressroute",
        "ams-1",
        "secondary",
        None,
        0.95,
        0.99,
        ["hop 3 203.0.113.6 is the MSEE of circuit ams-1 (secondary link)"],
        "expressroute",
    ),
    (
        "internet-with-egress",
        INTERNET,
        "branch",
        "internet",
        None,
        None,
        "ams-inet",
        0.8,
        0.9,
        [
            "hop 3 198.18.100.1 (AS64500) hands over to the Microsoft network at hop 4",
            "egress via internet edge ams-inet (NAT 198.51.100.10): hop 2 10.1.0.9 is a hop of "
            "that edge",
            "hop 4 198.18.0.1 is AS8075 (Microsoft global network)",
        ],
        "expressroute",
    ),
    (
        "cdn-via-cname",
        CDN_CNAME,
        "branch",
        "cdn",
        None,
        None,
        "ams-inet",
        0.85,
        0.99,
        [
            "CNAME chain ends in *.azureedge.net (powerapps-content.azureedge.net)",
            "egress via internet edge ams-inet",
            "expected cdn: CNAME chain ends in *.azureedge.net",
        ],
        "cdn",
    ),
    (
        "cdn-via-service-tag",
        CDN_TAG,
        "branch",
        "cdn",
        None,
        None,
        "ams-inet",
        0.85,
        0.99,
        [
            "198.18.20.7 is in service tag AzureFrontDoor.Frontend",
            "expected cdn: 198.18.20.7 is in service tag AzureFrontDoor.Frontend",
        ],
        "cdn",
    ),
    (
        "route-only-bgp-via-msee",
        ROUTE_BGP_MSEE,
        "datacenter",
        "expressroute",
        "ams-1",
        "primary",
        None,
        0.85,
        0.85,
        ["route via bgp gateway 203.0.113.2 = MSEE of ams-1 (primary link)"],
        "expressroute",
    ),
    (
        "route-only-bgp-via-ce",
        ROUTE_BGP_CE,
        "datacenter",
        "expressroute",
        "ams-1",
        None,
        None,
        0.85,
        0.85,
        ["route via bgp gateway 10.1.0.1 = CE of ams-1"],
        "expressroute",
    ),
    (
        "conflict-msee-but-cdn-name",
        CONFLICT_CDN,
        "branch",
        "expressroute",
        "ams-1",
        "primary",
        None,
        0.5,
        0.65,
        [
            "hop 3 203.0.113.2 is the MSEE of circuit ams-1 (primary link)",
            "conflicting: CNAME chain ends in *.azureedge.net (contoso.azureedge.net)",
            "expected cdn",
        ],
        "cdn",
    ),
    (
        "conflict-two-circuits",
        CONFLICT_CIRCUIT,
        "datacenter",
        "expressroute",
        "ams-1",
        "primary",
        None,
        0.7,
        0.8,
        [
            "hop 3 203.0.113.2 is the MSEE of circuit ams-1 (primary link)",
            "conflicting: route via bgp gateway 10.1.0.5 = CE of ams-2",
        ],
        "expressroute",
    ),
    (
        "unknown-no-trace-no-route",
        UNKNOWN,
        "branch",
        "unknown",
        None,
        None,
        None,
        0.0,
        0.0,
        ["path unknown: no trace; no route"],
        "expressroute",
    ),
    (
        "unknown-no-address",
        UNKNOWN_DNS,
        "branch",
        "unknown",
        None,
        None,
        None,
        0.0,
        0.0,
        ["no address to probe (dns.nxdomain)"],
        "expressroute",
    ),
    (
        "unknown-silent-trace",
        UNKNOWN_SILENT,
        "branch",
        "unknown",
        None,
        None,
        None,
        0.0,
        0.0,
        ["path unknown: no hop answered the trace; no route"],
        "expressroute",
    ),
    (
        "unknown-microsoft-reached-only",
        MICROSOFT_ONLY,
        "branch",
        "unknown",
        None,
        None,
        None,
        0.0,
        0.0,
        [
            "path unknown: no hop is at a circuit or an internet edge, and no ASN shows the way in",
            "hop 2 198.18.0.1 is AS8075 (Microsoft global network)",
        ],
        "expressroute",
    ),
    (
        "asn-12076-only",
        ASN_12076_ONLY,
        "branch",
        "expressroute",
        None,
        None,
        None,
        0.6,
        0.7,
        ["hop 2 198.18.1.1 is AS12076 (Microsoft ExpressRoute edge)"],
        "expressroute",
    ),
    (
        "reverse-er-primary",
        REVERSE_ER,
        "azure-side",
        "expressroute",
        "ams-1",
        "primary",
        None,
        0.9,
        0.95,
        [
            "hop 3 203.0.113.1 is the CE of circuit ams-1 (primary link): the reverse path "
            "enters the site there",
            "expected expressroute: 192.0.2.10 is in 192.0.2.0/25, advertised over circuit ams-1",
        ],
        "expressroute",
    ),
    (
        "reverse-er-secondary",
        REVERSE_ER_SECONDARY,
        "datacenter",
        "expressroute",
        "ams-1",
        "secondary",
        None,
        0.9,
        0.95,
        ["hop 3 203.0.113.5 is the CE of circuit ams-1 (secondary link)"],
        "expressroute",
    ),
    (
        "reverse-internet",
        REVERSE_INTERNET,
        "azure-side",
        "internet",
        None,
        None,
        "ams-inet",
        0.8,
        0.9,
        [
            "hop 2 198.18.100.1 (AS64500) takes over from the Microsoft network at hop 1",
            "hop 3 198.51.100.1 is a hop of internet edge ams-inet: the reverse path enters "
            "the site there",
            "expected internet: no circuit advertises 198.51.100.10",
        ],
        "internet",
    ),
]


@pytest.mark.parametrize(
    "r, agent_role, cls, circuit, link, egress, lo, hi, evidence, expected",
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_classify(r, agent_role, cls, circuit, link, egress, lo, hi, evidence, expected):
    v = verdict_of(r, agent_role=agent_role)
    assert (v.path_class, v.circuit, v.link, v.egress) == (cls, circuit, link, egress), texts(v)
    assert lo <= v.confidence <= hi, (v.confidence, texts(v))
    assert v.expected == expected
    assert v.matches_expected == (None if cls == "unknown" else cls == expected)
    # each expected sentence appears, in order (strongest evidence first)
    pos = -1
    for sentence in evidence:
        at = next((i for i, e in enumerate(texts(v)) if sentence in e), None)
        assert at is not None, f"{sentence!r} not in {texts(v)}"
        assert at > pos, f"{sentence!r} out of order in {texts(v)}"
        pos = at


def test_conflict_lowers_confidence_and_shows_both():
    clean = verdict_of(ER_PRIMARY)
    conflicted = verdict_of(CONFLICT_CDN)
    assert conflicted.path_class == clean.path_class == "expressroute"
    assert conflicted.confidence < clean.confidence - 0.3
    assert any(e.startswith("conflicting: CNAME chain") for e in texts(conflicted))
    (cname,) = of_kind(conflicted, "cname")
    assert (cname.conflicting, cname.name, cname.tag) == (
        True,
        "contoso.azureedge.net",
        "azureedge.net",
    )
    (msee,) = of_kind(conflicted, "msee-hop")
    assert (msee.conflicting, msee.circuit, msee.link, msee.ttl, msee.address) == (
        False,
        "ams-1",
        "primary",
        3,
        "203.0.113.2",
    )


def test_evidence_strongest_first():
    """MSEE hop before the route, the route before service tags, tags before ASN facts."""
    r = replace(ER_PRIMARY, route=RouteResult(interface="eth0", gateway="10.1.0.1", protocol="bgp"))
    v = verdict_of(r)
    assert [e.kind for e in v.evidence[:5]] == [
        "msee-hop",
        "ce-hop",
        "route",
        "service-tag",
        "hop-asn",
    ], texts(v)
    assert v.evidence[3].tag == "PowerPlatformInfra"
    assert (v.evidence[3].prefix, v.evidence[3].name) == ("198.18.10.0/24", "westeurope")
    assert (v.evidence[4].asn, v.evidence[4].ttl) == (8075, 4)
    assert v.confidence == 0.99  # capped: nothing from one vantage point is certain


def test_route_via_internet_edge_gives_egress():
    r = result(route=RouteResult(interface="eth0", gateway="10.1.0.9", protocol="static"))
    v = verdict_of(r)
    assert (v.path_class, v.egress) == ("internet", "ams-inet")
    assert v.evidence[0].text == "route via static gateway 10.1.0.9 = internet edge ams-inet"
    assert (v.evidence[0].kind, v.evidence[0].egress, v.evidence[0].address) == (
        "route",
        "ams-inet",
        "10.1.0.9",
    )


def test_route_via_unknown_gateway_is_no_evidence():
    r = result(route=RouteResult(interface="eth0", gateway="10.0.0.1", protocol="kernel"))
    v = verdict_of(r)
    assert v.path_class == "unknown"
    assert "route via 10.0.0.1 is neither a CE nor an internet edge" in v.evidence[0].text
    assert (v.evidence[0].kind, v.evidence[0].name) == ("unknown", "path")


def test_load_balanced_hop_replies_all_count():
    """Several replies per TTL (ECMP): a reply from the MSEE among them still counts."""
    hop = Hop(
        ttl=3,
        replies=(
            Reply(address="198.18.7.7", rtt_s=0.001),
            Reply(address="203.0.113.6", rtt_s=0.001),
        ),
    )
    t = Trace(protocol="udp", flow=3, reached=False, hops=(Hop(ttl=1), hop))
    v = verdict_of(result(hops=t))
    assert (v.path_class, v.circuit, v.link) == ("expressroute", "ams-1", "secondary")


TM_CHAIN = ("api.contoso.com", "contoso.trafficmanager.net", "x.cloudapp.azure.com")


def test_traffic_manager_endpoint_behind_an_msee_is_expressroute():
    """Traffic Manager answers DNS only: the endpoint it hands out decides the path."""
    r = replace(
        ER_PRIMARY, target="api.contoso.com", dns=replace(ER_PRIMARY.dns, cname_chain=TM_CHAIN)
    )
    v = verdict_of(r)
    assert (v.path_class, v.circuit, v.expected, v.matches_expected) == (
        "expressroute",
        "ams-1",
        "expressroute",
        True,
    )
    assert v.confidence == verdict_of(ER_PRIMARY).confidence  # not a conflict
    (tm,) = of_kind(v, "cname")
    assert (tm.name, tm.tag, tm.conflicting) == (
        "contoso.trafficmanager.net",
        "trafficmanager.net",
        False,
    )
    assert tm.text == (
        "CNAME chain passes through Traffic Manager (*.trafficmanager.net: "
        "contoso.trafficmanager.net): DNS only, the endpoint it hands out decides the path"
    )
    assert not any(e.conflicting for e in v.evidence)


def test_traffic_manager_alone_decides_nothing():
    v = verdict_of(result(chain=TM_CHAIN))
    assert v.path_class == "unknown"
    assert v.expected == "expressroute"


def test_traffic_manager_endpoint_outside_expressroute_expects_internet():
    r = result(
        "198.18.60.9",
        chain=TM_CHAIN,
        hops=trace(BRANCH_GW, "10.1.0.9", ("198.18.100.1", ISP), ("198.18.60.9", 64501)),
    )
    v = verdict_of(r)
    assert (v.path_class, v.expected, v.matches_expected) == ("internet", "internet", True)
    assert (v.evidence[-1].kind, v.evidence[-1].name, v.evidence[-1].address) == (
        "expectation",
        "internet",
        "198.18.60.9",
    )


# A CDN node whose name is on no suffix list (Akamai, a new Front Door name),
# reached over the internet at an address in no service tag.
UNLISTED_CDN = result(
    "198.18.70.9",
    target="static.contoso.com",
    role="cdn",
    chain=("static.contoso.com", "static.contoso.com.cdn.newvendor.example"),
    hops=trace(BRANCH_GW, "10.1.0.9", ("198.18.100.1", ISP), ("198.18.70.9", 20940)),
)


def test_cdn_target_over_the_internet_outside_every_tag_is_as_expected():
    v = verdict_of(UNLISTED_CDN)
    assert (v.path_class, v.egress, v.expected, v.matches_expected) == (
        "cdn",
        "ams-inet",
        "cdn",
        True,
    )
    (why,) = of_kind(v, "untagged")
    assert why.address == "198.18.70.9"
    assert why.text == (
        "198.18.70.9 is in no service tag that ExpressRoute carries: a CDN node that "
        "ExpressRoute never carries, although no CDN name or tag shows it"
    )


def test_cdn_target_inside_a_carried_tag_over_the_internet_is_not_excused():
    r = replace(UNLISTED_CDN, address=PP_WE)
    v = verdict_of(r)
    assert (v.path_class, v.matches_expected) == ("internet", False)
    assert of_kind(v, "untagged") == []


def test_cdn_target_outside_tags_needs_the_tags_file_to_tell():
    v = classify(UNLISTED_CDN, SITE, None, agent_role="branch", expect=None)
    assert (v.path_class, v.matches_expected) == ("internet", False)


def test_explicit_cdn_expectation_outside_tags_is_as_expected():
    v = verdict_of(replace(UNLISTED_CDN, role="service"), expect="cdn")
    assert (v.path_class, v.matches_expected) == ("cdn", True)


# --------------------------------------------------------------------------- links seen


def msee_hop(ttl: int, *flows: tuple[str, int | None], shared: bool = False) -> Hop:
    return Hop(
        ttl=ttl,
        replies=tuple(Reply(address=a, rtt_s=0.001, flow=f) for a, f in flows),
        shared=shared,
    )


def trace_with(msee: Hop, *, flow: int = 1) -> Trace:
    hops = (
        Hop(ttl=1, replies=(Reply(address=BRANCH_GW, rtt_s=0.001, flow=flow),)),
        Hop(ttl=2, replies=(Reply(address="10.1.0.1", rtt_s=0.001, flow=flow),)),
        msee,
        Hop(ttl=4, replies=(Reply(address="198.18.0.1", rtt_s=0.002, asn=MS, flow=flow),)),
    )
    return Trace(protocol="tcp", flow=flow, reached=False, hops=hops)


P, S = "203.0.113.2", "203.0.113.6"  # ams-1's MSEEs: primary, secondary


def test_links_seen_counts_distinct_flows_per_link():
    """Six flows through the MSEE hop, load-shared: both links carry some."""
    hop = msee_hop(3, (S, 7), (P, 1), (P, 2), (S, 3), (P, 4), (P, 5), (P, 1))
    v = verdict_of(result(hops=trace_with(hop, flow=7)))
    assert (v.path_class, v.circuit) == ("expressroute", "ams-1")
    assert v.links_seen == (LinkSeen("primary", 4), LinkSeen("secondary", 2))
    assert v.msee_flows == 6
    assert v.link == "secondary"  # the trace's own flow (7) crossed the secondary link
    assert not any(e.conflicting for e in v.evidence)  # two links are no conflict
    assert {(e.link, e.address) for e in of_kind(v, "msee-hop")} == {
        ("primary", P),
        ("secondary", S),
    }
    assert v.confidence >= 0.95


def test_links_seen_counts_flows_at_the_msee_hop_that_went_elsewhere():
    hop = msee_hop(3, (P, 1), (P, 2), ("198.18.9.9", 3))
    v = verdict_of(result(hops=trace_with(hop)))
    assert v.links_seen == (LinkSeen("primary", 2),)
    assert v.msee_flows == 3


def test_links_seen_ignores_hops_copied_from_another_trace():
    v = verdict_of(result(hops=trace_with(msee_hop(3, (P, 1), (S, 2), shared=True))))
    assert (v.circuit, v.link) == ("ams-1", "primary")  # still named, informative
    assert (v.links_seen, v.msee_flows) == ((), 0)


def test_links_seen_without_flow_ids_is_the_traces_one_flow():
    v = verdict_of(ER_SECONDARY)
    assert (v.links_seen, v.msee_flows) == ((LinkSeen("secondary", 1),), 1)


def test_links_seen_of_a_reverse_trace_counts_the_ce_side():
    v = verdict_of(REVERSE_ER, agent_role="azure-side")
    assert (v.links_seen, v.msee_flows) == ((LinkSeen("primary", 1),), 1)


def test_no_links_seen_off_expressroute():
    v = verdict_of(INTERNET)
    assert (v.links_seen, v.msee_flows) == ((), 0)


# --------------------------------------------------------------------------- unknowns


def test_silent_msee_leaves_the_link_unknown_and_says_why():
    r = result(hops=trace(BRANCH_GW, "10.1.0.1", None, MS_CORE, (PP_WE, MS)))
    v = verdict_of(r)
    assert (v.path_class, v.circuit, v.link) == ("expressroute", "ams-1", None)
    assert (v.links_seen, v.msee_flows) == ((), 0)
    (unknown,) = of_kind(v, "unknown")
    assert (unknown.name, unknown.circuit) == ("link", "ams-1")
    assert unknown.text == (
        "the link of circuit ams-1 is unknown this time: hop 3 did not answer (a silent or "
        "rate-limited MSEE, or a CE that drops time-exceeded); CE address 10.1.0.1 (hop 2) "
        "names the circuit, not the link"
    )


def test_silent_ce_and_msee_circuit_named_by_the_route():
    r = result(
        hops=trace(BRANCH_GW, None, None, MS_CORE, (PP_WE, MS)),
        route=RouteResult(interface="eth1", gateway="10.1.0.1", protocol="bgp"),
    )
    v = verdict_of(r, agent_role="datacenter")
    assert (v.path_class, v.circuit, v.link) == ("expressroute", "ams-1", None)
    (unknown,) = of_kind(v, "unknown")
    assert (unknown.name, unknown.circuit) == ("link", "ams-1")
    assert "hops 2, 3 did not answer" in unknown.text
    assert "the route via 10.1.0.1 names the circuit" in unknown.text


def test_ce_dropping_time_exceeded_hides_nothing_when_the_msee_answers():
    v = verdict_of(result(hops=trace(BRANCH_GW, None, "203.0.113.2", MS_CORE, (PP_WE, MS))))
    assert (v.circuit, v.link) == ("ams-1", "primary")
    assert of_kind(v, "unknown") == []


def test_expressroute_edge_asn_only_leaves_the_circuit_unknown():
    v = verdict_of(result(hops=trace(BRANCH_GW, None, ("198.18.1.1", 12076), MS_CORE)))
    assert (v.path_class, v.circuit, v.link) == ("expressroute", None, None)
    (unknown,) = of_kind(v, "unknown")
    assert (unknown.name, unknown.circuit) == ("circuit", None)
    assert "hop 2 did not answer" in unknown.text


def test_reverse_entry_at_a_silent_ce_names_the_circuit_not_the_link():
    r = result(
        "192.0.2.10",
        target="ams-nat",
        role="reverse",
        hops=trace(("198.18.0.9", MS), ("198.18.0.2", 12076), "192.0.2.10"),
    )
    v = verdict_of(r, agent_role="azure-side")
    assert (v.path_class, v.circuit, v.link) == ("expressroute", "ams-1", None)
    entry = of_kind(v, "hop-asn")[0]
    assert (entry.circuit, entry.ttl, entry.address, entry.asn) == (
        "ams-1",
        2,
        "198.18.0.2",
        12076,
    )
    (unknown,) = of_kind(v, "unknown")
    assert unknown.name == "link"


def test_extra_cdn_suffixes_from_config():
    r = result(chain=("www.contoso.com", "contoso.cdn.example.net"))
    assert verdict_of(r).path_class == "unknown"
    v = classify(r, SITE, TAGS, agent_role="branch", expect=None, cdn_suffixes=("cdn.example.net",))
    assert v.path_class == "cdn"


def test_classify_without_service_tags():
    v = classify(CDN_TAG, SITE, None, agent_role="branch", expect=None)
    assert v.path_class == "internet"  # the edge hop alone; no tag says CDN
    assert v.expected == "expressroute"


def test_verdict_survives_the_report_round_trip():
    v = verdict_of(INTERNET)
    doc = to_dict(replace(INTERNET, verdict=v))
    assert doc["verdict"]["class"] == "internet"
    parsed = report_from_dict(
        {
            "id": "00000000-0000-4000-8000-000000000000",
            "seq": 1,
            "agent": {
                "id": "a",
                "site": "ams",
                "role": "branch",
                "version": "0",
                "hostname": "h",
            },
            "started_at": "2026-01-01T00:00:00Z",
            "duration_s": 1.0,
            "results": [doc],
        }
    )
    assert parsed.results[0].verdict == v


# --------------------------------------------------------------------------- expectation

EXPECTATION_CASES = [
    # name, result, site, explicit expect, expected class, reason substring
    ("explicit-wins-over-cdn-name", CDN_CNAME, SITE, "expressroute", "expressroute", "configured"),
    ("explicit-internet", ER_PRIMARY, SITE, "internet", "internet", "configured"),
    ("cdn-name-whatever-role", replace(CDN_CNAME, role="api"), SITE, None, "cdn", "azureedge"),
    ("cdn-tag-whatever-role", CDN_TAG, SITE, None, "cdn", "AzureFrontDoor.Frontend"),
    ("cdn-role", replace(ER_PRIMARY, role="cdn"), SITE, None, "cdn", "role is cdn"),
    ("site-with-circuit", ER_PRIMARY, SITE, None, "expressroute", "circuit ams-1"),
    ("site-without-circuit", ER_PRIMARY, NO_CIRCUIT_SITE, None, "internet", "no ExpressRoute"),
    ("reverse-advertised", REVERSE_ER, SITE, None, "expressroute", "advertised over circuit ams-1"),
    ("reverse-not-advertised", REVERSE_INTERNET, SITE, None, "internet", "no circuit advertises"),
]


@pytest.mark.parametrize(
    "r, site, expect, cls, why",
    [c[1:] for c in EXPECTATION_CASES],
    ids=[c[0] for c in EXPECTATION_CASES],
)
def test_expectation(r, site, expect, cls, why):
    facts = path_facts(r, site, TAGS, agent_role="branch")
    got, reason = expected_class(r, site, facts, expect=expect)
    assert got == cls
    assert (reason.kind, reason.name) == ("expectation", cls)
    assert why in reason.text
    v = classify(r, site, TAGS, agent_role="branch", expect=expect)
    assert v.expected == cls
    assert v.evidence[-1] == reason


def test_bad_expect_and_agent_role_are_configuration_bugs():
    with pytest.raises(ValueError, match="expect must be one of"):
        verdict_of(ER_PRIMARY, expect="unknown")
    with pytest.raises(ValueError, match="unknown agent role 'router'"):
        verdict_of(ER_PRIMARY, agent_role="router")


def test_classify_is_pure():
    assert verdict_of(ER_PRIMARY) == verdict_of(ER_PRIMARY)
    assert isinstance(verdict_of(ER_PRIMARY), Verdict)


def test_tcp_state_does_not_change_the_path():
    filtered = replace(ER_PRIMARY, tcp=TcpResult(port=443, state="filtered", method="raw"))
    assert verdict_of(filtered) == verdict_of(ER_PRIMARY)


# --------------------------------------------------------------------------- --explain text


def test_explain_result_prints_verdict_evidence_and_fixes():
    from agent.output import explain_result
    from agent.verdict.findings import find

    r = replace(INTERNET, tcp=TcpResult(port=443, state="filtered", method="raw"))
    v = verdict_of(r)
    r = replace(r, verdict=v, findings=find(r, v, SITE, tags=TAGS))
    lines = explain_result(r)
    assert lines[1] == "contoso.crm4.dynamics.com (198.18.10.5):"
    assert "  verdict internet (confidence 0.85), expected expressroute" in lines
    assert "  finding handshake-blackhole (critical)" in lines
    assert any(
        line.startswith("    fix: replies are probably returning another way") for line in lines
    )


def test_unparsable_site_facts_are_skipped_not_raised():
    """Facts parsed back from a report may hold junk prefixes; the classifier must not crash."""
    bad = replace(AMS1, primary_subnet="bogus", advertised_prefixes=("zz", "192.0.2.0/25"))
    site = SiteFacts(circuits=[bad], internet_edges=[replace(INET, nat_addresses=("nope",))])
    v = verdict_of(ER_SECONDARY, site)  # lists, not tuples: unhashable, so not cached
    assert (v.path_class, v.circuit, v.link) == ("expressroute", "ams-1", "secondary")
    assert verdict_of(ER_PRIMARY, site).circuit == "ams-1"  # the CE address still counts
