"""Shared path: a trace cut short by rate-limited hops takes its path from a sibling's.

Routers answer about six time-exceeded at once and then one per second per
source, so in one cycle of ~35 targets the hop that decides the path (the
CE, the MSEE, the internet edge) answers only some of the traces that cross
it.  Destinations in the same routed prefix take the same path absent policy
routing, so a result whose trace went silent where another result of the
same cycle saw the deciding hop may take that path when all of these hold:

1. both have the same local route: gateway, interface, source, table and
   policy rule (the host sends them the same way);
2. both addresses share their most specific known prefix: a service-tag
   prefix, a prefix a circuit advertises, a BGP community's prefix, or an
   internet edge's IPv6 source prefix.  Nothing is inferred when nothing is
   known: a /24 says nothing about where a network routes it;
3. the other result's verdict rests on hops (MSEE, CE, internet edge, ASN,
   PTR) at TTLs where this trace has no answer; at every TTL up to the hop
   that names its circuit or egress (the deepest of them when none does)
   where both traces heard a router, they share one (beyond it, ECMP may
   split flows freely: two ISPs behind one edge); and this trace's
   destination, if it answered, lies beyond that hop (a nearer one is
   another path).  Both traces silent everywhere they could be compared is no
   contradiction: the route and the prefix are the premise, hops the check;
4. every such result that qualifies names the same path (class, circuit,
   egress): if two disagree, the prefix is split and nothing is inferred.

The other result's hops at the silent TTLs are copied into this trace
(`Hop.shared`, as Doubletree copies hops) and the result is classified
again, so the expectation, CDN rules and links follow as for a measured
path; findings then follow from the verdict.  The verdict carries lower
confidence and `shared-path` evidence per copied hop naming the other
target, the shared prefix and the TTL.  A verdict that is unknown, or that
lacks the circuit or egress the other names, is inferred; a measured one
never changes class.  Inferred paths never lend theirs to a third result.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from agent.report import Evidence, Result, RouteResult, SiteFacts, Trace, Verdict
from agent.verdict.classify import REVERSE_ROLE
from agent.verdict.communities import BgpCommunities
from agent.verdict.servicetags import ServiceTags
from agent.verdict.siteindex import SiteIndex

# An inferred path is less certain than the measured one it copies.
SHARED_PATH_FACTOR = 0.8
# Evidence kinds that place a path by a hop (their `ttl` is the hop's).
HOP_KINDS = frozenset({"msee-hop", "ce-hop", "edge-hop", "hop-asn", "hop-ptr"})
# Those that name the circuit or the egress: past them ECMP may split flows.
NAMING_KINDS = frozenset({"msee-hop", "ce-hop", "edge-hop"})

Reclassify = Callable[[Result], Verdict]


@dataclass(frozen=True, slots=True)
class KnownPrefix:
    """The most specific prefix known to hold an address, and what made it known."""

    prefix: str
    source: str  # "service-tag", "advertised", "community", "edge-source"
    tag: str | None = None  # the service tag, circuit, community or edge named by `source`


@dataclass(frozen=True, slots=True)
class _Donor:
    result: Result
    verdict: Verdict
    ttls: tuple[int, ...]  # TTLs of the hops its verdict rests on
    # The deepest TTL that must agree: the hop naming the circuit or egress
    # (beyond it ECMP splits flows freely), else the deepest of `ttls`.
    bound: int


def known_prefix(
    address: str | None,
    site: SiteFacts,
    tags: ServiceTags | None,
    communities: BgpCommunities | None = None,
) -> KnownPrefix | None:
    """The longest prefix any known source puts `address` in; None when none does."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    found: list[KnownPrefix] = []
    if tags is not None:
        found += [KnownPrefix(m.prefix, "service-tag", m.name) for m in tags.lookup(address)]
    found += [
        KnownPrefix(a.prefix, "advertised", a.circuit.name)
        for a in SiteIndex.of(site).advertising(address)
    ]
    if communities is not None:
        found += [
            KnownPrefix(m.prefix, "community", m.community.value)
            for m in communities.lookup(address)
        ]
    for edge in site.internet_edges:
        for p in edge.source_prefixes_v6:
            net = ipaddress.ip_network(p, strict=False)
            if net.version == ip.version and ip in net:
                found.append(KnownPrefix(str(net), "edge-source", edge.name))
    if not found:
        return None
    # Longest first; on a tie the first source listed (service tags) names it.
    longest = max(ipaddress.ip_network(k.prefix, strict=False).prefixlen for k in found)
    return next(
        k for k in found if ipaddress.ip_network(k.prefix, strict=False).prefixlen == longest
    )


def infer(
    results: Sequence[Result],
    site: SiteFacts,
    tags: ServiceTags | None,
    reclassify: Reclassify,
    communities: BgpCommunities | None = None,
) -> tuple[Result, ...]:
    """Each classified result, with its path taken from a sibling where the rule above allows.

    `reclassify` classifies a result again exactly as the cycle did (same
    site, tags, role and expectation): it is called with the result whose
    trace holds the copied hops.
    """
    prefixes = {id(r): known_prefix(r.address, site, tags, communities) for r in results}
    donors = [d for r in results if (d := _donor(r)) is not None]
    out = []
    for r in results:
        inferred = None
        if _incomplete(r) and prefixes[id(r)] is not None:
            inferred = _infer_one(r, prefixes, donors, reclassify)
        out.append(inferred or r)
    return tuple(out)


def first_per_prefix(
    addresses: Sequence[str],
    routes: Mapping[str, RouteResult],
    site: SiteFacts,
    tags: ServiceTags | None,
    communities: BgpCommunities | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`addresses` split in two: the first of each (local route, known prefix), then the rest.

    Tracing the first group on its own spends the routers' burst of answers
    on one destination per routed prefix, so every prefix has a measured
    path the rest can take theirs from.  An address in no known prefix can
    take no other's path: it is traced first too.
    """
    first: list[str] = []
    rest: list[str] = []
    seen: set[tuple] = set()
    for a in addresses:
        prefix = known_prefix(a, site, tags, communities)
        route = routes.get(a)
        if prefix is None or not _routed(route):
            first.append(a)
            continue
        group = (_route_key(route), prefix.prefix)
        (rest if group in seen else first).append(a)
        seen.add(group)
    return tuple(first), tuple(rest)


def inferred(verdict: Verdict | None) -> bool:
    """Whether a verdict's path was taken from another result (not measured for this one)."""
    return verdict is not None and any(e.kind == "shared-path" for e in verdict.evidence)


# --------------------------------------------------------------------------- the rule


def _donor(r: Result) -> _Donor | None:
    v = r.verdict
    if v is None or v.path_class == "unknown" or inferred(v) or r.trace is None:
        return None
    hops = [e for e in v.evidence if e.kind in HOP_KINDS and e.ttl and not e.conflicting]
    if not hops:
        return None
    naming = [e.ttl for e in hops if e.kind in NAMING_KINDS and (e.circuit or e.egress)]
    ttls = tuple(sorted({e.ttl for e in hops if e.ttl}))
    return _Donor(r, v, ttls, max(naming or ttls))


def _incomplete(r: Result) -> bool:
    """Unknown, or on ExpressRoute without a circuit, or off it without an egress."""
    v = r.verdict
    if v is None or not r.address or r.trace is None or not _routed(r.route):
        return False
    if v.path_class == "unknown":
        return True
    if v.path_class == "expressroute":
        return v.circuit is None
    return v.egress is None


def _routed(route: RouteResult | None) -> bool:
    return route is not None and route.failure is None


def _route_key(route: RouteResult | None) -> tuple:
    assert route is not None
    return (route.gateway, route.interface, route.source, route.table, route.rule)


def _routers(r: Result) -> dict[int, frozenset[str]]:
    """Per TTL, the routers that answered (the destination's own replies are no router)."""
    assert r.trace is not None
    out = {h.ttl: frozenset(a for a in h.addresses if a != r.address) for h in r.trace.hops}
    return {ttl: routers for ttl, routers in out.items() if routers}


def _path(v: Verdict) -> tuple[str, str | None, str | None]:
    return (v.path_class, v.circuit, v.egress)


def _compatible(
    a: tuple[str, str | None, str | None], b: tuple[str, str | None, str | None]
) -> bool:
    """Same class, and no circuit or egress known on both sides that differs."""
    return a[0] == b[0] and all(
        x is None or y is None or x == y for x, y in zip(a[1:], b[1:], strict=True)
    )


def _known(v: Verdict) -> int:
    return (v.circuit is not None) + (v.egress is not None)


def _infer_one(
    short: Result,
    prefixes: dict[int, KnownPrefix | None],
    donors: list[_Donor],
    reclassify: Reclassify,
) -> Result | None:
    assert short.trace is not None and short.verdict is not None
    prefix = prefixes[id(short)]
    assert prefix is not None
    mine = _routers(short)
    reached_at = short.trace.hop_count if short.trace.reached else None
    reverse = short.role == REVERSE_ROLE
    fitting: list[tuple[int, float, str, _Donor, tuple[int, ...], tuple[int, ...]]] = []
    for d in donors:
        other = d.result
        if (
            other is short
            or (other.role == REVERSE_ROLE) != reverse
            or other.address_family != short.address_family
            or not _routed(other.route)
            or _route_key(other.route) != _route_key(short.route)
            or (theirs_at := prefixes[id(other)]) is None
            or theirs_at.prefix != prefix.prefix
        ):
            continue
        if short.verdict.path_class != "unknown" and _path(d.verdict)[0] != (
            short.verdict.path_class
        ):
            continue  # a measured class never changes
        assert other.trace is not None
        theirs = _routers(other)
        missing = tuple(t for t in d.ttls if t not in mine)
        common = tuple(t for t in sorted(mine) if t <= d.bound and t in theirs)
        if not missing or any(not (mine[t] & theirs[t]) for t in common):
            continue
        if reached_at is not None and reached_at <= d.bound:
            continue  # this destination is nearer than the hop naming the other's path
        fitting.append((len(common), d.verdict.confidence, other.target, d, missing, common))
    paths = [_path(f[3].verdict) for f in fitting]
    if not fitting or any(not _compatible(a, b) for a in paths for b in paths):
        return None  # nothing fits, or the prefix is split between paths
    # The one naming most of the path, agreeing at most TTLs, then the surest;
    # by name on a tie (reports repeat).
    fitting.sort(key=lambda f: (-_known(f[3].verdict), -f[0], -f[1], f[2]))
    _, _, _, donor, missing, common = fitting[0]
    trace = _with_hops(short.trace, donor.result.trace, missing)
    verdict = reclassify(replace(short, trace=trace))
    if _path(verdict) != _path(donor.verdict):
        return None  # the copied hops did not place it where they placed the other
    said = tuple(shared_path(donor.result, prefix, ttl, common, donor.verdict) for ttl in missing)
    confidence = min(verdict.confidence, donor.verdict.confidence) * SHARED_PATH_FACTOR
    verdict = replace(verdict, confidence=round(confidence, 2), evidence=(*said, *verdict.evidence))
    return replace(short, trace=trace, verdict=verdict)


def _with_hops(trace: Trace, other: Trace | None, ttls: tuple[int, ...]) -> Trace:
    """`trace` with `other`'s hops at `ttls` (where it had none), marked shared."""
    assert other is not None
    copied = {h.ttl: replace(h, shared=True) for h in other.hops if h.ttl in ttls}
    hops = {h.ttl: h for h in trace.hops} | copied
    return replace(trace, hops=tuple(hops[t] for t in sorted(hops)))


def shared_path(
    other: Result, prefix: KnownPrefix, ttl: int, agreed: tuple[int, ...], path: Verdict
) -> Evidence:
    """The hop at `ttl` copied from `other`'s trace, and why its path is this one's.

    Rendered here rather than in agent/verdict/evidence.py: only this rule
    makes the fact.
    """
    where = path.circuit and f"circuit {path.circuit}" or path.egress and f"edge {path.egress}"
    agree = (
        f"hops at TTL {', '.join(map(str, agreed))} agree"
        if agreed
        else "no TTL where both heard a router"
    )
    known = {
        "service-tag": f"service tag {prefix.tag}",
        "advertised": f"advertised over circuit {prefix.tag}",
        "community": f"BGP community {prefix.tag}",
        "edge-source": f"source prefix of edge {prefix.tag}",
    }[prefix.source]
    return Evidence(
        "shared-path",
        f"hop {ttl} taken from {other.target} ({other.address}): silent here, "
        f"it places the path on {path.path_class}{f' via {where}' if where else ''}; "
        f"both in {prefix.prefix} ({known}) with the same local route, {agree}",
        circuit=path.circuit,
        egress=path.egress,
        ttl=ttl,
        address=other.address,
        prefix=prefix.prefix,
        tag=prefix.tag if prefix.source == "service-tag" else None,
        name=other.target,
    )
