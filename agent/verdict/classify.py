"""The path verdict: which way one measured (target, address) really went, and why.

Pure logic over one Result and the site's facts.  Every fact that bears on
the path becomes a Signal with a side (ExpressRoute or internet), a strength
and an Evidence record naming the fact (fields, and a sentence rendered by
agent/verdict/evidence.py).  Strengths follow the evidence order of
docs/verdicts.md, strongest first:

1. a hop inside a circuit's peering /30 (MSEE = second address, CE = first)
   or at one of its CE addresses;
2. the local route (on edge hosts: a bgp route via a CE or MSEE);
3. CDN names in the CNAME chain and CDN service tags (AzureFrontDoor.*);
4. hop ASN / PTR: AS12076 (ExpressRoute), an ISP handing over to AS8075;
5. hops at a configured internet edge.

The strongest signal decides the class; agreeing signals from independent
sources raise confidence (noisy-OR), signals for the other side lower it
and are listed as "conflicting: ..." — never hidden.  See docs/verdicts.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from agent.report import Evidence, Link, PathClass, Result, SiteFacts, Verdict
from agent.verdict import cdnrules, links, routefilter
from agent.verdict import evidence as ev
from agent.verdict.communities import BgpCommunities
from agent.verdict.servicetags import ServiceTags, TagMatch
from agent.verdict.siteindex import SiteIndex, parse_ip

Side = Literal["expressroute", "internet"]

AGENT_ROLES = frozenset({"branch", "datacenter", "azure-side"})
EXPECTABLE = frozenset({"expressroute", "internet", "cdn"})
REVERSE_ROLE = "reverse"  # target role of a trace from the far side back to a site's NAT address
CDN_ROLE = "cdn"

# Strengths, in the evidence order above.  The gaps are deliberate: the
# strongest signal decides the class, so no weaker kind may outrank a
# stronger one, however many of them agree.
S_MSEE = 0.95
S_CE_LINK = 0.92  # the CE side of a peering /30: circuit and link both known
S_CE = 0.88  # a configured CE address: circuit known, link not
S_ROUTE_BGP = 0.85
S_ROUTE = 0.78
S_CDN_NAME_LAST = 0.75
S_CDN_NAME = 0.72
S_CDN_TAG = 0.72
S_ASN_EXPRESSROUTE = 0.66
S_ISP_HANDOVER = 0.62
S_EDGE_HOP = 0.6

CONFIDENCE_CAP = 0.99  # nothing measured from one vantage point is certain
CONFLICT_WEIGHT = 0.5  # an opposing signal of strength s scales confidence by 1 - 0.5 s
CIRCUIT_CONFLICT = 0.8  # ExpressRoute signals naming different circuits


@dataclass(frozen=True, slots=True)
class Signal:
    """One fact that says which way the path went."""

    side: Side
    strength: float
    evidence: Evidence
    source: str  # independent sources combine; the same source counts once
    cdn: bool = False  # points at CDN content (always the internet side)
    # A reply to another flow than the trace's own: where flows split across
    # circuits (a site load-sharing over two), another circuit is no conflict.
    other_flow: bool = False

    @property
    def circuit(self) -> str | None:
        return self.evidence.circuit

    @property
    def link(self) -> Link | None:
        return self.evidence.link

    @property
    def egress(self) -> str | None:
        return self.evidence.egress


@dataclass(frozen=True, slots=True)
class MicrosoftHop:
    ttl: int
    address: str
    evidence: Evidence

    @property
    def text(self) -> str:
        return self.evidence.text


@dataclass(frozen=True, slots=True)
class PathFacts:
    """Everything the classifier and the asymmetry findings read off one result."""

    reverse: bool
    signals: tuple[Signal, ...]
    context: tuple[Evidence, ...]  # facts that inform but do not decide the path
    microsoft_hop: MicrosoftHop | None  # first hop inside Microsoft's network (last, for reverse)
    tags: tuple[TagMatch, ...]
    cdn_fronted: Evidence | None  # why the target is CDN-fronted (for the expectation), if it is
    traffic_manager: Evidence | None = None  # a Traffic Manager name in the chain (DNS only)
    # Whether ExpressRoute can carry the address: in a service tag that is no
    # CDN tag.  None when that cannot be told (no service tags, no address).
    carried: bool | None = None


# --------------------------------------------------------------------------- facts


def path_facts(
    result: Result,
    site: SiteFacts,
    tags: ServiceTags | None,
    *,
    agent_role: str,
    cdn_suffixes: Iterable[str] = (),
) -> PathFacts:
    """Read every path-relevant fact off one result (see the module docstring)."""
    if agent_role not in AGENT_ROLES:
        raise ValueError(f"unknown agent role {agent_role!r}; one of {sorted(AGENT_ROLES)}")
    reverse = result.role == REVERSE_ROLE
    index = SiteIndex.of(site)
    signals: list[Signal] = []
    context: list[Evidence] = []

    hop_signals, hop_context = _hop_signals(result, index, reverse)
    signals += hop_signals
    context += hop_context
    if reverse:
        signals += _reverse_entry_signals(result, index)
    route_signals, route_context = _route_signals(result, index)
    signals += route_signals
    context += route_context

    cdn_fronted: Evidence | None = None
    traffic_manager: Evidence | None = None
    if not reverse:  # a reverse target is the customer's own NAT address: no CDN there
        names = cdnrules.cdn_names(
            (result.target, *(result.dns.cname_chain if result.dns else ())), cdn_suffixes
        )
        chain = result.dns is not None and bool(result.dns.cname_chain)
        cdn = [m for m in names if not m.traffic_manager]
        if cdn:
            best = next((m for m in cdn if m.last), cdn[0])
            e = _name_evidence(best, chain)
            strength = S_CDN_NAME_LAST if best.last else S_CDN_NAME
            signals.append(Signal("internet", strength, e, "dns", cdn=True))
            cdn_fronted = e
        tm = next((m for m in names if m.traffic_manager), None)
        if tm is not None:
            # Traffic Manager answers DNS only: the endpoint it hands out is
            # reached however that endpoint is routed, so it decides nothing.
            traffic_manager = ev.traffic_manager_context(_name_evidence(tm, chain))
            context.append(traffic_manager)

    matches: tuple[TagMatch, ...] = ()
    carried: bool | None = None
    if tags is not None and result.address:
        matches = tags.lookup(result.address)
        cdn_tag = next((m for m in matches if m.name in cdnrules.CDN_SERVICE_TAGS), None)
        carried = bool(matches) and cdn_tag is None
        if cdn_tag is not None:
            e = ev.service_tag(result.address, cdn_tag.name, cdn_tag.prefix, cdn_tag.region)
            signals.append(Signal("internet", S_CDN_TAG, e, "tag", cdn=True))
            cdn_fronted = cdn_fronted or e
        elif matches:
            context.append(
                ev.service_tags(result.address, [(m.name, m.region, m.prefix) for m in matches])
            )

    ms_hop, asn_signals, asn_context = _microsoft_hops(result, index, reverse)
    signals += asn_signals
    # The hop where the path meets Microsoft, unless a signal already states it (AS12076).
    if ms_hop is not None and all(s.evidence != ms_hop.evidence for s in signals):
        context.append(ms_hop.evidence)
    context += asn_context

    return PathFacts(
        reverse=reverse,
        signals=tuple(signals),
        context=tuple(context),
        microsoft_hop=ms_hop,
        tags=matches,
        cdn_fronted=cdn_fronted,
        traffic_manager=traffic_manager,
        carried=carried,
    )


def microsoft_hop(result: Result, site: SiteFacts) -> MicrosoftHop | None:
    """The hop where the trace meets Microsoft's network, if it does (findings use it)."""
    return _microsoft_hops(result, SiteIndex.of(site), result.role == REVERSE_ROLE)[0]


def microsoft_destination(result: Result, site: SiteFacts, tags: ServiceTags | None) -> bool | None:
    """Whether Microsoft's network routes replies from the destination.

    True when the address is in any service tag (Front Door's too), the
    destination answered from a Microsoft ASN, or the path crosses
    Microsoft's network (AS8075 / AS12076 / its PTR names) on the way; False
    when it answered from another ASN, or service tags are loaded, hold no
    prefix for it and no hop was Microsoft's (a third-party CDN node); None
    when nothing tells.
    """
    if not result.address:
        return None
    if tags is not None and tags.lookup(result.address):
        return True
    asns = {
        r.asn
        for h in (result.trace.hops if result.trace else ())
        for r in h.replies
        if r.address == result.address and r.asn is not None
    }
    if asns:
        return bool(asns & {cdnrules.ASN_MICROSOFT, cdnrules.ASN_EXPRESSROUTE})
    if microsoft_hop(result, site) is not None:
        return True
    return False if tags is not None else None


def _hops(result: Result):
    """(ttl, reply) in TTL order; replies as recorded (several per TTL behind load balancers).

    At each TTL the trace's own flow comes first: its link is the verdict's
    `link` (the other flows' links are in `links_seen`).
    """
    if result.trace is None:
        return
    own = result.trace.flow
    for hop in sorted(result.trace.hops, key=lambda h: h.ttl):
        for reply in sorted(hop.replies, key=lambda r: r.flow not in (None, own)):
            yield hop.ttl, reply


def _hop_signals(
    result: Result, index: SiteIndex, reverse: bool
) -> tuple[list[Signal], list[Evidence]]:
    """Signals from hops at a circuit or an internet edge, and hops that tell neither way."""
    out: list[Signal] = []
    context: list[Evidence] = []
    seen: set[str] = set()
    for ttl, reply in _hops(result):
        addr = reply.address
        if addr in seen:
            continue
        hit = index.circuit_address(addr)
        if hit is not None:
            seen.add(addr)
            names = tuple(c.name for c in hit.circuits)
            if hit.link is None and (both := index.edge_address(addr)) is not None:
                # One router for the ExpressRoute and the internet edge: the
                # next hop (an MSEE, or the edge's outside / an ISP) decides.
                context.append(
                    ev.shared_ce_hop(ttl, addr, names, egress=both.edge.name, reverse=reverse)
                )
                continue
            if hit.circuit is None:
                # A CE terminating several circuits: ExpressRoute, but which
                # circuit only an MSEE (or a peering subnet's address) says.
                e = ev.shared_ce_hop(ttl, addr, names, reverse=reverse)
                out.append(Signal("expressroute", S_CE, e, "trace"))
                continue
            name = hit.circuit.name
            if hit.link is None:
                e = ev.ce_hop(ttl, addr, name, reverse=reverse)
                strength = S_CE
            elif hit.role == "msee":
                e = ev.msee_hop(ttl, addr, name, hit.link, reverse=reverse)
                strength = S_MSEE
            elif hit.role == "ce":
                e = ev.ce_hop(ttl, addr, name, hit.link, reverse=reverse)
                strength = S_CE_LINK
            else:
                e = ev.ce_hop(ttl, addr, name, hit.link, subnet=hit.subnet, reverse=reverse)
                strength = S_CE_LINK
            other = result.trace is not None and reply.flow not in (None, result.trace.flow)
            out.append(Signal("expressroute", strength, e, "trace", other_flow=other))
            continue
        # The destination of a reverse trace is the NAT address itself, which
        # answers whichever way the packets came in: it says nothing.
        if addr == result.address:
            continue
        edge = index.edge_address(addr)
        if edge is not None:
            seen.add(addr)
            e = ev.edge_hop(
                ttl,
                addr,
                edge.edge.name,
                _nat_of_family(edge.edge.nat_addresses, result.address),
                nat=edge.role == "nat",
                reverse=reverse,
            )
            out.append(Signal("internet", S_EDGE_HOP, e, "edge"))
    return out, context


def _nat_of_family(nat_addresses: tuple[str, ...], destination: str | None) -> tuple[str, ...]:
    """The edge's NAT addresses a flow to `destination` can leave with: NAT stays in a family."""
    dst = parse_ip(destination)
    if dst is None:
        return nat_addresses
    return tuple(
        a for a in nat_addresses if (ip := parse_ip(a)) is not None and ip.version == dst.version
    )


def _reverse_entry_signals(result: Result, index: SiteIndex) -> list[Signal]:
    """A reverse trace that reaches the NAT address from the ER edge, no peering subnet seen.

    When the NAT address sits on the CE itself, the CE answers as the
    destination and never as a hop, so no /30 address shows; when a
    connectivity provider's PE holds the /30's customer side (layer-3 model)
    and stays silent, its P routers and the customer's routers follow the
    MSEE instead.  Microsoft's last hop being AS12076 (the MSEE) still says:
    in through a circuit -- the one that advertises the address, if only one
    does.  The link stays unknown.
    """
    hops = sorted(
        (h for h in (result.trace.hops if result.trace else ()) if h.replies), key=lambda h: h.ttl
    )
    dest = next((i for i, h in enumerate(hops) if result.address in h.addresses), None)
    if not dest:
        return []
    last = next(
        (
            i
            for i in range(dest - 1, -1, -1)
            if any(_is_microsoft(r.asn, r.ptr) for r in hops[i].replies)
        ),
        None,
    )
    if last is None:
        return []
    edge_reply = next((r for r in hops[last].replies if r.asn == cdnrules.ASN_EXPRESSROUTE), None)
    if edge_reply is None or index.circuit_address(edge_reply.address) is not None:
        return []  # no MSEE; or the peering subnet answered, which names the entry itself
    between = {a for h in hops[last + 1 : dest] for a in h.addresses}
    if any(index.circuit_address(a) or index.edge_address(a) for a in between):
        return []  # a circuit's hop names the entry itself; an edge's is another way in
    circuits = sorted({a.circuit.name for a in index.advertising(result.address)})
    if len(circuits) != 1:
        return []
    adjacent = hops[last].ttl == hops[dest].ttl - 1
    e = ev.reverse_entry(
        hops[last].ttl, edge_reply.address, result.address, circuits[0], adjacent=adjacent
    )
    return [Signal("expressroute", S_CE, e, "trace")]


def _is_microsoft(asn: int | None, ptr: str | None) -> bool:
    """A reply from Microsoft's network: its ASNs, or a backbone PTR name."""
    return asn in (cdnrules.ASN_MICROSOFT, cdnrules.ASN_EXPRESSROUTE) or bool(
        cdnrules.is_microsoft_ptr(ptr)
    )


def _route_signals(result: Result, index: SiteIndex) -> tuple[list[Signal], list[Evidence]]:
    """The local route's signal, or (a gateway serving both edges) a fact that decides nothing."""
    route = result.route
    if route is None or route.failure or not route.gateway:
        return [], []
    proto = route.protocol or ""
    hit = index.circuit_address(route.gateway)
    edge = index.edge_address(route.gateway)
    if hit is not None:
        strength = S_ROUTE_BGP if proto == "bgp" else S_ROUTE
        names = tuple(c.name for c in hit.circuits)
        if hit.link is None and edge is not None:
            # The next hop is a router of both edges: it routes either way.
            e = ev.route(route.gateway, route.interface, proto, shared=names, egress=edge.edge.name)
            return [], [e]
        if hit.circuit is None:
            e = ev.route(route.gateway, route.interface, proto, shared=names)
            return [Signal("expressroute", strength, e, "route")], []
        e = ev.route(
            route.gateway,
            route.interface,
            proto,
            circuit=hit.circuit.name,
            link=hit.link,
            msee=hit.role == "msee",
        )
        return [Signal("expressroute", strength, e, "route")], []
    if edge is not None:
        e = ev.route(route.gateway, route.interface, proto, egress=edge.edge.name)
        return [Signal("internet", S_ROUTE, e, "route")], []
    return [], []


def _microsoft_hops(
    result: Result, index: SiteIndex, reverse: bool
) -> tuple[MicrosoftHop | None, list[Signal], list[Evidence]]:
    """The hop where the path meets Microsoft, what the ASNs around it say, and context.

    AS12076 is the ExpressRoute edge, so a reply from it means the circuit.
    AS8075 (or a *.ntwk.msn.net / *.msedge.net PTR) is met on both paths;
    what tells them apart is the neighbour on the customer's side: an ISP
    (a known, non-Microsoft ASN that is no circuit or edge address of ours)
    means the internet.  A connectivity provider's routers (an IP VPN's PE
    and P routers, layer-3 model) look alike, so some neighbours are no ISP
    (`_no_handover`).
    """
    answered: list[tuple[int, str, int | None, str | None]] = []
    for ttl, reply in _hops(result):
        # A reverse trace ends at the site's own NAT address: that is the
        # customer, not an internet transit taking over from Microsoft.
        if reverse and reply.address == result.address:
            continue
        answered.append((ttl, reply.address, reply.asn, reply.ptr))
    signals: list[Signal] = []
    context: list[Evidence] = []
    er = next((a for a in answered if a[2] == cdnrules.ASN_EXPRESSROUTE), None)
    if er is not None:
        e = ev.microsoft_asn_hop(er[0], er[1], cdnrules.ASN_EXPRESSROUTE)
        signals.append(Signal("expressroute", S_ASN_EXPRESSROUTE, e, "asn"))

    def is_ms(a: tuple[int, str, int | None, str | None]) -> bool:
        return _is_microsoft(a[2], a[3])

    order = list(reversed(answered)) if reverse else answered
    pos = next((i for i, a in enumerate(order) if is_ms(a)), None)
    if pos is None:
        return None, signals, context
    ttl, addr, asn, ptr = order[pos]
    if asn in (cdnrules.ASN_MICROSOFT, cdnrules.ASN_EXPRESSROUTE):
        e = ev.microsoft_asn_hop(ttl, addr, asn)
    else:
        e = ev.microsoft_ptr_hop(ttl, addr, ptr or "", cdnrules.is_microsoft_ptr(ptr) or "")
    ms_hop = MicrosoftHop(ttl, addr, e)
    # The customer-side neighbour: the previous answering TTL going out, the
    # next one coming back in.
    neighbour = next((a for a in reversed(order[:pos]) if a[0] != ttl), None)
    if neighbour is not None:
        n_ttl, n_addr, n_asn, _ = neighbour
        ours = index.circuit_address(n_addr) or index.edge_address(n_addr)
        if n_asn is not None and not is_ms(neighbour) and ours is None:
            hidden = _no_handover(result, index, reverse, neighbour, (ttl, asn))
            if hidden is not None:
                context.append(hidden)
            else:
                e = ev.isp_handover(n_ttl, n_addr, n_asn, ttl, reverse=reverse)
                signals.append(Signal("internet", S_ISP_HANDOVER, e, "asn"))
    return ms_hop, signals, context


def _no_handover(
    result: Result,
    index: SiteIndex,
    reverse: bool,
    neighbour: tuple[int, str, int | None, str | None],
    microsoft: tuple[int, int | None],
) -> Evidence | None:
    """Why a non-Microsoft neighbour of Microsoft's network is no internet hand-over, if it is not.

    Between the customer's router and the MSEE a connectivity provider may
    route (an IP VPN's PE and P routers, in the provider's ASN), and MSEEs
    often stay silent (rate limits): then the provider's hop sits next to
    Microsoft's network exactly as an ISP's would.  It is no ISP when:

    - Microsoft's hop next to it is AS12076, the ExpressRoute edge (an MSEE);
    - its ASN is a circuit's peer ASN: the router peering with the MSEE;
    - going out, TTLs between it and Microsoft did not answer at a site with
      a circuit, and no internet edge hop answered: a silent MSEE may be
      there.  (Coming back in, the same silence sits between Microsoft's edge
      and an ISP on every internet path behind a silent transit, and an MSEE
      answering from AS12076 already tells the circuit's side: not used.)
    """
    n_ttl, n_addr, n_asn, _ = neighbour
    ms_ttl, ms_asn = microsoft
    assert n_asn is not None
    if ms_asn == cdnrules.ASN_EXPRESSROUTE:
        return ev.no_handover(n_ttl, n_addr, n_asn, ms_ttl, reverse=reverse, msee=True)
    site = index.site
    peer = next((c for c in site.circuits if c.peer_asn is not None and c.peer_asn == n_asn), None)
    if peer is not None:
        return ev.no_handover(n_ttl, n_addr, n_asn, ms_ttl, reverse=reverse, circuit=peer.name)
    if reverse or ms_ttl - n_ttl <= 1 or not site.circuits:
        return None  # adjacent: the hand-over is seen (or the site has no MSEE to hide)
    trace = result.trace
    replied = {r.address for h in (trace.hops if trace else ()) for r in h.replies}
    if any(index.edge_address(a) is not None for a in replied):
        return None  # the path shows an internet edge: the silence hides no MSEE
    silent = tuple(range(n_ttl + 1, ms_ttl))
    return ev.no_handover(n_ttl, n_addr, n_asn, ms_ttl, reverse=reverse, silent=silent)


def _name_evidence(match: cdnrules.NameMatch, has_chain: bool) -> Evidence:
    return ev.cname(
        match.name,
        match.suffix,
        last=match.last,
        chain=has_chain,
        traffic_manager=match.traffic_manager,
    )


# --------------------------------------------------------------------------- expectation


def expected_class(
    result: Result,
    site: SiteFacts,
    facts: PathFacts,
    *,
    expect: str | None,
    communities: BgpCommunities | None = None,
) -> tuple[PathClass, Evidence]:
    """The class this result should have, and why (docs/verdicts.md, "Expectation").

    A target's own `expect` first; then, when route filters are known, the
    circuits whose filter lets Microsoft advertise the destination (the
    failover order picks among them), else the internet.
    """
    if expect is not None:
        if expect not in EXPECTABLE:
            raise ValueError(f"expect must be one of {sorted(EXPECTABLE)}, not {expect!r}")
        return expect, ev.expectation(expect, "configured for this target")  # type: ignore[return-value]
    if facts.reverse:
        adverts = SiteIndex.of(site).advertising(result.address)
        if adverts:
            a = adverts[0]
            return "expressroute", ev.expectation(
                "expressroute",
                f"{result.address} is in {a.prefix}, advertised over circuit {a.circuit.name}",
                circuit=a.circuit.name,
                prefix=a.prefix,
                address=result.address,
            )
        return "internet", ev.expectation(
            "internet", f"no circuit advertises {result.address}", address=result.address
        )
    if facts.cdn_fronted is not None:
        cause = facts.cdn_fronted
        return "cdn", ev.expectation(
            "cdn",
            f"{cause.text}, and ExpressRoute never carries CDN content",
            address=cause.address,
            prefix=cause.prefix,
            tag=cause.tag,
        )
    if result.role == CDN_ROLE:
        return "cdn", ev.expectation("cdn", "the target's role is cdn")
    if facts.traffic_manager is not None and facts.carried is False and result.address:
        # Traffic Manager handed out an endpoint ExpressRoute cannot carry.
        return "internet", ev.expectation(
            "internet",
            f"Traffic Manager hands out {result.address}, which is in no service tag "
            "ExpressRoute carries",
            address=result.address,
        )
    if site.circuits:
        advert = routefilter.advertisement(result.address, site, communities)
        if advert is not None:
            return _expected_by_route_filter(advert, result.prefer or site.prefer)
        names = ", ".join(c.name for c in site.circuits)
        return "expressroute", ev.expectation(
            "expressroute",
            f"the site has circuit {names} (no route filter known: every Microsoft prefix "
            "assumed advertised)",
        )
    return "internet", ev.expectation("internet", "the site has no ExpressRoute circuit")


def _expected_by_route_filter(
    advert: routefilter.Advertisement, prefer: tuple[str, ...]
) -> tuple[PathClass, Evidence]:
    address = advert.address
    advertising = advert.advertising()
    if advertising:
        best, why = routefilter.preferred(advertising, prefer)
        c = best.community
        if c is None:  # that circuit's filter is unknown: today's rule, said so
            text = (
                f"circuit {best.circuit.name} has no route filter known: every Microsoft prefix "
                f"assumed advertised{why}"
            )
        else:
            text = (
                f"{address} is in {ev.community_text(c.value, c.name, c.region)}, which route "
                f"filter {best.circuit.route_filter} of circuit {best.circuit.name} allows{why}"
            )
        return "expressroute", ev.expectation(
            "expressroute",
            text,
            circuit=best.circuit.name,
            prefix=best.prefix,
            address=address,
            community=c.value if c else None,
            service=c.name if c else None,
            region=c.region if c else None,
        )
    if not advert.matches:
        return "internet", ev.expectation(
            "internet",
            f"{address} is in no BGP community of Microsoft peering: Microsoft advertises it "
            "over no circuit",
            address=address,
        )
    m = advert.matches[0]
    names = ", ".join(c.circuit.name for c in advert.circuits)
    return "internet", ev.expectation(
        "internet",
        f"{address} is in {ev.community_text(m.community.value, m.community.name, m.community.region)}, "
        f"which Microsoft advertises over none of circuit {names} (route filters)",
        prefix=m.prefix,
        address=address,
        community=m.community.value,
        service=m.community.name,
        region=m.community.region,
    )


# --------------------------------------------------------------------------- verdict


def classify(
    result: Result,
    site: SiteFacts,
    tags: ServiceTags | None,
    *,
    agent_role: str,
    expect: str | None,
    cdn_suffixes: Iterable[str] = (),
    communities: BgpCommunities | None = None,
) -> Verdict:
    """The verdict for one result: class, circuit and link or egress, confidence, evidence.

    `site` is the facts of the site the path belongs to: the agent's own site
    for forward probes, the site owning the traced NAT address for a reverse
    trace (target role "reverse", from an azure-side or datacenter agent).
    `expect` is the target's configured expectation, or None for the default.
    `communities`: Microsoft peering's BGP communities, which with the
    circuits' route filters say where Microsoft advertises the destination.
    """
    facts = path_facts(result, site, tags, agent_role=agent_role, cdn_suffixes=cdn_suffixes)
    verdict = decide(facts, result, SiteIndex.of(site))
    expected, why = expected_class(result, site, facts, expect=expect, communities=communities)
    verdict = _cdn_outside_expressroute(verdict, facts, result, expected)
    matches = None if verdict.path_class == "unknown" else verdict.path_class == expected
    return replace(
        verdict,
        evidence=(*verdict.evidence, why),
        expected=expected,
        matches_expected=matches,
    )


def _cdn_outside_expressroute(
    verdict: Verdict, facts: PathFacts, result: Result, expected: PathClass
) -> Verdict:
    """An internet path to CDN content whose name is on no suffix list (Akamai, a new Front Door name).

    A target expected on a CDN that is reached over the internet at an
    address in no service tag ExpressRoute carries is what was expected:
    ExpressRoute could not have carried it.  Without service tags that
    cannot be told, and the path stays `internet`.
    """
    if expected != "cdn" or verdict.path_class != "internet" or facts.carried is not False:
        return verdict
    assert result.address is not None  # carried is only known for an address
    why = ev.untagged(
        result.address,
        why="a CDN node that ExpressRoute never carries, although no CDN name or tag shows it",
    )
    return replace(verdict, path_class="cdn", evidence=(*verdict.evidence, why))


def decide(facts: PathFacts, result: Result, index: SiteIndex | None = None) -> Verdict:
    """Class, circuit/link/egress and confidence from the signals (no expectation)."""
    signals = sorted(facts.signals, key=lambda s: -s.strength)
    if not signals:
        return Verdict(
            path_class="unknown",
            confidence=0.0,
            evidence=(_why_unknown(result), *facts.context),
        )
    top = signals[0]
    side = top.side
    agree = [s for s in signals if s.side == side]
    against = [s for s in signals if s.side != side]

    circuit = link = egress = None
    penalty = 1.0
    conflicts: list[Signal] = []
    if side == "expressroute":
        path_class: PathClass = "expressroute"
        # The strongest signal of the trace's own flow (or the route) names
        # the circuit; other flows' (load-shared, maybe over another circuit)
        # only when the own flow named none and they agree on one.
        own = next((s.circuit for s in agree if s.circuit and not s.other_flow), None)
        others = {s.circuit for s in agree if s.circuit and s.other_flow}
        circuit = own or (next(iter(others)) if len(others) == 1 else None)
        # The link of the trace's own flow at the MSEE (or the strongest
        # signal naming one): informative, since both links usually carry
        # flows at once.  Another link of the same circuit is no conflict.
        link = next((s.link for s in agree if s.circuit == circuit and s.link), None)
        for s in agree:
            # Another flow on another circuit is load-sharing across circuits
            # (the path of that flow), not a contradiction of this one's.
            if s.circuit and s.circuit != circuit and not s.other_flow:
                penalty = min(penalty, CIRCUIT_CONFLICT)
                conflicts.append(s)
    else:
        path_class = "cdn" if any(s.cdn for s in agree) else "internet"
        egress = next((s.egress for s in agree if s.egress), None)
        for s in agree:
            if s.egress and s.egress != egress:
                penalty = min(penalty, CIRCUIT_CONFLICT)
                conflicts.append(s)

    # noisy-OR over independent sources: the strongest signal of each source
    best: dict[str, float] = {}
    for s in agree:
        if s not in conflicts:
            best[s.source] = max(best.get(s.source, 0.0), s.strength)
    doubt = 1.0
    for strength in best.values():
        doubt *= 1.0 - strength
    confidence = min(1.0 - doubt, CONFIDENCE_CAP) * penalty
    if against:
        confidence *= 1.0 - CONFLICT_WEIGHT * max(s.strength for s in against)

    evidence = [s.evidence for s in agree if s not in conflicts]
    evidence += [ev.conflicting(s.evidence) for s in conflicts]
    evidence += [ev.conflicting(s.evidence) for s in against]
    evidence += facts.context

    seen = links.LinksSeen((), 0)
    if path_class == "expressroute":
        if index is not None:
            seen = links.links_seen(result, index, circuit)
        if circuit is None:
            split = tuple(sorted({s.circuit for s in agree if s.circuit}))
            shared = next((s for s in agree if s.evidence.kind in ("ce-hop", "route")), None)
            evidence.append(
                links.unknown_circuit(result, _shared_by(shared) if shared else None, split)
            )
        elif link is None:
            named_by = next(s for s in agree if s.circuit == circuit)
            evidence.append(links.unknown_link(result, circuit, _named_by(named_by)))
    return Verdict(
        path_class=path_class,
        confidence=round(confidence, 2),
        evidence=tuple(evidence),
        circuit=circuit,
        link=link,
        egress=egress,
        links_seen=seen.links,
        msee_flows=seen.msee_flows,
    )


def _shared_by(s: Signal) -> str:
    """What answered at the ER edge yet named no circuit: a CE several circuits share."""
    e = s.evidence
    if e.kind == "route":
        return f"the route's gateway {e.address} is a CE of several circuits"
    return f"CE address {e.address} (hop {e.ttl}) serves several circuits"


def _named_by(s: Signal) -> str:
    e = s.evidence
    if e.kind == "route":
        return f"the route via {e.address}"
    if e.kind == "ce-hop":
        return f"CE address {e.address} (hop {e.ttl})"
    if e.kind == "hop-asn":
        return f"the ExpressRoute edge at hop {e.ttl} with the advertisement of {e.circuit}"
    return e.kind


def _why_unknown(result: Result) -> Evidence:
    if result.address is None:
        failure = result.failure or (result.dns.failure if result.dns else None)
        return ev.unknown(
            "address", f"no address to probe ({failure})" if failure else "no address to probe"
        )
    parts: list[str] = []
    trace = result.trace
    if trace is None:
        parts.append("no trace")
    elif trace.failure:
        parts.append(f"trace failed ({trace.failure})")
    elif not any(h.replies for h in trace.hops):
        parts.append("no hop answered the trace")
    else:
        parts.append("no hop is at a circuit or an internet edge, and no ASN shows the way in")
    route = result.route
    if route is None:
        parts.append("no route")
    elif route.failure:
        parts.append(f"route lookup failed ({route.failure})")
    else:
        parts.append(
            f"route via {route.gateway or route.interface or 'an unknown gateway'} "
            "is neither a CE nor an internet edge"
        )
    return ev.unknown("path", "path unknown: " + "; ".join(parts))
