"""Verdicts on ExpressRoute designs built from the planning guide that our lab does not build.

Each test is one design a network engineer builds from the guide
(../shared/seed), with its own addressing, and what the verdict must say
there.  The addressing differs from test_classify's on purpose: a site
"utr" whose peering /30s are 198.51.100.248/30 (primary) and
198.51.100.252/30 (secondary), NAT pools of other lengths, a connectivity
provider in AS64600 whose PE and P routers (some answering with RFC 4950
MPLS labels, some from 100.64/10 without an ASN) sit between the customer
and the MSEE (the layer-3 / IP VPN model: the /30's customer side is on the
provider's PE), Microsoft in 198.18.0.0/16 as in test_classify.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from agent.report import (
    Circuit,
    Hop,
    InternetEdge,
    LinkSeen,
    MplsLabel,
    Reply,
    RouteResult,
    SiteFacts,
    TcpResult,
    Trace,
)
from agent.verdict.classify import classify
from agent.verdict.findings import find
from agent.verdict.geography import location_geography
from tests.agent.verdict.test_classify import (
    ISP,
    MS,
    MS_CORE,
    PP_WE,
    TAGS,
    of_kind,
    result,
    texts,
    trace,
)

PROVIDER = 64600  # the IP VPN provider's ASN
LAN_GW = "10.40.1.1"  # the branch's LAN gateway (a customer router, private)
PE_BRANCH = "100.64.7.1"  # the provider's PE at the branch: shared address space, no ASN
P_CORE = "198.18.200.5"  # a P router in the provider's ASN
PE_ER = "198.18.200.9"  # the provider's PE at the ExpressRoute location
MSEE_P, MSEE_S = "198.51.100.250", "198.51.100.254"  # second address of each /30
PE_P = "198.51.100.249"  # the /30's customer side: on the provider's PE, not the customer's


def circuit(
    name: str,
    location: str,
    primary: str,
    *,
    ce: tuple[str, ...] = (),
    adverts: tuple[str, ...] = (),
    sku: str = "standard",
) -> Circuit:
    """A circuit whose secondary peering subnet follows its primary one, as Azure's forms number them."""
    net = ipaddress.ip_network(primary)
    secondary = ipaddress.ip_network((int(net.network_address) + net.num_addresses, net.prefixlen))
    return Circuit(
        name=name,
        location=location,
        sku=sku,  # type: ignore[arg-type]
        primary_subnet=primary,
        secondary_subnet=str(secondary),
        ce_addresses=ce,
        advertised_prefixes=adverts,
    )


# The provider terminates the circuit: no router of the customer's is a CE.
VPN = circuit("utr-ipvpn", "Amsterdam", "198.51.100.248/30", adverts=("203.0.113.64/27",))
VPN_EDGE = InternetEdge(
    name="utr-inet", nat_addresses=("192.0.2.77",), hop_addresses=("10.40.9.1",)
)
VPN_SITE = SiteFacts(circuits=(VPN,), internet_edges=(VPN_EDGE,))


def verdict(r, site, *, agent_role="branch", expect=None):
    return classify(r, site, TAGS, agent_role=agent_role, expect=expect)


def mpls_hop(ttl: int, address: str, asn: int, label: int) -> Hop:
    """A P router answering with its label stack (RFC 4950 ICMP extensions)."""
    stack = (MplsLabel(label=label, tc=0, bottom=True, ttl=1),)
    return Hop(ttl=ttl, replies=(Reply(address=address, rtt_s=0.004, asn=asn, mpls=stack),))


def ipvpn_trace(msee: str | None) -> Trace:
    """Branch -> provider PE -> P (MPLS) -> PE at the ER location -> MSEE -> Microsoft."""
    t = trace(
        LAN_GW,
        PE_BRANCH,
        None,  # placeholder for the P router below
        (PE_ER, PROVIDER),
        msee,
        MS_CORE,
        (PP_WE, MS),
    )
    hops = list(t.hops)
    hops[2] = mpls_hop(3, P_CORE, PROVIDER, 24017)
    return replace(t, hops=tuple(hops))


def reverse_to_nat(pe: str | None):
    """Azure -> Microsoft -> MSEE (AS12076) -> the provider's PE (or silence) -> P -> NAT address."""
    hops = (("198.18.0.9", MS), ("198.18.1.2", 12076), pe, (P_CORE, PROVIDER), "203.0.113.70")
    return result("203.0.113.70", target="utr-nat", role="reverse", hops=trace(*hops))


def placed(v) -> tuple:
    return (v.path_class, v.circuit, v.link, v.matches_expected)


ON_VPN_PRIMARY = ("expressroute", "utr-ipvpn", "primary", True)

# --------------------------------------------------------------------------- the IP VPN model


def test_ipvpn_msee_after_provider_hops_names_circuit_and_link():
    """Holds: three provider hops (one with MPLS labels) before the MSEE at hop 5 change nothing."""
    v = verdict(result(hops=ipvpn_trace(MSEE_P)), VPN_SITE)
    assert placed(v) == ON_VPN_PRIMARY
    (msee,) = of_kind(v, "msee-hop")
    assert (msee.ttl, msee.address, msee.link) == (5, MSEE_P, "primary")
    assert not any(e.conflicting for e in v.evidence), texts(v)
    assert v.confidence >= 0.95


def test_ipvpn_silent_msee_is_no_internet_handover():
    """Was a bug: the provider's PE next to Microsoft read as an ISP, so the path was "internet".

    A rate-limited MSEE leaves a silent TTL between the PE and Microsoft's
    network; at a site with a circuit and no internet edge hop seen, that is
    no hand-over: the verdict is unknown (never a flip), and says why.
    """
    v = verdict(result(hops=ipvpn_trace(None)), VPN_SITE)
    assert (v.path_class, v.matches_expected) == ("unknown", None), texts(v)
    (why,) = [e for e in of_kind(v, "hop-asn") if e.asn == PROVIDER]
    assert (why.ttl, why.address, why.circuit, why.conflicting) == (4, PE_ER, None, False)
    assert why.text == (
        "hop 4 198.18.200.9 (AS64600) is the last hop before the Microsoft network at hop 6, "
        "but hop 5 between did not answer, where an MSEE may hide: no internet hand-over is seen"
    )


def test_ipvpn_silent_msee_with_the_customers_ce_configured_is_no_conflict():
    """Was a bug: the CE named the circuit, but the PE counted as a conflicting internet transit."""
    ce = "10.40.0.2"
    site = SiteFacts(circuits=(replace(VPN, ce_addresses=(ce,)),), internet_edges=(VPN_EDGE,))
    t = ipvpn_trace(None)
    t = replace(
        t, hops=(t.hops[0], Hop(ttl=2, replies=(Reply(address=ce, rtt_s=0.001),)), *t.hops[2:])
    )
    v = verdict(result(hops=t), site)
    assert (v.path_class, v.circuit, v.link) == ("expressroute", "utr-ipvpn", None)
    assert not any(e.conflicting for e in v.evidence), texts(v)
    assert v.confidence == 0.88  # the CE address alone, undiminished
    (unknown,) = of_kind(v, "unknown")
    assert (unknown.name, unknown.circuit) == ("link", "utr-ipvpn")


def test_a_hop_in_the_circuits_peer_asn_is_no_isp():
    """Was a bug: the router peering with the MSEE, in the circuit's peer ASN, read as an ISP.

    Here the MSEE answers from a Microsoft address outside the /30 (AS8075),
    adjacent to the provider's PE: without the peer ASN nothing tells this
    from an ISP's hand-over, with it the PE is the circuit's side.
    """
    site = SiteFacts(circuits=(replace(VPN, peer_asn=PROVIDER),), internet_edges=(VPN_EDGE,))
    r = result(hops=trace(LAN_GW, (PE_ER, PROVIDER), ("198.18.1.77", MS), MS_CORE, (PP_WE, MS)))
    v = verdict(r, site)
    assert v.path_class == "unknown", texts(v)
    (why,) = [e for e in of_kind(v, "hop-asn") if e.asn == PROVIDER]
    assert (why.ttl, why.address, why.circuit) == (2, PE_ER, "utr-ipvpn")
    assert why.text == (
        "hop 2 198.18.200.9 is in AS64600, the peer ASN of circuit utr-ipvpn: the router "
        "peering with the MSEE, not an internet transit"
    )
    # Another ASN in the same place is an ISP hand-over, as before.
    isp = result(hops=trace(LAN_GW, ("198.18.100.1", ISP), ("198.18.1.77", MS), (PP_WE, MS)))
    assert verdict(isp, site).path_class == "internet"


def test_the_hop_before_an_msee_answering_from_as12076_is_no_isp():
    """Was a bug: the MSEE answered from Microsoft's side (AS12076, outside the /30), and the
    provider's PE before it counted as a conflicting internet transit."""
    r = result(hops=trace(LAN_GW, (PE_ER, PROVIDER), ("198.18.1.2", 12076), MS_CORE, (PP_WE, MS)))
    v = verdict(r, VPN_SITE)
    assert (v.path_class, v.circuit) == ("expressroute", None)
    assert not any(e.conflicting for e in v.evidence), texts(v)
    assert v.confidence == 0.66
    (why,) = [e for e in of_kind(v, "hop-asn") if e.asn == PROVIDER]
    assert (why.ttl, why.address) == (2, PE_ER)


def test_ipvpn_reverse_trace_enters_at_the_providers_pe():
    """Holds: the /30's customer side answers from the provider's PE; it names circuit and link."""
    v = verdict(reverse_to_nat(PE_P), VPN_SITE, agent_role="azure-side")
    assert placed(v) == ON_VPN_PRIMARY
    assert not any(e.conflicting for e in v.evidence), texts(v)


def test_ipvpn_reverse_trace_with_a_silent_pe_has_no_internet_conflict():
    """Was a bug: coming back in, the P router after a silent PE "took over from Microsoft".

    The MSEE answered from AS12076, the ExpressRoute edge: what follows it is
    the circuit's side (here the provider's), whatever its ASN.
    """
    v = verdict(reverse_to_nat(None), VPN_SITE, agent_role="azure-side")
    # Was a gap: the circuit stayed unknown unless AS12076 was right before the
    # NAT address; Microsoft's last hop being an MSEE and one circuit
    # advertising the address name it, provider hops or not.
    assert (v.path_class, v.circuit, v.link) == ("expressroute", "utr-ipvpn", None)
    entry = next(e for e in of_kind(v, "hop-asn") if e.asn == 12076)
    assert (entry.circuit, entry.ttl, entry.address) == ("utr-ipvpn", 2, "198.18.1.2")
    assert entry.text == (
        "the reverse path reaches 203.0.113.70 from the ExpressRoute edge at hop 2, and only "
        "circuit utr-ipvpn advertises it (the link is not visible: no hop answered in a "
        "peering subnet after it)"
    )
    assert not any(e.conflicting for e in v.evidence), texts(v)
    (why,) = [e for e in of_kind(v, "hop-asn") if e.asn == PROVIDER]
    assert (why.ttl, why.address, why.conflicting) == (4, P_CORE, False)
    assert why.text == (
        "hop 4 198.18.200.5 (AS64600) is next to the ExpressRoute edge (AS12076) at hop 2: the "
        "circuit's side of the peering, not an internet transit"
    )


@pytest.mark.parametrize("asn", [12076, 64496, None], ids=["as12076", "customer-asn", "no-asn"])
def test_reverse_entry_at_a_peering_subnet_whatever_its_asn(asn):
    """Our lab's ASN zone puts the whole /30 in AS12076; real /30s are the customer's.

    Either way the /30's customer side names the circuit and link; Microsoft's
    last hop being that same address adds no second, conflicting entry.  Was
    a bug for AS12076: "only circuit fra-er-2 advertises it" conflicted.
    """
    r = result(
        "203.0.113.150",  # in fra-er-2's pool, entering over fra-er-1
        target="fra-nat-2",
        role="reverse",
        hops=trace(("198.18.0.9", MS), ("192.0.2.161", asn), "203.0.113.150"),
    )
    v = verdict(r, FRA, agent_role="azure-side")
    assert (v.path_class, v.circuit, v.link) == ("expressroute", "fra-er-1", "primary")
    assert not any(e.conflicting for e in v.evidence), texts(v)
    (f,) = find(r, v, FRA, tags=TAGS)
    assert (f.kind, f.severity, f.circuit) == ("asymmetric-circuit", "critical", "fra-er-1")


# --------------------------------------------------------------------------- silent internet hops


INET_SITE = SiteFacts(
    circuits=(VPN,),
    internet_edges=(InternetEdge(name="utr-inet", hop_addresses=("10.40.9.1",)),),
)


def test_internet_across_a_silent_transit_keeps_the_handover_when_the_edge_answered():
    """Holds (our lab's shape): edge hop, ISP, a transit that never answers, Microsoft."""
    r = result(hops=trace(LAN_GW, "10.40.9.1", ("198.18.100.1", ISP), None, MS_CORE, (PP_WE, MS)))
    v = verdict(r, INET_SITE)
    assert (v.path_class, v.egress) == ("internet", "utr-inet")
    assert any(e.asn == ISP and not e.conflicting for e in of_kind(v, "hop-asn"))
    assert v.confidence >= 0.8


def test_internet_handover_seen_adjacent_without_the_edge():
    """Holds: the edge rate-limited, the ISP right before Microsoft still says internet."""
    r = result(hops=trace(LAN_GW, None, ("198.18.100.1", ISP), MS_CORE, (PP_WE, MS)))
    assert verdict(r, INET_SITE).path_class == "internet"


def test_silence_before_microsoft_without_an_edge_hop_tells_nothing_at_a_site_with_a_circuit():
    """The same trace as a silent MSEE behind a provider: unknown, not a guess (no flip)."""
    r = result(hops=trace(LAN_GW, None, ("198.18.100.1", ISP), None, MS_CORE, (PP_WE, MS)))
    assert verdict(r, INET_SITE).path_class == "unknown"
    # A site without a circuit has no MSEE to hide there: the ISP hands over.
    no_circuit = replace(INET_SITE, circuits=())
    assert verdict(r, no_circuit).path_class == "internet"


# --------------------------------------------------------------------------- CE routers


# Two circuits at one site, both terminated on one CE pair (CE-A takes each
# circuit's primary link, CE-B each secondary), as Microsoft's resiliency
# guidance draws it: the CEs' inside addresses belong to both circuits.
CE_A, CE_B = "10.60.0.2", "10.60.0.3"
FRA1 = circuit(
    "fra-er-1", "Frankfurt", "192.0.2.160/30", ce=(CE_A, CE_B), adverts=("203.0.113.128/28",)
)
FRA2 = circuit(
    "fra-er-2",
    "Frankfurt2",
    "192.0.2.168/30",
    ce=(CE_A, CE_B),
    adverts=("203.0.113.144/28",),
    sku="premium",
)
FRA = SiteFacts(circuits=(FRA1, FRA2))


def test_one_ce_pair_for_two_circuits_the_msee_names_the_circuit():
    """Was a bug: the shared CE named the first circuit, so fra-er-2's path had a conflict."""
    v = verdict(result(hops=trace(LAN_GW, CE_A, "192.0.2.170", MS_CORE, (PP_WE, MS))), FRA)
    assert (v.path_class, v.circuit, v.link) == ("expressroute", "fra-er-2", "primary")
    assert not any(e.conflicting for e in v.evidence), texts(v)
    assert v.confidence >= 0.95
    (ce,) = of_kind(v, "ce-hop")
    assert (ce.circuit, ce.address, ce.ttl, ce.name) == (None, CE_A, 2, "shared-circuits")
    assert ce.text == (
        "hop 2 10.60.0.2 is a CE address of circuits fra-er-1 and fra-er-2: one router for "
        "them all, so it names no one circuit"
    )


def test_one_ce_pair_for_two_circuits_with_a_silent_msee_leaves_the_circuit_unknown():
    """Was a bug: named fra-er-1 whenever the MSEE was silent, a flip against fra-er-2."""
    v = verdict(result(hops=trace(LAN_GW, CE_B, None, MS_CORE, (PP_WE, MS))), FRA)
    assert (v.path_class, v.circuit, v.link) == ("expressroute", None, None)
    (unknown,) = of_kind(v, "unknown")
    assert (unknown.name, unknown.circuit) == ("circuit", None)
    assert unknown.text.startswith(
        "the circuit is unknown this time: CE address 10.60.0.3 (hop 2) serves several circuits"
    )


def test_route_via_a_ce_shared_by_two_circuits_names_none():
    r = result(route=RouteResult(interface="eth1", gateway=CE_A, protocol="bgp"))
    v = verdict(r, FRA, agent_role="datacenter")
    assert (v.path_class, v.circuit) == ("expressroute", None)
    (route,) = of_kind(v, "route")
    assert (route.circuit, route.address) == (None, CE_A)
    assert route.text == (
        "route via bgp gateway 10.60.0.2 = CE of circuits fra-er-1 and fra-er-2: it names no "
        "one circuit"
    )


# One router for the ExpressRoute link and the internet uplink (a small
# site's edge firewall): its inside address is a CE address and an edge hop.
EDGE_FW = "10.70.0.1"
ONE_BOX = SiteFacts(
    circuits=(replace(FRA1, ce_addresses=(EDGE_FW,)),),
    internet_edges=(
        InternetEdge(
            name="fra-inet", nat_addresses=("192.0.2.90",), hop_addresses=(EDGE_FW, "192.0.2.89")
        ),
    ),
)


@pytest.mark.parametrize(
    "hops, cls, circuit, egress",
    [
        # Was a bug: the CE address outranked the ISP and the edge's outside hop: "expressroute".
        (
            (LAN_GW, EDGE_FW, "192.0.2.89", ("198.18.100.1", ISP), MS_CORE),
            "internet",
            None,
            "fra-inet",
        ),
        ((LAN_GW, EDGE_FW, None, ("198.18.100.1", ISP), MS_CORE), "internet", None, None),
        ((LAN_GW, EDGE_FW, "192.0.2.162", MS_CORE), "expressroute", "fra-er-1", None),
        ((LAN_GW, EDGE_FW, None, MS_CORE), "unknown", None, None),
    ],
    ids=["internet", "internet-outside-silent", "expressroute", "next-hop-silent"],
)
def test_one_router_for_both_edges_tells_neither_way(hops, cls, circuit, egress):
    v = verdict(result(hops=trace(*hops, (PP_WE, MS))), ONE_BOX)
    assert (v.path_class, v.circuit, v.egress) == (cls, circuit, egress), texts(v)
    (box,) = [e for e in of_kind(v, "ce-hop") if e.address == EDGE_FW]
    assert (box.circuit, box.egress, box.name, box.conflicting) == (
        None,
        None,
        "shared-edge",
        False,
    )
    assert box.text == (
        "hop 2 10.70.0.1 is a CE address of circuit fra-er-1 and a hop of internet edge "
        "fra-inet: one router for both edges, so it tells neither way"
    )


def test_route_via_one_router_for_both_edges_decides_nothing():
    r = result(route=RouteResult(interface="eth0", gateway=EDGE_FW, protocol="static"))
    v = verdict(r, ONE_BOX, agent_role="datacenter")
    assert v.path_class == "unknown"
    (route,) = of_kind(v, "route")
    assert (route.circuit, route.egress, route.address) == (None, None, EDGE_FW)


# --------------------------------------------------------------------------- several hubs


# A branch with its own circuit at a partner edge (its own CE, its own /29
# NAT pool), and two hubs with their own circuits and NAT prefixes of other
# lengths: unique public prefixes per circuit, as the guide asks.
BRANCH_OWN, HUB_AMS, HUB_DUB = (
    circuit(name, location, first, ce=(ce,), adverts=(pool,), sku=sku)
    for name, location, first, ce, pool, sku in (
        (
            "Branch 12 / Equinix AM7",
            "Amsterdam",
            "192.0.2.192/30",
            "10.12.0.1",
            "203.0.113.200/29",
            "standard",
        ),
        ("hub", "Amsterdam2", "192.0.2.200/30", "10.1.1.1", "198.51.100.0/26", "standard"),
        ("hub-2", "Dublin", "192.0.2.208/30", "10.2.1.1", "198.51.100.64/32", "premium"),
    )
)
HUBS = SiteFacts(circuits=(BRANCH_OWN, HUB_AMS, HUB_DUB), prefer=("Branch 12 / Equinix AM7", "hub"))


@pytest.mark.parametrize(
    "hops, circuit, link, nat",
    [
        (("10.12.0.1", "192.0.2.194"), "Branch 12 / Equinix AM7", "primary", "203.0.113.201"),
        (("10.1.1.1", "192.0.2.206"), "hub", "secondary", "198.51.100.10"),
        (("10.2.1.1", "192.0.2.210"), "hub-2", "primary", "198.51.100.64"),
    ],
    ids=["branch-own", "hub", "hub-2"],
)
def test_each_circuit_with_its_own_nat_prefix_is_named_and_symmetric(hops, circuit, link, nat):
    """Holds: circuit names are fields (one is a prefix of another), distinct pools give no finding."""
    r = result(hops=trace(LAN_GW, *hops, MS_CORE, (PP_WE, MS)))
    v = verdict(r, HUBS)
    assert (v.path_class, v.circuit, v.link) == ("expressroute", circuit, link)
    assert not any(e.conflicting for e in v.evidence), texts(v)
    assert find(r, v, HUBS, tags=TAGS, nat_addresses=(nat,)) == ()


def test_hub_nat_address_over_the_other_hubs_circuit_is_asymmetric():
    """Holds: out over hub-2 with hub's NAT address, whose /26 only hub advertises."""
    r = result(hops=trace(LAN_GW, "10.2.1.1", "192.0.2.210", MS_CORE, (PP_WE, MS)))
    v = verdict(r, HUBS)
    (f,) = find(r, v, HUBS, tags=TAGS, nat_addresses=("198.51.100.10",))
    assert (f.kind, f.severity, f.circuit) == ("asymmetric-circuit", "critical", "hub-2")
    said = [e for e in f.evidence if e.kind == "advertised"]
    assert [(e.circuit, e.prefix, e.address) for e in said] == [
        ("hub", "198.51.100.0/26", "198.51.100.10")
    ]


def test_flows_shared_across_two_circuits_name_the_own_flows_circuit():
    """One site load-sharing flows over two circuits: the trace's own flow names the circuit.

    Was a bug in part: another flow's MSEE on the other circuit counted as a
    conflict (confidence x 0.8, "conflicting: ..."), though it is only that
    flow's path.
    """
    msee = Hop(
        ttl=3,
        replies=(
            Reply(address="192.0.2.202", rtt_s=0.001, flow=2),
            Reply(address="192.0.2.170", rtt_s=0.001, flow=1),
            Reply(address="192.0.2.170", rtt_s=0.001, flow=3),
        ),
    )
    t = trace(LAN_GW, CE_A, None, MS_CORE, (PP_WE, MS))
    t = replace(t, hops=(t.hops[0], t.hops[1], msee, *t.hops[3:]))
    site = SiteFacts(circuits=(replace(HUB_AMS, ce_addresses=(CE_A,)), FRA2))
    v = verdict(result(hops=t), site)
    assert (v.path_class, v.circuit, v.link) == ("expressroute", "fra-er-2", "primary")
    assert {e.circuit for e in of_kind(v, "msee-hop")} == {"hub", "fra-er-2"}
    assert not any(e.conflicting for e in v.evidence), texts(v)
    assert v.confidence >= 0.95
    assert v.links_seen == (LinkSeen("primary", 2),)  # fra-er-2's flows; flow 2 went elsewhere
    # Whose flow the trace is decides: flow 2's circuit is hub.
    v = verdict(result(hops=replace(t, flow=2)), site)
    assert (v.circuit, v.links_seen) == ("hub", (LinkSeen("primary", 1),))
    assert not any(e.conflicting for e in v.evidence), texts(v)


def test_flows_split_across_circuits_own_flow_unseen_name_no_circuit():
    """The own flow silent at the MSEE hop, two others on two circuits: which one is not known.

    Was a bug: the first reply recorded named the circuit, so the circuit
    changed with the order replies arrived in (a flip between cycles).  The
    own flow's CE address, where it answered, names it instead.
    """
    msee = Hop(
        ttl=3,
        replies=(
            Reply(address="192.0.2.202", rtt_s=0.001, flow=2),
            Reply(address="192.0.2.170", rtt_s=0.001, flow=3),
        ),
    )
    site = SiteFacts(circuits=(HUB_AMS, FRA2))
    t = trace(LAN_GW, None, None, MS_CORE, (PP_WE, MS))
    t = replace(t, hops=(t.hops[0], t.hops[1], msee, *t.hops[3:]))
    v = verdict(result(hops=t), site)
    assert (v.path_class, v.circuit) == ("expressroute", None)
    (unknown,) = of_kind(v, "unknown")
    assert unknown.text == (
        "the circuit is unknown this time: the trace's own flow was seen at no circuit and its "
        "other flows crossed circuits fra-er-2 and hub (flows load-shared across circuits)"
    )
    # Reversed order of the replies: the same verdict.
    flipped = replace(
        t, hops=(t.hops[0], t.hops[1], replace(msee, replies=msee.replies[::-1]), *t.hops[3:])
    )
    assert verdict(result(hops=flipped), site).circuit is None
    # The own flow's CE address (of hub only) names the circuit; fra-er-2's flow is no conflict.
    own_ce = Hop(ttl=2, replies=(Reply(address="10.1.1.1", rtt_s=0.001, flow=1),))
    v = verdict(result(hops=replace(t, hops=(t.hops[0], own_ce, *t.hops[2:]))), site)
    assert (v.circuit, v.link) == ("hub", "primary")
    assert not any(e.conflicting for e in v.evidence), texts(v)


# --------------------------------------------------------------------------- address sizes


def test_a_single_address_nat_pool_advertised_and_used_at_the_internet_edge():
    """Holds: a /32 advertised over hub-2 that the internet edge also NATs to."""
    edge = InternetEdge(
        name="hq-inet", nat_addresses=("198.51.100.64",), hop_addresses=("10.9.0.1",)
    )
    site = SiteFacts(circuits=(HUB_DUB,), internet_edges=(edge,))
    r = result(
        hops=trace(LAN_GW, "10.9.0.1", ("198.18.100.1", ISP), MS_CORE, (PP_WE, MS)),
        tcp=TcpResult(port=443, state="filtered", method="raw", failure="tcp.filtered"),
    )
    v = verdict(r, site)
    assert (v.path_class, v.egress) == ("internet", "hq-inet")
    nat = [f for f in find(r, v, site, tags=TAGS) if f.kind == "asymmetric-nat"]
    assert [(f.severity, f.circuit) for f in nat] == [("critical", "hub-2")]
    # The next address is outside the /32: no asymmetry.
    clean = SiteFacts(
        circuits=(HUB_DUB,), internet_edges=(replace(edge, nat_addresses=("198.51.100.65",)),)
    )
    assert [f.kind for f in find(r, verdict(r, clean), clean, tags=TAGS)] == ["handshake-blackhole"]


def test_ipv6_only_circuit_with_its_126s_elsewhere():
    """Holds: an IPv6 /126 outside our plan, MSEE = the second address (::2 of 2001:db8:cafe:7::/126)."""
    c = circuit("v6-er", "Amsterdam", "2001:db8:cafe:7::/126", adverts=("2001:db8:beef::/48",))
    pp6 = "2001:db8:ff::10"
    r = replace(
        result(
            pp6,
            hops=trace(
                "2001:db8:beef:1::1", "2001:db8:cafe:7::6", ("2001:db8:ff::1", MS), (pp6, MS)
            ),
        ),
        family="ipv6",
    )
    v = verdict(r, SiteFacts(circuits=(c,)))
    assert (v.path_class, v.circuit, v.link) == ("expressroute", "v6-er", "secondary")


# --------------------------------------------------------------------------- facts, not text


def test_the_expressroute_edge_hop_is_stated_once():
    """The hop where the path meets Microsoft is compared as a record, not by its sentence."""
    v = verdict(result(hops=trace(LAN_GW, ("198.18.1.1", 12076), MS_CORE, (PP_WE, MS))), VPN_SITE)
    assert [e.ttl for e in of_kind(v, "hop-asn") if e.asn == 12076] == [2]


# Peering locations as people write them, with the geopolitical region each is in.
WRITTEN_OTHERWISE = {
    "São Paulo": "South America",  # was a bug: an accent left the circuit unplaced
    "Querétaro (Mexico)": "North America",
    "Washington D.C.": "North America",
    "Newport (Wales)": "Europe",
    "Silicon Valley 2": "North America",
}


@pytest.mark.parametrize("location", list(WRITTEN_OTHERWISE))
def test_peering_locations_written_otherwise_are_placed(location):
    """The Premium check places a circuit's location however it is written."""
    placed_at = location_geography(location)
    assert placed_at is not None and placed_at.geography == WRITTEN_OTHERWISE[location]
