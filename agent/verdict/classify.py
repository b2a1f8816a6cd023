"""The path verdict: which way one measured (target, address) really went, and why.

Pure logic over one Result and the site's facts.  Every fact that bears on
the path becomes a Signal with a side (ExpressRoute or internet), a strength
and a sentence naming the fact.  Strengths follow the evidence order of
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

from agent.report import Link, PathClass, Result, SiteFacts, Verdict
from agent.verdict import cdnrules
from agent.verdict.servicetags import ServiceTags, TagMatch
from agent.verdict.siteindex import SiteIndex

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
S_TRAFFIC_MANAGER = 0.62
S_ASN_EXPRESSROUTE = 0.66
S_ISP_HANDOVER = 0.62
S_EDGE_HOP = 0.6

CONFIDENCE_CAP = 0.99  # nothing measured from one vantage point is certain
CONFLICT_WEIGHT = 0.5  # an opposing signal of strength s scales confidence by 1 - 0.5 s
CIRCUIT_CONFLICT = 0.8  # ExpressRoute signals naming different circuits
LINK_CONFLICT = 0.9  # the same circuit, different links


@dataclass(frozen=True, slots=True)
class Signal:
    """One fact that says which way the path went."""

    side: Side
    strength: float
    text: str
    source: str  # independent sources combine; the same source counts once
    circuit: str | None = None
    link: Link | None = None
    egress: str | None = None
    cdn: bool = False  # points at CDN content (always the internet side)


@dataclass(frozen=True, slots=True)
class MicrosoftHop:
    ttl: int
    address: str
    text: str


@dataclass(frozen=True, slots=True)
class PathFacts:
    """Everything the classifier and the asymmetry findings read off one result."""

    reverse: bool
    signals: tuple[Signal, ...]
    context: tuple[str, ...]  # facts that inform but do not decide the path
    microsoft_hop: MicrosoftHop | None  # first hop inside Microsoft's network (last, for reverse)
    tags: tuple[TagMatch, ...]
    cdn_fronted: str | None  # why the target is CDN-fronted (for the expectation), if it is


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
    context: list[str] = []

    signals += _hop_signals(result, index, reverse)
    if reverse:
        signals += _reverse_entry_signals(result, index)
    signals += _route_signals(result, index)

    cdn_fronted: str | None = None
    if not reverse:  # a reverse target is the customer's own NAT address: no CDN there
        names = cdnrules.cdn_names(
            (result.target, *(result.dns.cname_chain if result.dns else ())), cdn_suffixes
        )
        if names:
            best = next((m for m in names if m.last), names[0])
            text = _name_text(best, result.dns is not None and bool(result.dns.cname_chain))
            strength = (
                S_TRAFFIC_MANAGER
                if best.traffic_manager
                else S_CDN_NAME_LAST
                if best.last
                else S_CDN_NAME
            )
            signals.append(Signal("internet", strength, text, "dns", cdn=True))
            cdn_fronted = text

    matches: tuple[TagMatch, ...] = ()
    if tags is not None and result.address:
        matches = tags.lookup(result.address)
        cdn_tag = next((m for m in matches if m.name in cdnrules.CDN_SERVICE_TAGS), None)
        if cdn_tag is not None:
            text = f"{result.address} is in service tag {cdn_tag.name}"
            signals.append(Signal("internet", S_CDN_TAG, text, "tag", cdn=True))
            cdn_fronted = cdn_fronted or text
        elif matches:
            context.append(_tags_text(result.address, matches))

    ms_hop, asn_signals = _microsoft_hops(result, index, reverse)
    signals += asn_signals
    if ms_hop is not None and all(s.text != ms_hop.text for s in signals):
        context.append(ms_hop.text)

    return PathFacts(
        reverse=reverse,
        signals=tuple(signals),
        context=tuple(context),
        microsoft_hop=ms_hop,
        tags=matches,
        cdn_fronted=cdn_fronted,
    )


def microsoft_hop(result: Result, site: SiteFacts) -> MicrosoftHop | None:
    """The hop where the trace meets Microsoft's network, if it does (findings use it)."""
    return _microsoft_hops(result, SiteIndex.of(site), result.role == REVERSE_ROLE)[0]


def _hops(result: Result):
    """(ttl, reply) in TTL order; replies as recorded (several per TTL behind load balancers)."""
    if result.trace is None:
        return
    for hop in sorted(result.trace.hops, key=lambda h: h.ttl):
        for reply in hop.replies:
            yield hop.ttl, reply


def _hop_signals(result: Result, index: SiteIndex, reverse: bool) -> list[Signal]:
    out: list[Signal] = []
    seen: set[tuple[str, str]] = set()
    where = ": the reverse path enters the site there" if reverse else ""
    for ttl, reply in _hops(result):
        addr = reply.address
        hit = index.circuit_address(addr)
        if hit is not None and (hit.circuit.name, addr) not in seen:
            seen.add((hit.circuit.name, addr))
            name = hit.circuit.name
            if hit.link is None:
                text = f"hop {ttl} {addr} is a CE address of circuit {name}{where}"
                strength = S_CE
            elif hit.role == "msee":
                text = f"hop {ttl} {addr} is the MSEE of circuit {name} ({hit.link} link){where}"
                strength = S_MSEE
            elif hit.role == "ce":
                text = f"hop {ttl} {addr} is the CE of circuit {name} ({hit.link} link){where}"
                strength = S_CE_LINK
            else:
                text = (
                    f"hop {ttl} {addr} is in the {hit.link} peering subnet {hit.subnet} "
                    f"of circuit {name}{where}"
                )
                strength = S_CE_LINK
            out.append(Signal("expressroute", strength, text, "trace", name, hit.link))
            continue
        # The destination of a reverse trace is the NAT address itself, which
        # answers whichever way the packets came in: it says nothing.
        if addr == result.address:
            continue
        edge = index.edge_address(addr)
        if edge is not None and (edge.edge.name, addr) not in seen:
            seen.add((edge.edge.name, addr))
            what = "NAT address" if edge.role == "nat" else "a hop"
            if reverse:
                text = f"hop {ttl} {addr} is {what} of internet edge {edge.edge.name}{where}"
            else:
                text = f"{_egress_text(edge.edge)}: hop {ttl} {addr} is {what} of that edge"
            out.append(Signal("internet", S_EDGE_HOP, text, "edge", egress=edge.edge.name))
    return out


def _reverse_entry_signals(result: Result, index: SiteIndex) -> list[Signal]:
    """A reverse trace that reaches the NAT address straight from the ER edge.

    When the NAT address sits on the CE itself, the CE answers as the
    destination and never as a hop, so no /30 address shows.  The hop just
    before it being AS12076 (the MSEE) still says: in through a circuit — the
    one that advertises the address, if only one does.  The link stays unknown.
    """
    hops = sorted(
        (h for h in (result.trace.hops if result.trace else ()) if h.replies), key=lambda h: h.ttl
    )
    dest = next((i for i, h in enumerate(hops) if result.address in h.addresses), None)
    if not dest or hops[dest - 1].ttl != hops[dest].ttl - 1:
        return []
    before = hops[dest - 1]
    if not any(r.asn == cdnrules.ASN_EXPRESSROUTE for r in before.replies):
        return []
    circuits = sorted({a.circuit.name for a in index.advertising(result.address)})
    if len(circuits) != 1:
        return []
    text = (
        f"the reverse path reaches {result.address} from the ExpressRoute edge at hop {before.ttl}, "
        f"and only circuit {circuits[0]} advertises it (the link is not visible: the NAT address is on the CE)"
    )
    return [Signal("expressroute", S_CE, text, "trace", circuits[0], None)]


def _route_signals(result: Result, index: SiteIndex) -> list[Signal]:
    route = result.route
    if route is None or route.failure or not route.gateway:
        return []
    proto = route.protocol or ""
    via = f"route via {proto + ' ' if proto else ''}gateway {route.gateway}"
    hit = index.circuit_address(route.gateway)
    if hit is not None:
        strength = S_ROUTE_BGP if proto == "bgp" else S_ROUTE
        what = "MSEE" if hit.role == "msee" else "CE"
        link = f" ({hit.link} link)" if hit.link else ""
        text = f"{via} = {what} of {hit.circuit.name}{link}"
        return [Signal("expressroute", strength, text, "route", hit.circuit.name, hit.link)]
    edge = index.edge_address(route.gateway)
    if edge is not None:
        text = f"{via} = internet edge {edge.edge.name}"
        return [Signal("internet", S_ROUTE, text, "route", egress=edge.edge.name)]
    return []


def _microsoft_hops(
    result: Result, index: SiteIndex, reverse: bool
) -> tuple[MicrosoftHop | None, list[Signal]]:
    """The hop where the path meets Microsoft, and what the ASNs around it say.

    AS12076 is the ExpressRoute edge, so a reply from it means the circuit.
    AS8075 (or a *.ntwk.msn.net / *.msedge.net PTR) is met on both paths;
    what tells them apart is the neighbour on the customer's side: an ISP
    (a known, non-Microsoft ASN that is no circuit or edge address of ours)
    means the internet.
    """
    answered: list[tuple[int, str, int | None, str | None]] = []
    for ttl, reply in _hops(result):
        # A reverse trace ends at the site's own NAT address: that is the
        # customer, not an internet transit taking over from Microsoft.
        if reverse and reply.address == result.address:
            continue
        answered.append((ttl, reply.address, reply.asn, reply.ptr))
    signals: list[Signal] = []
    er = next((a for a in answered if a[2] == cdnrules.ASN_EXPRESSROUTE), None)
    if er is not None:
        signals.append(
            Signal(
                "expressroute",
                S_ASN_EXPRESSROUTE,
                f"hop {er[0]} {er[1]} is AS12076 (Microsoft ExpressRoute edge)",
                "asn",
            )
        )

    def is_ms(a: tuple[int, str, int | None, str | None]) -> bool:
        return a[2] in (cdnrules.ASN_MICROSOFT, cdnrules.ASN_EXPRESSROUTE) or bool(
            cdnrules.is_microsoft_ptr(a[3])
        )

    order = list(reversed(answered)) if reverse else answered
    pos = next((i for i, a in enumerate(order) if is_ms(a)), None)
    if pos is None:
        return None, signals
    ttl, addr, asn, ptr = order[pos]
    if asn == cdnrules.ASN_MICROSOFT:
        text = f"hop {ttl} {addr} is AS8075 (Microsoft global network)"
    elif asn == cdnrules.ASN_EXPRESSROUTE:
        text = f"hop {ttl} {addr} is AS12076 (Microsoft ExpressRoute edge)"
    else:
        text = f"hop {ttl} {addr} ({ptr}) is in the Microsoft global network (*.{cdnrules.is_microsoft_ptr(ptr)})"
    ms_hop = MicrosoftHop(ttl, addr, text)
    # The customer-side neighbour: the previous answering TTL going out, the
    # next one coming back in.
    neighbour = next((a for a in reversed(order[:pos]) if a[0] != ttl), None)
    if neighbour is not None:
        n_ttl, n_addr, n_asn, _ = neighbour
        ours = index.circuit_address(n_addr) or index.edge_address(n_addr)
        if n_asn is not None and not is_ms(neighbour) and ours is None:
            text = (
                f"hop {n_ttl} {n_addr} (AS{n_asn}) "
                + ("hands over to" if not reverse else "takes over from")
                + f" the Microsoft network at hop {ttl}: an internet transit, not a peering link"
            )
            signals.append(Signal("internet", S_ISP_HANDOVER, text, "asn"))
    return ms_hop, signals


def _name_text(match: cdnrules.NameMatch, has_chain: bool) -> str:
    if match.traffic_manager:
        return f"CNAME chain passes through Traffic Manager (*.{match.suffix}: {match.name})"
    if not has_chain:
        return f"target name ends in *.{match.suffix} ({match.name})"
    if match.last:
        return f"CNAME chain ends in *.{match.suffix} ({match.name})"
    return f"CNAME chain passes through *.{match.suffix} ({match.name})"


def _tags_text(address: str, matches: tuple[TagMatch, ...]) -> str:
    names = ", ".join(m.name for m in matches[:4])
    more = f" and {len(matches) - 4} more" if len(matches) > 4 else ""
    region = next((m.region for m in matches if m.region), None)
    where = f" (region {region})" if region else ""
    noun = "tag" if len(matches) == 1 else "tags"
    return f"{address} is in service {noun} {names}{more}{where}"


def _egress_text(edge) -> str:
    nat = f" (NAT {', '.join(edge.nat_addresses)})" if edge.nat_addresses else ""
    return f"egress via internet edge {edge.name}{nat}"


# --------------------------------------------------------------------------- expectation


def expected_class(
    result: Result,
    site: SiteFacts,
    facts: PathFacts,
    *,
    expect: str | None,
) -> tuple[PathClass, str]:
    """The class this result should have, and why (docs/verdicts.md, "Expectation")."""
    if expect is not None:
        if expect not in EXPECTABLE:
            raise ValueError(f"expect must be one of {sorted(EXPECTABLE)}, not {expect!r}")
        return expect, f"expected {expect}: configured for this target"  # type: ignore[return-value]
    if facts.reverse:
        adverts = SiteIndex.of(site).advertising(result.address)
        if adverts:
            a = adverts[0]
            return "expressroute", (
                f"expected expressroute: {result.address} is in {a.prefix}, "
                f"advertised over circuit {a.circuit.name}"
            )
        return "internet", f"expected internet: no circuit advertises {result.address}"
    if facts.cdn_fronted:
        return (
            "cdn",
            f"expected cdn: {facts.cdn_fronted}, and ExpressRoute never carries CDN content",
        )
    if result.role == CDN_ROLE:
        return "cdn", "expected cdn: the target's role is cdn"
    if site.circuits:
        names = ", ".join(c.name for c in site.circuits)
        return "expressroute", f"expected expressroute: the site has circuit {names}"
    return "internet", "expected internet: the site has no ExpressRoute circuit"


# --------------------------------------------------------------------------- verdict


def classify(
    result: Result,
    site: SiteFacts,
    tags: ServiceTags | None,
    *,
    agent_role: str,
    expect: str | None,
    cdn_suffixes: Iterable[str] = (),
) -> Verdict:
    """The verdict for one result: class, circuit and link or egress, confidence, evidence.

    `site` is the facts of the site the path belongs to: the agent's own site
    for forward probes, the site owning the traced NAT address for a reverse
    trace (target role "reverse", from an azure-side or datacenter agent).
    `expect` is the target's configured expectation, or None for the default.
    """
    facts = path_facts(result, site, tags, agent_role=agent_role, cdn_suffixes=cdn_suffixes)
    verdict = decide(facts, result)
    expected, why = expected_class(result, site, facts, expect=expect)
    matches = None if verdict.path_class == "unknown" else verdict.path_class == expected
    return replace(
        verdict,
        evidence=(*verdict.evidence, why),
        expected=expected,
        matches_expected=matches,
    )


def decide(facts: PathFacts, result: Result) -> Verdict:
    """Class, circuit/link/egress and confidence from the signals (no expectation)."""
    signals = sorted(facts.signals, key=lambda s: -s.strength)
    if not signals:
        return Verdict(
            path_class="unknown",
            confidence=0.0,
            evidence=(*_why_unknown(result), *facts.context),
        )
    top = signals[0]
    side = top.side
    agree = [s for s in signals if s.side == side]
    against = [s for s in signals if s.side != side]

    circuit = link = egress = None
    penalty = 1.0
    conflicts: list[str] = []
    if side == "expressroute":
        path_class: PathClass = "expressroute"
        circuit = top.circuit or next((s.circuit for s in agree if s.circuit), None)
        link = next((s.link for s in agree if s.circuit == circuit and s.link), None)
        for s in agree:
            if s.circuit and s.circuit != circuit:
                penalty = min(penalty, CIRCUIT_CONFLICT)
                conflicts.append(s.text)
            elif s.circuit == circuit and s.link and link and s.link != link:
                penalty = min(penalty, LINK_CONFLICT)
                conflicts.append(s.text)
    else:
        path_class = "cdn" if any(s.cdn for s in agree) else "internet"
        egress = next((s.egress for s in agree if s.egress), None)
        for s in agree:
            if s.egress and s.egress != egress:
                penalty = min(penalty, CIRCUIT_CONFLICT)
                conflicts.append(s.text)

    # noisy-OR over independent sources: the strongest signal of each source
    best: dict[str, float] = {}
    for s in agree:
        if s.text not in conflicts:
            best[s.source] = max(best.get(s.source, 0.0), s.strength)
    doubt = 1.0
    for strength in best.values():
        doubt *= 1.0 - strength
    confidence = min(1.0 - doubt, CONFIDENCE_CAP) * penalty
    if against:
        confidence *= 1.0 - CONFLICT_WEIGHT * max(s.strength for s in against)

    evidence = [s.text for s in agree if s.text not in conflicts]
    evidence += [f"conflicting: {t}" for t in conflicts]
    evidence += [f"conflicting: {s.text}" for s in against]
    evidence += facts.context
    return Verdict(
        path_class=path_class,
        confidence=round(confidence, 2),
        evidence=tuple(evidence),
        circuit=circuit,
        link=link,
        egress=egress,
    )


def _why_unknown(result: Result) -> tuple[str, ...]:
    if result.address is None:
        failure = result.failure or (result.dns.failure if result.dns else None)
        return (f"no address to probe ({failure})" if failure else "no address to probe",)
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
    return ("path unknown: " + "; ".join(parts),)
