"""Evidence: one constructor per kind of fact, each setting the fields and rendering the sentence.

Rules read the fields of `agent.report.Evidence`; the sentence in `text` is
for people and rendered here, in one place, from the same values, so the two
never disagree and nothing ever parses a sentence.  Arguments that are not
fields (a route's protocol, whether a trace runs in reverse) only shape the
sentence.
"""

from __future__ import annotations

from dataclasses import replace

from agent.report import Evidence, Link

_REVERSE = ": the reverse path enters the site there"


def conflicting(e: Evidence) -> Evidence:
    """The same fact, marked as pointing the other way than the verdict."""
    if e.conflicting:
        return e
    return replace(e, conflicting=True, text=f"conflicting: {e.text}")


# --------------------------------------------------------------------------- hops


def msee_hop(
    ttl: int, address: str, circuit: str, link: Link, *, reverse: bool = False
) -> Evidence:
    where = _REVERSE if reverse else ""
    return Evidence(
        "msee-hop",
        f"hop {ttl} {address} is the MSEE of circuit {circuit} ({link} link){where}",
        circuit=circuit,
        link=link,
        ttl=ttl,
        address=address,
    )


def ce_hop(
    ttl: int,
    address: str,
    circuit: str,
    link: Link | None = None,
    *,
    subnet: str | None = None,
    reverse: bool = False,
) -> Evidence:
    """A hop at the CE: a configured CE address (no link), the CE side of a /30, or another /30 address."""
    where = _REVERSE if reverse else ""
    if link is None:
        text = f"hop {ttl} {address} is a CE address of circuit {circuit}{where}"
    elif subnet is None:
        text = f"hop {ttl} {address} is the CE of circuit {circuit} ({link} link){where}"
    else:
        text = f"hop {ttl} {address} is in the {link} peering subnet {subnet} of circuit {circuit}{where}"
    return Evidence(
        "ce-hop", text, circuit=circuit, link=link, ttl=ttl, address=address, prefix=subnet
    )


def shared_ce_hop(
    ttl: int,
    address: str,
    circuits: tuple[str, ...],
    *,
    egress: str | None = None,
    reverse: bool = False,
) -> Evidence:
    """A CE address that names no one circuit: several circuits' (`name` "shared-circuits"),
    or also an internet edge's hop (`name` "shared-edge"), one router for both edges.

    `circuit` and `egress` stay empty: the hop names neither, and rules read them.
    """
    where = _REVERSE if reverse else ""
    names = " and ".join(circuits)
    noun = "circuit" if len(circuits) == 1 else "circuits"
    if egress is not None:
        text = (
            f"hop {ttl} {address} is a CE address of {noun} {names} and a hop of internet "
            f"edge {egress}: one router for both edges, so it tells neither way{where}"
        )
    else:
        text = (
            f"hop {ttl} {address} is a CE address of circuits {names}: one router for them "
            f"all, so it names no one circuit{where}"
        )
    return Evidence(
        "ce-hop",
        text,
        ttl=ttl,
        address=address,
        name="shared-edge" if egress is not None else "shared-circuits",
    )


def edge_hop(
    ttl: int,
    address: str,
    egress: str,
    nat_addresses: tuple[str, ...],
    *,
    nat: bool,
    reverse: bool = False,
) -> Evidence:
    """A hop at an internet edge; `name` is "nat" for the edge's NAT address, else "hop"."""
    what = "NAT address" if nat else "a hop"
    if reverse:
        text = f"hop {ttl} {address} is {what} of internet edge {egress}{_REVERSE}"
    else:
        text = f"{egress_text(egress, nat_addresses)}: hop {ttl} {address} is {what} of that edge"
    return Evidence(
        "edge-hop",
        text,
        egress=egress,
        ttl=ttl,
        address=address,
        name="nat" if nat else "hop",
    )


def egress_text(egress: str, nat_addresses: tuple[str, ...]) -> str:
    nat = f" (NAT {', '.join(nat_addresses)})" if nat_addresses else ""
    return f"egress via internet edge {egress}{nat}"


def reverse_entry(
    ttl: int, address: str, destination: str, circuit: str, *, adjacent: bool = True
) -> Evidence:
    """AS12076 as Microsoft's last hop before the NAT address on a reverse trace, and one
    circuit advertising it; `adjacent`: right before it (the NAT address is on the CE)."""
    why = (
        "the NAT address is on the CE"
        if adjacent
        else "no hop answered in a peering subnet after it"
    )
    return Evidence(
        "hop-asn",
        f"the reverse path reaches {destination} from the ExpressRoute edge at hop {ttl}, "
        f"and only circuit {circuit} advertises it (the link is not visible: {why})",
        circuit=circuit,
        ttl=ttl,
        address=address,
        asn=12076,
    )


def no_handover(
    ttl: int,
    address: str,
    asn: int,
    microsoft_ttl: int,
    *,
    reverse: bool,
    msee: bool = False,
    circuit: str | None = None,
    silent: tuple[int, ...] = (),
) -> Evidence:
    """A non-Microsoft hop next to Microsoft's network that is no internet hand-over, and why.

    `msee`: Microsoft's hop next to it is AS12076, the ExpressRoute edge.
    `circuit`: its ASN is that circuit's peer ASN (the router peering with the
    MSEE: the customer's CE or the connectivity provider's PE).  `silent`: the
    TTLs between it and Microsoft that did not answer, where an MSEE may hide.
    """
    if msee:
        text = (
            f"hop {ttl} {address} (AS{asn}) is next to the ExpressRoute edge (AS12076) at hop "
            f"{microsoft_ttl}: the circuit's side of the peering, not an internet transit"
        )
    elif circuit is not None:
        text = (
            f"hop {ttl} {address} is in AS{asn}, the peer ASN of circuit {circuit}: the router "
            "peering with the MSEE, not an internet transit"
        )
    else:
        which = ", ".join(map(str, silent))
        noun = "hop" if len(silent) == 1 else "hops"
        text = (
            f"hop {ttl} {address} (AS{asn}) is the last hop before the Microsoft network at "
            f"hop {microsoft_ttl}, but {noun} {which} between did not answer, where an MSEE "
            "may hide: no internet hand-over is seen"
        )
    return Evidence("hop-asn", text, ttl=ttl, address=address, asn=asn, circuit=circuit)


def microsoft_asn_hop(ttl: int, address: str, asn: int) -> Evidence:
    what = "Microsoft ExpressRoute edge" if asn == 12076 else "Microsoft global network"
    return Evidence(
        "hop-asn", f"hop {ttl} {address} is AS{asn} ({what})", ttl=ttl, address=address, asn=asn
    )


def microsoft_ptr_hop(ttl: int, address: str, ptr: str, suffix: str) -> Evidence:
    return Evidence(
        "hop-ptr",
        f"hop {ttl} {address} ({ptr}) is in the Microsoft global network (*.{suffix})",
        ttl=ttl,
        address=address,
        name=ptr,
    )


def isp_handover(
    ttl: int, address: str, asn: int, microsoft_ttl: int, *, reverse: bool
) -> Evidence:
    how = "takes over from" if reverse else "hands over to"
    return Evidence(
        "hop-asn",
        f"hop {ttl} {address} (AS{asn}) {how} the Microsoft network at hop {microsoft_ttl}: "
        "an internet transit, not a peering link",
        ttl=ttl,
        address=address,
        asn=asn,
    )


# --------------------------------------------------------------------------- route


def route(
    gateway: str,
    interface: str | None,
    protocol: str | None,
    *,
    circuit: str | None = None,
    link: Link | None = None,
    msee: bool = False,
    egress: str | None = None,
    shared: tuple[str, ...] = (),
) -> Evidence:
    """The local route via a circuit's MSEE or CE (circuit set) or an internet edge (egress set).

    `shared`: the gateway is a CE address of these circuits and names none of
    them (several circuits, or with `egress` also an internet edge's hop:
    then the fields stay empty, it tells neither way).
    """
    proto = f"{protocol} " if protocol else ""
    via = f"route via {proto}gateway {gateway}"
    if shared:
        names = " and ".join(shared)
        if egress is not None:
            text = f"{via} = a router of both circuit {names} and internet edge {egress}: it tells neither way"
            return Evidence("route", text, address=gateway, name=interface)
        text = f"{via} = CE of circuits {names}: it names no one circuit"
        return Evidence("route", text, address=gateway, name=interface)
    if circuit is not None:
        on_link = f" ({link} link)" if link else ""
        text = f"{via} = {'MSEE' if msee else 'CE'} of {circuit}{on_link}"
    else:
        text = f"{via} = internet edge {egress}"
    return Evidence(
        "route", text, circuit=circuit, link=link, egress=egress, address=gateway, name=interface
    )


def route_up(gateway: str | None, interface: str | None) -> Evidence:
    return Evidence(
        "route",
        f"the route is up (via {gateway or interface})",
        address=gateway,
        name=interface,
    )


# --------------------------------------------------------------------------- names and tags


def cname(name: str, suffix: str, *, last: bool, chain: bool, traffic_manager: bool) -> Evidence:
    """A CDN / Front Door / Traffic Manager name; `tag` holds the suffix that matched."""
    if traffic_manager:
        text = f"CNAME chain passes through Traffic Manager (*.{suffix}: {name})"
    elif not chain:
        text = f"target name ends in *.{suffix} ({name})"
    elif last:
        text = f"CNAME chain ends in *.{suffix} ({name})"
    else:
        text = f"CNAME chain passes through *.{suffix} ({name})"
    return Evidence("cname", text, name=name, tag=suffix)


def traffic_manager_context(e: Evidence) -> Evidence:
    """Traffic Manager is DNS only: the endpoint it hands out decides the path."""
    return replace(e, text=f"{e.text}: DNS only, the endpoint it hands out decides the path")


def service_tag(
    address: str, tag: str, prefix: str, region: str | None = None, *, where: str | None = None
) -> Evidence:
    """One tag containing the address (a CDN tag decides; others inform); `where` places the region."""
    placed = f": region {region} {where}" if where else ""
    return Evidence(
        "service-tag",
        f"{address} is in service tag {tag}{placed}",
        address=address,
        tag=tag,
        prefix=prefix,
        name=region,
    )


def service_tags(address: str, tags: list[tuple[str, str | None, str]]) -> Evidence:
    """Every tag containing the address, most specific first: (name, region, prefix)."""
    names = ", ".join(t[0] for t in tags[:4])
    more = f" and {len(tags) - 4} more" if len(tags) > 4 else ""
    region = next((t[1] for t in tags if t[1]), None)
    where = f" (region {region})" if region else ""
    noun = "tag" if len(tags) == 1 else "tags"
    return Evidence(
        "service-tag",
        f"{address} is in service {noun} {names}{more}{where}",
        address=address,
        tag=tags[0][0],
        prefix=tags[0][2],
        name=region,
    )


def untagged(address: str, *, why: str) -> Evidence:
    return Evidence(
        "untagged",
        f"{address} is in no service tag that ExpressRoute carries: {why}",
        address=address,
    )


# --------------------------------------------------------------------------- expectation and unknowns


def expectation(
    path_class: str,
    why: str,
    *,
    circuit: str | None = None,
    prefix: str | None = None,
    address: str | None = None,
    tag: str | None = None,
    community: str | None = None,
    service: str | None = None,
    region: str | None = None,
) -> Evidence:
    return Evidence(
        "expectation",
        f"expected {path_class}: {why}",
        name=path_class,
        circuit=circuit,
        prefix=prefix,
        address=address,
        tag=tag,
        community=community,
        service=service,
        region=region,
    )


def unknown(what: str, why: str, *, circuit: str | None = None) -> Evidence:
    """A fact not established this time (`what`: path, address, circuit, link), and why."""
    return Evidence("unknown", why, name=what, circuit=circuit)


# --------------------------------------------------------------------------- findings: the path


def _path(
    text: str,
    path_class: str,
    *,
    circuit: str | None = None,
    link: Link | None = None,
    egress: str | None = None,
) -> Evidence:
    return Evidence("path", text, name=path_class, circuit=circuit, link=link, egress=egress)


def forward_path(
    path_class: str,
    *,
    circuit: str | None = None,
    link: Link | None = None,
    egress: str | None = None,
) -> Evidence:
    """The forward path as a finding states it."""
    if path_class == "expressroute":
        on_link = f" ({link} link)" if link else ""
        what = f"expressroute over circuit {circuit}{on_link}"
    elif egress:
        what = f"{path_class} via internet edge {egress}"
    else:
        what = path_class
    return _path(
        f"the forward path is {what}", path_class, circuit=circuit, link=link, egress=egress
    )


def leaves_through_edge(path_class: str, egress: str | None, *, only_edge: bool) -> Evidence:
    """Out through an internet edge: seen, or assumed because the site has only that one."""
    if only_edge:
        text = (
            f"the forward path goes to the internet, and {egress} is the site's only internet edge"
        )
    else:
        text = f"the forward path leaves through internet edge {egress}"
    return _path(text, path_class, egress=egress)


def forward_over(circuit: str, link: Link | None) -> Evidence:
    return _path(
        f"the forward path goes over circuit {circuit}", "expressroute", circuit=circuit, link=link
    )


def reverse_enters(address: str | None, circuit: str, link: Link | None) -> Evidence:
    return _path(
        f"the reverse path to {address} enters the site over circuit {circuit}",
        "expressroute",
        circuit=circuit,
        link=link,
    )


def standard_circuit_used(circuit: str | None, link: Link | None) -> Evidence:
    return _path(
        f"yet the path goes over circuit {circuit}: check the circuit's SKU in the site "
        "configuration",
        "expressroute",
        circuit=circuit,
        link=link,
    )


def region_not_advertised(path_class: str, region: str | None, egress: str | None) -> Evidence:
    return _path(
        f"the path is {path_class}: Microsoft does not advertise {region}'s prefixes over "
        "these circuits",
        path_class,
        egress=egress,
    )


# --------------------------------------------------------------------------- findings: advertisements


def _advertised(text: str, circuit: str, prefix: str, address: str | None) -> Evidence:
    return Evidence("advertised", text, circuit=circuit, prefix=prefix, address=address)


def nat_advertised(nat: str, egress: str, circuit: str, prefix: str) -> Evidence:
    return _advertised(
        f"NAT address {nat} of {egress} lies in {prefix}, advertised over circuit {circuit}",
        circuit,
        prefix,
        nat,
    )


def source_advertised(address: str, circuit: str, prefix: str, *, nated: bool) -> Evidence:
    """A source the flow leaves with (known NAT address, or the host's own un-NATed one)."""
    what = "source / NAT address" if nated else "un-NATed source address"
    return _advertised(
        f"{what} {address} lies in {prefix}, advertised over circuit {circuit}",
        circuit,
        prefix,
        address,
    )


def source_prefix(egress: str, prefix: str) -> Evidence:
    """An internet edge's IPv6 source prefix: IPv6 leaves un-NATed, from the hosts' own addresses."""
    return Evidence(
        "nat",
        f"internet edge {egress} sends IPv6 un-NATed from {prefix}",
        egress=egress,
        prefix=prefix,
    )


def source_prefix_advertised(own: str, circuit: str, prefix: str) -> Evidence:
    return Evidence(
        "advertised",
        f"IPv6 source prefix {own} overlaps {prefix}, advertised over circuit {circuit}",
        circuit=circuit,
        prefix=prefix,
        name=own,
    )


def nat_pool_advertised(nat: str, circuit: str, prefix: str) -> Evidence:
    return _advertised(
        f"{nat} lies in {prefix}, the NAT pool advertised over circuit {circuit}",
        circuit,
        prefix,
        nat,
    )


def advertised_elsewhere(
    address: str,
    circuit: str,
    prefix: str,
    *,
    forward: str,
    others: str,
    how: str,
    prefixes: str = "",
) -> Evidence:
    """The source is advertised over another circuit than the forward one (`circuit`, `prefix`).

    `how`: "only" (only over the others), "equally" (over the forward one and,
    as specific, the others), "more-specific" (more specifically over the others).
    """
    if how == "only":
        text = (
            f"source / NAT address {address} is advertised only over circuit {others} ({prefixes})"
        )
    elif how == "equally":
        text = (
            f"source / NAT address {address} is advertised over circuit {forward} and, "
            f"equally specific, over {others} ({prefix})"
        )
    else:
        text = (
            f"source / NAT address {address} is in {prefix}, advertised over {others}, more "
            f"specific than what circuit {forward} advertises"
        )
    return _advertised(text, circuit, prefix, address)


def overlapping_advertisement(own: str, mine: str, circuit: str, prefix: str) -> Evidence:
    return _advertised(
        f"circuit {own} advertises {mine} and circuit {circuit} advertises {prefix}, which "
        "overlaps it at least as specifically",
        circuit,
        prefix,
        None,
    )


def reverse_advertised(address: str, owners: str, circuit: str, prefix: str) -> Evidence:
    return _advertised(
        f"{address} is in {prefix}, advertised over circuit {owners}", circuit, prefix, address
    )


# --------------------------------------------------------------------------- findings: return paths


def _return(text: str, address: str | None, circuit: str, prefix: str | None = None) -> Evidence:
    return Evidence("return-path", text, circuit=circuit, address=address, prefix=prefix)


def replies_over_expressroute(address: str, circuit: str, *, dropped: bool) -> Evidence:
    """Microsoft's preference for ExpressRoute; `dropped` unless the handshake showed otherwise."""
    if dropped:
        then = f"return over {circuit}, and a stateful firewall drops them"
    else:
        then = f"should return over {circuit}"
    return _return(
        f"Microsoft prefers ExpressRoute for a prefix it learns both ways: replies to "
        f"{address} {then}",
        address,
        circuit,
    )


def replies_over(address: str, circuit: str, circuits: str, *, certain: bool) -> Evidence:
    """Replies to a source come back over another circuit (`circuits` names them all)."""
    verb = "returns" if certain else "may return"
    return _return(f"Microsoft {verb} replies to {address} over {circuits}", address, circuit)


def replies_for_prefix_over(prefix: str, circuit: str) -> Evidence:
    return _return(
        f"Microsoft may return replies for {prefix} over {circuit}", None, circuit, prefix
    )


def nated_returns_over(address: str, owners: str, circuit: str) -> Evidence:
    return _return(
        f"traffic NATed to {address} leaves over {owners} and returns over {circuit}",
        address,
        circuit,
    )


# --------------------------------------------------------------------------- findings: measurements


def handshake_filtered(address: str | None, port: int) -> Evidence:
    return Evidence(
        "tcp",
        f"the TCP handshake to {address} port {port} was filtered (no SYN-ACK, no RST)",
        name="filtered",
        address=address,
    )


def handshake_succeeded(address: str | None, port: int) -> Evidence:
    """The measurement that contradicts a predicted asymmetry."""
    return Evidence(
        "tcp",
        f"yet the TCP handshake to {address} port {port} succeeded: replies came back the way "
        "the requests left, so this is predicted from the site's facts, not seen",
        name="open",
        address=address,
    )


def reply_hops(state: str, address: str | None, reply_ttl: int | None, hops_back: int) -> Evidence:
    ttl = f"the reply arrived with TTL {reply_ttl}, " if reply_ttl is not None else ""
    return Evidence(
        "tcp", f"{ttl}about {hops_back} hops back", name=state, address=address, ttl=reply_ttl
    )


def trace_reached(address: str | None, ttl: int, *, at_hop: bool) -> Evidence:
    """The trace reached the destination: "at hop N" (a fact of the path) or "in N hops" (a count)."""
    where = f"at hop {ttl}" if at_hop else f"in {ttl} hops"
    return Evidence("trace", f"the trace reached {address} {where}", ttl=ttl, address=address)


def reaches_microsoft(e: Evidence) -> Evidence:
    """A hop of Microsoft's (or the MSEE) as proof that the trace got to the far side."""
    return replace(e, text=f"{e.text}: the trace reaches the Microsoft side")


def standard_circuit(circuit: str, location: str, geography: str) -> Evidence:
    return Evidence(
        "geography",
        f"circuit {circuit} is Standard at {location} ({geography})",
        name=geography,
        circuit=circuit,
    )


def nat(egress: str, address: str) -> Evidence:
    return Evidence(
        "nat",
        f"internet edge {egress} uses NAT address {address}",
        egress=egress,
        address=address,
    )


def note(text: str) -> Evidence:
    return Evidence("note", text)


# --------------------------------------------------------------------------- route filters


def community_text(value: str, service: str, region: str | None) -> str:
    where = f", region {region}" if region else ""
    return f"community {value} ({service}{where})"


def route_filter(
    address: str,
    circuit: str,
    route_filter: str | None,
    state: str,
    *,
    community: str | None = None,
    service: str | None = None,
    region: str | None = None,
    prefix: str | None = None,
    location: str | None = None,
) -> Evidence:
    """What circuit's route filter does with the community holding `address` (`state`:
    routefilter.State)."""
    if community is None:
        if state == "filter-unknown":
            text = f"circuit {circuit} has no route filter known: every Microsoft prefix assumed advertised"
        else:
            text = (
                f"{address} is in no BGP community of Microsoft peering: Microsoft advertises it "
                f"over no circuit (route filter {route_filter} of circuit {circuit})"
            )
    else:
        held = f"{address} is in {prefix}, {community_text(community, service or '', region)}"
        rf = f"route filter {route_filter} of circuit {circuit}"
        text = {
            "advertised": f"{held}, which {rf} allows",
            "excluded": f"{held}, which {rf} does not allow",
            "not-authorized": (
                f"{held}, which {rf} allows, but the subscription may not use it "
                "(isAuthorizedToUse is false)"
            ),
            "other-geography": (
                f"{held}, which {rf} allows, but circuit {circuit} is Standard at {location}, "
                "another geopolitical region: Microsoft does not advertise it there"
            ),
        }[state]
    return Evidence(
        "route-filter",
        text,
        circuit=circuit,
        address=address,
        prefix=prefix,
        name=route_filter,
        community=community,
        service=service,
        region=region,
    )
