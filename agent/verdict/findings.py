"""Local asymmetry findings: what this site's facts and this result say about the return path.

A stateful firewall drops replies that come back another way than the
request left; the TCP handshake then dies although the route "works".
Microsoft returns traffic by the prefixes it learns: over ExpressRoute when
a circuit advertises the source (NAT) prefix, over the circuit with the
longest matching prefix when several do, over the internet otherwise.  So
each finding below names the advertisement or the measurement that predicts
or shows asymmetry, and says what to change.

Evidence is fields (agent/verdict/evidence.py renders the sentences); each
finding about a circuit names it in `Finding.circuit`.  Kinds
(docs/verdicts.md has examples of each):

- asymmetric-nat (critical): left through an internet edge whose NAT address
  (or un-NATed, with a public source address) lies in a prefix advertised
  over a circuit, to a destination whose replies Microsoft routes (never a
  third-party CDN node).  A warning with `predicted_only` when the TCP
  handshake succeeded: replies came back the way they left.
- asymmetric-circuit (critical / warning): over circuit A while the source /
  NAT prefix is advertised over circuit B as well, or only over B; for a
  reverse trace, entering over a circuit that does not advertise the address.
- handshake-blackhole (critical / warning): the trace reaches Microsoft (or
  the route is up) but the TCP handshake is filtered.
- return-hops-mismatch (info): forward hop count and the return hop count
  inferred from the reply TTL differ by more than a threshold.
- nat-pool-on-internet (warning): the NAT pool advertised over a circuit is
  also used at an internet edge; for IPv6 (not NATed), an edge's
  `source_prefixes_v6` overlaps a prefix advertised over a circuit.  Static: `site_findings(site)` lists every
  occurrence; `find()` attaches it to results that went over the affected
  circuit (the results it will break on failover), while results that left
  through the edge get asymmetric-nat instead, never both.
- premium-required (warning): a Standard circuit is (or would be) used for a
  target whose service tag region lies in another geopolitical region; or,
  with route filters known, its filter allows the destination's regional
  community of another geopolitical region.
- route-filter-excludes (warning; info when another circuit advertises the
  destination): the destination is in a community the circuit's route filter
  does not allow, so Microsoft does not advertise it over that circuit.
- advertised-but-internet (warning): a route filter allows the destination's
  community, yet the path is internet: the site's own routing sends it there.
- community-not-authorized (warning): the filter allows the community but
  `isAuthorizedToUse` says the subscription may not use it.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.report import Circuit, Evidence, Finding, InternetEdge, Result, SiteFacts, Verdict
from agent.verdict import evidence as ev
from agent.verdict import geography, routefilter
from agent.verdict.classify import REVERSE_ROLE, microsoft_destination, microsoft_hop
from agent.verdict.communities import BgpCommunities
from agent.verdict.servicetags import ServiceTags, TagMatch
from agent.verdict.siteindex import SiteIndex, parse_ip

DEFAULT_RETURN_HOPS_THRESHOLD = 4  # hops; paths are rarely symmetric to the hop


def find(
    result: Result,
    verdict: Verdict,
    site: SiteFacts,
    *,
    tags: ServiceTags | None = None,
    nat_addresses: Iterable[str] = (),
    return_hops_threshold: int = DEFAULT_RETURN_HOPS_THRESHOLD,
    communities: BgpCommunities | None = None,
    expect: str | None = None,
) -> tuple[Finding, ...]:
    """Every asymmetry finding for one classified result.

    `nat_addresses`: the public addresses this flow is known to leave with
    (the orchestrator knows them where the config says so); the route's
    source address is used as well when a circuit advertises it (edge hosts).
    `tags` enables the Premium check (it needs the target's region) and tells
    Microsoft's prefixes from third-party CDN nodes.  `communities` with the
    circuits' route filters enables the route filter findings; `expect` is
    the target's configured expectation (a target sent to the internet on
    purpose gets no route filter finding about it).
    """
    index = SiteIndex.of(site)
    out: list[Finding] = []
    if result.role == REVERSE_ROLE:
        out += _reverse_circuit(result, verdict, index)
    else:
        out += _asymmetric_nat(result, verdict, index, tags, nat_addresses)
        out += _nat_pool_for_circuit(result, verdict, index)
        out += _asymmetric_circuit(result, verdict, index, nat_addresses)
        premium = _premium(result, verdict, site, tags)
        advert = routefilter.advertisement(result.address, site, communities)
        on_purpose = expect in ("internet", "cdn")
        if (
            advert is not None
            and not on_purpose
            and "cdn" not in (verdict.path_class, verdict.expected)
        ):
            out += _route_filter(verdict, advert, premium=bool(premium))
        out += premium
        out += _handshake_blackhole(result, verdict, site)
    out += _return_hops(result, return_hops_threshold)
    return tuple(out)


def site_findings(site: SiteFacts) -> tuple[Finding, ...]:
    """Findings from the site's configuration alone, independent of any measurement."""
    index = SiteIndex.of(site)
    return tuple(
        _nat_pool_finding(edge, nat, advert.circuit, advert.prefix)
        for edge in site.internet_edges
        for nat in edge.nat_addresses
        for advert in index.advertising(nat)
    ) + tuple(_source_prefix_findings(index))


# --------------------------------------------------------------------------- NAT


def _asymmetric_nat(
    result: Result,
    verdict: Verdict,
    index: SiteIndex,
    tags: ServiceTags | None,
    nat_addresses: Iterable[str],
) -> list[Finding]:
    """Out over the internet with a source address a circuit advertises: replies come back over it.

    Only for destinations whose replies Microsoft routes (a Microsoft prefix
    or ASN): a third-party CDN node answers over the internet, whatever
    Microsoft learns.  The source is the edge's NAT address, or an address
    that leaves un-NATed (a public address on the host, or one the
    orchestrator knows).
    """
    if verdict.path_class not in ("internet", "cdn"):
        return []
    microsoft = microsoft_destination(result, index.site, tags)
    if microsoft is False or (microsoft is None and verdict.path_class == "cdn"):
        return []
    edge = index.edge(verdict.egress)
    how = ev.forward_path(verdict.path_class, egress=verdict.egress)
    if edge is not None:
        how = ev.leaves_through_edge(verdict.path_class, edge.name, only_edge=False)
    elif verdict.egress is None and len(index.site.internet_edges) == 1:
        # egress not seen in the trace, but there is only one way out
        edge = index.site.internet_edges[0]
        how = ev.leaves_through_edge(verdict.path_class, edge.name, only_edge=True)
    sources: list[Evidence] = []
    # NAT translates within a family: an IPv6 flow never leaves with an IPv4 NAT address.
    destination = parse_ip(result.address)
    family = destination.version if destination is not None else None
    if edge is not None:
        for nat in _of_family(edge.nat_addresses, family):
            for advert in index.advertising(nat)[:1]:  # the longest match is what Microsoft uses
                sources.append(
                    ev.nat_advertised(nat, edge.name, advert.circuit.name, advert.prefix)
                )
    # Addresses the flow is known to leave with, and the host's own source
    # address: a public one inside an advertised prefix leaves un-NATed.
    known = [(n, True) for n in _of_family(nat_addresses, family)]
    if result.route and result.route.source:
        known.append((result.route.source, False))
    for src, nated in known:
        if any(src == s.address for s in sources):
            continue
        for advert in index.advertising(src)[:1]:
            sources.append(
                ev.source_advertised(src, advert.circuit.name, advert.prefix, nated=nated)
            )
    # One finding per circuit the replies return over, with every source
    # address it catches (an edge usually NATs to a few addresses of a pool).
    by_circuit: dict[str, list[Evidence]] = {}
    for advert in sources:
        by_circuit.setdefault(advert.circuit or "", []).append(advert)
    where = f"internet edge {edge.name}" if edge is not None else "the internet edge"
    tcp = result.tcp
    # Predicted from the advertisements, but replies came back when the
    # handshake succeeded: the finding stays (the next failover or firewall
    # change breaks it), as a warning that says both facts.
    predicted = tcp is not None and tcp.state == "open"
    out = []
    for c, adverts in by_circuit.items():
        evidence: list[Evidence] = [how, *adverts]
        evidence += [
            ev.replies_over_expressroute(x.address or "", c, dropped=not predicted) for x in adverts
        ]
        if predicted:
            assert tcp is not None
            evidence.append(ev.handshake_succeeded(result.address, tcp.port))
        prefixes = ", ".join(dict.fromkeys(x.prefix or "" for x in adverts))
        out.append(
            Finding(
                kind="asymmetric-nat",
                severity="warning" if predicted else "critical",
                evidence=tuple(evidence),
                fix=(
                    f"advertise {prefixes} only to the internet edge, or NAT at the ER edge "
                    f"to a separate pool: {where} needs a NAT address "
                    f"outside every prefix advertised over ExpressRoute"
                ),
                circuit=c,
                predicted_only=predicted,
            )
        )
    return out


def _source_prefix_findings(index: SiteIndex, circuit: str | None = None) -> list[Finding]:
    """An edge's IPv6 source prefix that a circuit advertises too: IPv6's nat-pool-on-internet.

    One finding per (edge prefix, circuit): a /48 at the edge may cover several
    prefixes the circuit advertises (two /52s), and that is one misconfiguration
    with every overlapping prefix in its evidence, not one finding per prefix.
    """
    out = []
    for edge in index.site.internet_edges:
        for own in edge.source_prefixes_v6:
            by_circuit: dict[str, list[str]] = {}
            for advert in index.advertising_overlap(own):
                if circuit is not None and advert.circuit.name != circuit:
                    continue
                prefixes = by_circuit.setdefault(advert.circuit.name, [])
                if advert.prefix not in prefixes:
                    prefixes.append(advert.prefix)
            for name, prefixes in by_circuit.items():
                listed = ", ".join(prefixes)
                out.append(
                    Finding(
                        kind="nat-pool-on-internet",
                        severity="warning",
                        evidence=(
                            ev.source_prefix(edge.name, own),
                            *(ev.source_prefix_advertised(own, name, p) for p in prefixes),
                            ev.note(
                                "IPv6 is not NATed: hosts leaving through the internet edge "
                                "with a source in a prefix advertised over ExpressRoute get "
                                "their replies over the circuit"
                            ),
                        ),
                        fix=(
                            f"give internet edge {edge.name} IPv6 sources outside {listed} "
                            f"(another prefix, announced to the internet only), or stop "
                            f"advertising {listed} over circuit {name}"
                        ),
                        circuit=name,
                    )
                )
    return out


def _of_family(addresses: Iterable[str], family: int | None) -> list[str]:
    """The valid addresses of one IP version (all valid ones when the version is unknown)."""
    out = []
    for a in addresses:
        ip = parse_ip(a)
        if ip is not None and (family is None or ip.version == family):
            out.append(a)
    return out


def _nat_pool_finding(edge: InternetEdge, nat: str, circuit: Circuit, prefix: str) -> Finding:
    return Finding(
        kind="nat-pool-on-internet",
        severity="warning",
        evidence=(
            ev.nat(edge.name, nat),
            ev.nat_pool_advertised(nat, circuit.name, prefix),
            ev.note(
                "the planning guide requires distinct NAT addresses at the internet edge and the "
                "ExpressRoute edge: traffic leaving through the internet edge returns over the "
                "circuit"
            ),
        ),
        fix=(
            f"give internet edge {edge.name} a NAT address outside {prefix}, or stop advertising "
            f"{prefix} over circuit {circuit.name} and NAT at the ER edge to a separate pool"
        ),
        circuit=circuit.name,
    )


def _nat_pool_for_circuit(result: Result, verdict: Verdict, index: SiteIndex) -> list[Finding]:
    """The edge's sources a circuit advertises, on the results of that family over the circuit.

    An IPv4 flow never leaves with the edge's IPv6 sources, nor an IPv6 flow
    with its IPv4 NAT addresses: each family's results carry their own.
    """
    if verdict.path_class != "expressroute" or verdict.circuit is None:
        return []
    destination = parse_ip(result.address)
    family = destination.version if destination is not None else None
    out = [
        _nat_pool_finding(edge, nat, advert.circuit, advert.prefix)
        for edge in index.site.internet_edges
        for nat in _of_family(edge.nat_addresses, family)
        for advert in index.advertising(nat)
        if advert.circuit.name == verdict.circuit
    ]
    if family in (None, 6):
        out += _source_prefix_findings(index, verdict.circuit)
    return out


# --------------------------------------------------------------------------- circuits


def _asymmetric_circuit(
    result: Result, verdict: Verdict, index: SiteIndex, nat_addresses: Iterable[str]
) -> list[Finding]:
    if verdict.path_class != "expressroute" or verdict.circuit is None:
        return []
    a = verdict.circuit
    sources = [n for n in nat_addresses if parse_ip(n) is not None]
    if result.route and result.route.source and index.advertising(result.route.source):
        sources.append(result.route.source)
    forward = ev.forward_over(a, verdict.link)
    out: list[Finding] = []
    for src in dict.fromkeys(sources):
        adverts = index.advertising(src)
        if not adverts:
            continue
        best_len = _length(adverts[0].prefix)
        winners = [x for x in adverts if _length(x.prefix) == best_len]
        if any(x.circuit.name == a for x in winners) and len(winners) == 1:
            continue  # the longest match is on circuit A: replies come back over A
        others = sorted({x.circuit.name for x in winners if x.circuit.name != a})
        b = ", ".join(others)
        other = next(x for x in winners if x.circuit.name != a)
        if not any(x.circuit.name == a for x in adverts):
            how, severity = "only", "critical"
        elif any(x.circuit.name == a for x in winners):
            how, severity = "equally", "warning"
        else:
            how, severity = "more-specific", "critical"
        said = ev.advertised_elsewhere(
            src,
            other.circuit.name,
            other.prefix,
            forward=a,
            others=b,
            how=how,
            prefixes=", ".join(x.prefix for x in winners),
        )
        back = ev.replies_over(src, other.circuit.name, b, certain=severity == "critical")
        out.append(
            Finding(
                "asymmetric-circuit",
                severity,
                (forward, said, back),
                fix=(
                    f"advertise {src}'s NAT prefix only over circuit {a}, and give circuit {b} "
                    "its own, distinct NAT pool (unique public prefixes per circuit)"
                ),
                circuit=a,
            )
        )
    if out or sources:
        return out
    # No source address known: predict from the advertisements alone.
    circuit = index.circuit(a)
    if circuit is None:
        return []
    for mine, other in index.overlaps(circuit):
        if _length(other.prefix) < _length(mine):
            continue  # ours is more specific: replies to our pool still come back over A
        out.append(
            Finding(
                "asymmetric-circuit",
                "warning",
                (
                    forward,
                    ev.overlapping_advertisement(a, mine, other.circuit.name, other.prefix),
                    ev.replies_for_prefix_over(mine, other.circuit.name),
                ),
                fix=(
                    f"advertise {mine} only over circuit {a} and give circuit "
                    f"{other.circuit.name} its own NAT pool (unique public prefixes per circuit)"
                ),
                circuit=a,
            )
        )
    return out


def _reverse_circuit(result: Result, verdict: Verdict, index: SiteIndex) -> list[Finding]:
    """A reverse trace entering over a circuit that is not where the address is advertised."""
    if verdict.path_class != "expressroute" or verdict.circuit is None:
        return []
    adverts = index.advertising(result.address)
    if not adverts:
        return []
    best = _length(adverts[0].prefix)
    owners = sorted({x.circuit.name for x in adverts if _length(x.prefix) == best})
    if verdict.circuit in owners:
        return []
    owner = ", ".join(owners)
    c = verdict.circuit
    return [
        Finding(
            "asymmetric-circuit",
            "critical",
            (
                ev.reverse_enters(result.address, c, verdict.link),
                ev.reverse_advertised(
                    result.address, owner, adverts[0].circuit.name, adverts[0].prefix
                ),
                ev.nated_returns_over(result.address, owner, c),
            ),
            fix=(
                f"stop advertising {result.address}'s prefix over circuit {c} "
                f"(or advertise it more specifically over {owner}); each circuit needs its "
                "own NAT pool"
            ),
            circuit=c,
        )
    ]


def _length(prefix: str) -> int:
    return int(prefix.rpartition("/")[2])


# --------------------------------------------------------------------------- handshake


def _handshake_blackhole(result: Result, verdict: Verdict, site: SiteFacts) -> list[Finding]:
    tcp = result.tcp
    if tcp is None or not (tcp.state == "filtered" or tcp.failure == "tcp.filtered"):
        return []
    reached: Evidence | None = None
    trace = result.trace
    if trace is not None and trace.reached and result.address:
        reached = ev.trace_reached(result.address, trace.hop_count, at_hop=True)
    elif (ms := microsoft_hop(result, site)) is not None:
        reached = ev.reaches_microsoft(ms.evidence)
    else:
        # An MSEE hop of the verdict's own circuit: the far side of the peering.
        msee = next(
            (
                e
                for e in verdict.evidence
                if e.kind == "msee-hop" and not e.conflicting and e.circuit == verdict.circuit
            ),
            None,
        )
        if msee is not None:
            reached = ev.reaches_microsoft(msee)
    route = result.route
    route_up = route is not None and not route.failure
    if reached is None and not route_up:
        return []
    if reached is None:
        assert route is not None
        reached = ev.route_up(route.gateway, route.interface)
    evidence = (
        ev.handshake_filtered(result.address, tcp.port),
        reached,
        ev.forward_path(
            verdict.path_class,
            circuit=verdict.circuit,
            link=verdict.link,
            egress=verdict.egress,
        ),
    )
    return [
        Finding(
            "handshake-blackhole",
            "warning" if reached.kind == "route" else "critical",
            evidence,
            fix=(
                "replies are probably returning another way and a stateful firewall drops "
                "them: check which circuits and internet edges advertise this path's NAT "
                "address (a reverse trace from an azure-side agent shows the return path) "
                "and advertise it only where the traffic leaves; if the path is symmetric, "
                f"check that the firewall allows port {tcp.port}"
            ),
            circuit=verdict.circuit if verdict.path_class == "expressroute" else None,
        )
    ]


# --------------------------------------------------------------------------- hop counts


def _return_hops(result: Result, threshold: int) -> list[Finding]:
    tcp, trace = result.tcp, result.trace
    if tcp is None or tcp.return_hops is None or trace is None or not trace.reached:
        return []
    forward = trace.hop_count
    back = tcp.return_hops
    if abs(forward - back) <= threshold:
        return []
    return [
        Finding(
            "return-hops-mismatch",
            "info",
            (
                ev.trace_reached(result.address, forward, at_hop=False),
                ev.reply_hops(tcp.state, result.address, tcp.reply_ttl, back),
                ev.note(
                    f"the difference of {abs(forward - back)} exceeds {threshold}: "
                    "the return path may differ (a weak signal on its own)"
                ),
            ),
            fix=(
                "confirm with a reverse trace from an azure-side agent to this site's NAT "
                "address and compare circuits; no change is needed if it matches"
            ),
        )
    ]


# --------------------------------------------------------------------------- Premium


def _premium(
    result: Result, verdict: Verdict, site: SiteFacts, tags: ServiceTags | None
) -> list[Finding]:
    if tags is None or not result.address or verdict.path_class == "cdn":
        return []
    if verdict.path_class == "expressroute":
        circuits = [c for c in site.circuits if c.name == verdict.circuit]
    elif verdict.expected == "expressroute":
        circuits = list(site.circuits)
    else:
        return []
    match = _regional(tags.lookup(result.address))
    if match is None or not circuits:
        return []
    region = geography.region_geography(match.region or "")
    if region is None:
        return []
    blocked: list[tuple[Circuit, geography.Placement]] = []
    for c in circuits:
        loc = geography.location_geography(c.location)
        if loc is None:
            return []  # a circuit we cannot place might reach it: stay silent
        if c.sku == "premium" or loc.geography == region.geography:
            return []
        blocked.append((c, loc))
    basis = "" if region.basis == "published" else f", placed {region.basis}"
    evidence: list[Evidence] = [
        ev.service_tag(
            result.address,
            match.name,
            match.prefix,
            match.region,
            where=f"({region.geography}{basis})",
        ),
        *(ev.standard_circuit(c.name, c.location, loc.geography) for c, loc in blocked),
        ev.note("a Standard circuit reaches only the Azure regions of its own geopolitical region"),
    ]
    if verdict.path_class == "expressroute":
        evidence.append(ev.standard_circuit_used(verdict.circuit, verdict.link))
    elif verdict.path_class != "unknown":
        evidence.append(ev.region_not_advertised(verdict.path_class, match.region, verdict.egress))
    names = ", ".join(c.name for c, _ in blocked)
    example = geography.PUBLISHED.get(region.geography, ((), ()))[1][:1]
    at = f" (e.g. {example[0]})" if example else ""
    return [
        Finding(
            "premium-required",
            "warning",
            tuple(evidence),
            fix=(
                f"enable the ExpressRoute Premium add-on on circuit {names}, or connect a "
                f"circuit at a peering location in {region.geography}{at}"
            ),
            circuit=blocked[0][0].name if len(blocked) == 1 else None,
        )
    ]


def _regional(matches: tuple[TagMatch, ...]) -> TagMatch | None:
    """The most specific regional tag, preferring Power Platform's own tags."""
    regional = [m for m in matches if m.region]
    power = [m for m in regional if m.name.startswith("PowerPlatform")]
    return (power or regional or [None])[0]


# --------------------------------------------------------------------------- route filters


def _filter_evidence(a: routefilter.CircuitAdvert, address: str) -> Evidence:
    c = a.community
    return ev.route_filter(
        address,
        a.circuit.name,
        a.circuit.route_filter,
        a.state,
        community=c.value if c else None,
        service=c.name if c else None,
        region=c.region if c else None,
        prefix=a.prefix,
        location=a.circuit.location,
    )


def _route_filter(
    verdict: Verdict, advert: routefilter.Advertisement, *, premium: bool
) -> list[Finding]:
    """What each circuit's route filter does with the destination, where it explains the path."""
    address = advert.address
    path = ev.forward_path(
        verdict.path_class, circuit=verdict.circuit, link=verdict.link, egress=verdict.egress
    )
    carried = [a for a in advert.advertising() if a.state == "advertised"]
    out: list[Finding] = []
    for a in advert.circuits:
        c, rf = a.community, a.circuit.route_filter
        if a.state == "excluded" and c is not None:
            elsewhere = [x.circuit.name for x in advert.advertising()]
            also = (
                f"; circuit {', '.join(elsewhere)} advertises it, so this matters on failover"
                if elsewhere
                else ""
            )
            out.append(
                Finding(
                    "route-filter-excludes",
                    "info" if elsewhere else "warning",
                    (
                        _filter_evidence(a, address),
                        ev.note(
                            f"Microsoft does not advertise {a.prefix} over circuit "
                            f"{a.circuit.name}{also}"
                        ),
                        path,
                    ),
                    fix=(
                        f"add community {c.value} ({c.name}) to route filter {rf} of circuit "
                        f"{a.circuit.name} (az network route-filter rule update -g RG --filter-name {rf} "
                        f"-n RULE --communities <the rule's communities> {c.value}), or expect the "
                        "internet for this target"
                        + (
                            f"; circuit {a.circuit.name} is Standard at {a.circuit.location}: "
                            f"{c.region} also needs the Premium add-on"
                            if routefilter.other_geography(a.circuit, c)
                            else ""
                        )
                    ),
                    circuit=a.circuit.name,
                )
            )
        elif a.state == "not-authorized" and c is not None:
            out.append(
                Finding(
                    "community-not-authorized",
                    "warning",
                    (_filter_evidence(a, address), path),
                    fix=(
                        f"the subscription may not use community {c.value} ({c.name}): get it "
                        "authorized (Microsoft 365 communities need Microsoft's approval of "
                        f"the circuit), or remove it from route filter {rf}"
                    ),
                    circuit=a.circuit.name,
                )
            )
        elif a.state == "other-geography" and c is not None and not premium:
            loc = geography.location_geography(a.circuit.location)
            where = loc.geography if loc else a.circuit.location
            out.append(
                Finding(
                    "premium-required",
                    "warning",
                    (
                        _filter_evidence(a, address),
                        ev.note(
                            "a Standard circuit reaches only the Azure regions of its own "
                            "geopolitical region"
                        ),
                        path,
                    ),
                    fix=(
                        f"enable the ExpressRoute Premium add-on on circuit {a.circuit.name} "
                        f"(at {a.circuit.location}, {where}), or connect a circuit in the "
                        f"geopolitical region of {c.region}"
                    ),
                    circuit=a.circuit.name,
                )
            )
    if carried and verdict.path_class == "internet":
        names = ", ".join(a.circuit.name for a in carried)
        out.append(
            Finding(
                "advertised-but-internet",
                "warning",
                (*(_filter_evidence(a, address) for a in carried), path),
                fix=(
                    f"Microsoft advertises {address} over circuit {names}, yet the path is "
                    "internet: look at the site's own routing -- a local internet breakout, "
                    "the WAN's preference for the internet edge, or the route not reaching "
                    "this site from the ER edge"
                ),
                circuit=carried[0].circuit.name if len(carried) == 1 else None,
            )
        )
    return out
