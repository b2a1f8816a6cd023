"""Path state per (agent, target, family), flip hysteresis and asymmetry pairing.

Pure functions over records: the store loads state, calls these, and writes
what they return.  Nothing here does I/O or reads a clock.

- `observations(report)` turns one report into one compact `Observation` per
  target and address family: a dual-stack target's IPv4 and IPv6 paths are two
  paths (each flips, alerts and pairs on its own; IPv6 leaves un-NATed, so its
  reverse path is traced to the site's IPv6 source prefix).
- `apply(prev, obs, ...)` moves a `PathState` on by one in-order report: a
  change of class, circuit or egress becomes a confirmed route flip only
  after `confirm_reports` consecutive reports agree; a single odd report is a
  `path_deviation` event.  The link is not part of a path's identity: on an
  active-active circuit one flow's hash picks it (collector.redundancy watches
  the links).  An unknown field (a class, circuit or egress the report could
  not establish) never starts, confirms or cancels a flip.  A changed AS-level
  signature on the same path is a low-severity `path_change`.
- `reported_asymmetries` and `measured_asymmetries` find asymmetry from agent
  findings and from reverse traces paired with a site's forward paths.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from agent.report import Finding, Report, Result, SiteFacts

REVERSE_ROLE = "reverse"
NO_CIRCUIT = "none"
# A path's address family as the collector keys, labels and stores it: 4 or 6.
FAMILIES = (4, 6)


def family_of(result: Result) -> int:
    """6 for an IPv6 address; 4 otherwise, also for a result without an address (a DNS
    failure): reports of older agents and failed lookups stay on the IPv4 path they had."""
    return 6 if result.address_family == "ipv6" else 4


def family_words(family: int) -> str:
    """`IPv6` — how evidence and summaries name a path's family."""
    return f"IPv{family}"


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class PathKey:
    """A path's identity, what a route flip is a change of: class, circuit, egress.

    None is unknown (or, for a circuit off ExpressRoute and an egress on it,
    not applicable): see `compatible`.
    """

    path_class: str
    circuit: str | None = None
    egress: str | None = None

    @property
    def label(self) -> str:
        """`expressroute/ams-1`, `internet/ams-inet` — the alert's from/to."""
        return "/".join(p for p in (self.path_class, self.circuit, self.egress) if p)

    def as_dict(self) -> dict[str, Any]:
        return {"class": self.path_class, "circuit": self.circuit, "egress": self.egress}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PathKey:
        return cls(d["class"], d.get("circuit"), d.get("egress"))


def _agree(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b


def compatible(a: PathKey, b: PathKey) -> bool:
    """True when no field known on both sides differs: unknown is not a change."""
    if "unknown" in (a.path_class, b.path_class):
        return True
    return (
        a.path_class == b.path_class and _agree(a.circuit, b.circuit) and _agree(a.egress, b.egress)
    )


def refine(known: PathKey, seen: PathKey) -> PathKey:
    """`known` with the fields it lacks taken from a compatible `seen`."""
    if known.path_class == "unknown":
        return seen
    if seen.path_class == "unknown":
        return known
    circuit, egress = known.circuit or seen.circuit, known.egress or seen.egress
    if circuit is known.circuit and egress is known.egress:
        return known  # nothing learnt (every report on a known path): no new key
    return PathKey(known.path_class, circuit, egress)


def confirms(known: PathKey, seen: PathKey) -> bool:
    """`seen` is compatible and knows every field `known` knows: back on that path."""
    return (
        compatible(known, seen)
        and (known.path_class == "unknown" or seen.path_class != "unknown")
        and (known.circuit is None or seen.circuit is not None)
        and (known.egress is None or seen.egress is not None)
    )


@dataclass(frozen=True, slots=True)
class Measurement:
    """A path as one report measured it: an `Observation` is one, a `PathState` keeps the last."""

    target: str
    role: str
    key: PathKey
    link: str | None = None  # in a PathState the last link seen: the circuit's, not the path's
    address: str | None = None
    addresses: tuple[str, ...] = ()
    signature: str = ""
    evidence: tuple[str, ...] = ()
    expected: str | None = None
    matches_expected: bool | None = None
    connect_s: float | None = None
    dns_s: float | None = None
    hops: int | None = None
    tcp_state: str | None = None
    family: int = 4


@dataclass(frozen=True, slots=True)
class Observation(Measurement):
    """One target as one report measured it: the compact row the store keeps."""

    # The failover order for this target: its own, else the site's.
    prefer: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Candidate:
    """A different path seen in `count` consecutive reports, not yet a flip."""

    key: PathKey
    count: int
    first_received_s: float
    address: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PathState(Measurement):
    """A path's identity (`key`, refined as reports learn it) and its last measurement."""

    since_s: float
    last_seq: int
    last_received_s: float
    candidate: Candidate | None = None
    flips_total: int = 0
    # Where a chain of flips still alerting started: a later flip keeps telling
    # the story from there, and a return to it resolves the chain.
    flip_origin: PathKey | None = None


# `_next_state` builds the next state whole (faster than `replace`, which runs for every
# path of every report): a field added to PathState must be carried there too.
_CARRIED = [
    "target",
    "role",
    "key",
    "link",
    "address",
    "addresses",
    "signature",
    "evidence",
    "expected",
    "matches_expected",
    "connect_s",
    "dns_s",
    "hops",
    "tcp_state",
    "family",
    "since_s",
    "last_seq",
    "last_received_s",
    "candidate",
    "flips_total",
    "flip_origin",
]
if [f.name for f in fields(PathState)] != _CARRIED:  # a bug
    raise TypeError("PathState changed: carry its fields in _next_state, then update _CARRIED")


@dataclass(frozen=True, slots=True)
class PathEvent:
    kind: str  # route_flip | path_deviation | path_change
    severity: str
    target: str
    summary: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    evidence: tuple[str, ...] = ()
    driver: str | None = None  # routing | dns, for flips
    origin: PathKey | None = None  # for flips: where the chain of flips started
    family: int = 4


@dataclass(frozen=True, slots=True)
class Transition:
    state: PathState
    events: tuple[PathEvent, ...] = ()
    flip: PathEvent | None = None
    signature_changed: bool = False


# --------------------------------------------------------------------------- report -> observations


def signature(result: Result) -> str:
    """AS-level path signature; hop-level when no hop carries an ASN.

    The AS path ignores which ECMP member answered, so it changes only when
    the route does.  Without ASN data the per-TTL address sets stand in.
    """
    trace = result.trace
    if trace is None or not trace.hops:
        return ""
    asns: list[int] = []
    for hop in trace.hops:
        for reply in hop.replies:
            if reply.asn is not None:
                if not asns or asns[-1] != reply.asn:
                    asns.append(reply.asn)
                break
    if asns:
        return "as:" + " ".join(map(str, asns))
    hops = "|".join(f"{h.ttl}:{','.join(sorted(h.addresses))}" for h in trace.hops if h.replies)
    return "hops:" + hashlib.sha1(hops.encode()).hexdigest()[:16]


def _observe(
    target: str, family: int, results: Sequence[Result], site_prefer: tuple[str, ...]
) -> Observation:
    # The first result with a verdict speaks for the target: agents list the
    # address they connect to first.
    main = results[0]
    if len(results) > 1 and main.verdict is None:
        main = next((r for r in results if r.verdict is not None), main)
    v = main.verdict
    tcp, dns, trace = main.tcp, main.dns, main.trace
    addresses: dict[str, None] = {}
    for r in results:
        if r.address:
            addresses.setdefault(r.address, None)
        if r.dns:
            for a in r.dns.addresses:
                addresses.setdefault(a, None)
    key = PathKey(v.path_class, v.circuit, v.egress) if v else PathKey("unknown")
    return Observation(
        target=target,
        role=main.role,
        key=key,
        link=v.link if v else None,
        address=main.address,
        addresses=tuple(addresses),
        signature=signature(main),
        evidence=tuple([e.text for e in v.evidence])
        if v
        else ((main.failure,) if main.failure else ()),
        expected=v.expected if v else None,
        matches_expected=v.matches_expected if v else None,
        connect_s=tcp.connect_s if tcp else None,
        dns_s=dns.duration_s if dns else None,
        hops=trace.hop_count if trace else None,
        tcp_state=tcp.state if tcp else None,
        prefer=main.prefer or site_prefer,
        family=family,
    )


def group_by_path(report: Report) -> dict[tuple[str, int], list[Result]]:
    """Results by (target, family), in report order."""
    grouped: dict[tuple[str, int], list[Result]] = {}
    for r in report.results:
        grouped.setdefault((r.target, family_of(r)), []).append(r)
    return grouped


def observations(report: Report) -> list[Observation]:
    return [
        _observe(t, fam, rs, report.site.prefer) for (t, fam), rs in group_by_path(report).items()
    ]


# --------------------------------------------------------------------------- hysteresis


def _side(key: PathKey, m: Measurement) -> dict[str, Any]:
    """One side of an event: a path and how a report measured it."""
    return {
        **key.as_dict(),
        "link": m.link,
        "path": key.label,
        "address": m.address,
        "signature": m.signature,
        "evidence": list(m.evidence),
    }


def _next_state(
    obs: Observation,
    seq: int,
    received_s: float,
    *,
    role: str,
    key: PathKey,
    since_s: float,
    link: str | None,
    candidate: Candidate | None,
    flips_total: int,
    flip_origin: PathKey | None,
) -> PathState:
    """The path after report `seq`: what `obs` measured, with what the path keeps."""
    return PathState(
        target=obs.target,
        role=role,
        key=key,
        link=link,
        address=obs.address,
        addresses=obs.addresses,
        signature=obs.signature,
        evidence=obs.evidence,
        expected=obs.expected,
        matches_expected=obs.matches_expected,
        connect_s=obs.connect_s,
        dns_s=obs.dns_s,
        hops=obs.hops,
        tcp_state=obs.tcp_state,
        family=obs.family,
        since_s=since_s,
        last_seq=seq,
        last_received_s=received_s,
        candidate=candidate,
        flips_total=flips_total,
        flip_origin=flip_origin,
    )


def new_state(obs: Observation, seq: int, received_s: float) -> PathState:
    return _next_state(
        obs,
        seq,
        received_s,
        role=obs.role,
        key=obs.key,
        since_s=received_s,
        link=obs.link,
        candidate=None,
        flips_total=0,
        flip_origin=None,
    )


def _named(target: str, family: int) -> str:
    """The target as summaries name its path: an IPv6 path says so, IPv4 reads as before."""
    return target if family == 4 else f"{target} ({family_words(family)})"


def apply(
    prev: PathState | None, obs: Observation, seq: int, received_s: float, confirm_reports: int
) -> Transition:
    """Advance the path state by one in-order report (seq above the agent's last)."""
    if prev is None:
        return Transition(new_state(obs, seq, received_s), signature_changed=True)
    if compatible(prev.key, obs.key):
        # The same path, or a report that could not tell: a known field is
        # refined, a pending flip is cancelled only by a report that knows
        # as much as the path does.
        key = refine(prev.key, obs.key)
        state = _next_state(
            obs,
            seq,
            received_s,
            role=prev.role,
            key=key,
            since_s=prev.since_s,
            link=obs.link or prev.link,
            candidate=None if confirms(prev.key, obs.key) else prev.candidate,
            flips_total=prev.flips_total,
            flip_origin=prev.flip_origin,
        )
        if obs.signature == prev.signature or not prev.signature or not obs.signature:
            return Transition(state, signature_changed=obs.signature != prev.signature)
        change = PathEvent(
            kind="path_change",
            severity="info",
            target=obs.target,
            summary=f"{_named(obs.target, obs.family)}: hops changed on the same path {key.label} "
            f"({prev.signature} -> {obs.signature})",
            before=_side(prev.key, prev),
            after=_side(key, obs),
            evidence=obs.evidence,
            family=obs.family,
        )
        return Transition(state, (change,), signature_changed=True)

    measured = {
        "last_seq": seq,
        "last_received_s": received_s,
        "connect_s": obs.connect_s,
        "dns_s": obs.dns_s,
        "hops": obs.hops,
        "tcp_state": obs.tcp_state,
        "link": obs.link or prev.link,
    }
    cand = prev.candidate
    if cand is not None and compatible(cand.key, obs.key):
        cand = replace(cand, key=refine(cand.key, obs.key), count=cand.count + 1)
    else:
        cand = Candidate(obs.key, 1, received_s, obs.address)
    if cand.count < confirm_reports:
        events: tuple[PathEvent, ...] = ()
        if cand.count == 1:
            events = (
                PathEvent(
                    kind="path_deviation",
                    severity="info",
                    target=obs.target,
                    summary=f"{_named(obs.target, obs.family)}: one report saw {obs.key.label} instead of "
                    f"{prev.key.label} (needs {confirm_reports} in a row to be a flip)",
                    before=_side(prev.key, prev),
                    after=_side(obs.key, obs),
                    evidence=obs.evidence,
                    family=obs.family,
                ),
            )
        return Transition(replace(prev, **measured, candidate=cand), events)

    # Confirmed.  DNS-driven when the flipping reports measured an address the
    # old path was never measured at: the name moved, not the route.
    moved = cand.address is not None and cand.address not in (prev.addresses or (prev.address,))
    driver = "dns" if moved else "routing"
    origin = prev.flip_origin or prev.key
    flip = PathEvent(
        kind="route_flip",
        severity="critical" if prev.key.path_class == "expressroute" else "warning",
        target=obs.target,
        summary=f"{_named(obs.target, obs.family)}: path flipped {prev.key.label} -> {cand.key.label} "
        f"({'DNS-driven: the address changed' if moved else 'routing-driven'}, "
        f"{cand.count} reports in a row)",
        before=_side(prev.key, prev),
        after=_side(cand.key, obs),
        evidence=obs.evidence,
        driver=driver,
        origin=origin,
        family=obs.family,
    )
    state = _next_state(
        obs,
        seq,
        received_s,
        role=obs.role,
        key=cand.key,
        since_s=cand.first_received_s,
        link=obs.link,
        candidate=None,
        flips_total=prev.flips_total + 1,
        flip_origin=None if confirms(origin, cand.key) else origin,
    )
    return Transition(state, (flip,), flip=flip, signature_changed=True)


# --------------------------------------------------------------------------- asymmetry


@dataclass(frozen=True, slots=True)
class Asymmetry:
    """One agent/target showing asymmetry at a site, towards one circuit."""

    site: str
    circuit: str
    kind: str  # reported | measured
    agent: str
    target: str
    evidence: tuple[str, ...]
    # The alert's severity follows the finding's: a "may" finding is a warning.
    severity: str = "critical"
    family: int = 4


def alert_severity(finding: Finding) -> str:
    """critical only for a critical finding the measurement did not contradict."""
    if finding.predicted_only or finding.severity != "critical":
        return "warning"
    return "critical"


def _finding_circuit(finding: Finding, result: Result, facts: SiteFacts) -> str | None:
    """The finding's own circuit, else its evidence's, else the verdict's, else the only one."""
    if finding.circuit:
        return finding.circuit
    named = {e.circuit for e in finding.evidence if e.circuit}
    if len(named) == 1:
        return named.pop()
    if result.verdict is not None and result.verdict.circuit:
        return result.verdict.circuit
    if len(facts.circuits) == 1:
        return facts.circuits[0].name
    return None


def reported_asymmetries(report: Report) -> list[Asymmetry]:
    """Asymmetry findings the agent raised itself, one per (target, finding kind)."""
    out: list[Asymmetry] = []
    for r in report.results:
        for f in r.findings:
            if not f.asymmetry:
                continue
            circuit = _finding_circuit(f, r, report.site)
            family = family_of(r)
            predicted = " (predicted from site facts, not observed)" if f.predicted_only else ""
            lines = [
                f"{report.agent.id} -> {_named(r.target, family)}: {f.kind} ({f.severity})"
                f"{predicted}",
                *(e.text for e in f.evidence),
            ]
            if f.fix:
                lines.append(f"fix: {f.fix}")
            out.append(
                Asymmetry(
                    report.agent.site,
                    circuit or NO_CIRCUIT,
                    "reported",
                    report.agent.id,
                    r.target,
                    tuple(lines),
                    alert_severity(f),
                    family,
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class SitePath:
    """A current path as the asymmetry pairing needs it."""

    agent: str
    site: str
    target: str
    key: PathKey
    address: str | None = None
    evidence: tuple[str, ...] = ()
    family: int = 4


def _transport(key: PathKey) -> str:
    # A CDN is reached over the internet: the same transport for pairing.
    return "internet" if key.path_class == "cdn" else key.path_class


def _in_prefixes(address: str, prefixes: Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for p in prefixes:
        try:
            if ip in ipaddress.ip_network(p, strict=False):
                return True
        except ValueError:
            continue
    return False


class PrefixIndex:
    """A site's advertised prefixes, parsed once, by circuit: which circuits advertise an
    address, in one set lookup per prefix length.  Built once per version of the site's
    facts (a report can declare ~200k prefixes; parsing them per reverse path took minutes).
    """

    __slots__ = ("_by_len", "parsed")

    def __init__(self, facts: SiteFacts):
        by_len: dict[tuple[int, int], dict[int, set[str]]] = {}
        parsed = 0
        for c in facts.circuits:
            for p in c.advertised_prefixes:
                try:
                    net = ipaddress.ip_network(p, strict=False)
                except ValueError:
                    continue
                parsed += 1
                by_len.setdefault((net.version, net.prefixlen), {}).setdefault(
                    int(net.network_address), set()
                ).add(c.name)
        self._by_len = by_len
        self.parsed = parsed  # prefixes parsed: the work a cache hit saves

    def circuits(self, address: str) -> set[str]:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return set()
        value, bits = int(ip), ip.max_prefixlen
        out: set[str] = set()
        for (version, length), nets in self._by_len.items():
            if version == ip.version:
                names = nets.get(value >> (bits - length) << (bits - length))
                if names:
                    out |= names
        return out


def owner_of(
    address: str,
    facts_by_site: Mapping[str, SiteFacts],
    prefixes: Mapping[str, PrefixIndex] | None = None,
) -> list[tuple[str, set[str], set[str]]]:
    """Sites that own a NAT address, or an IPv6 source address (IPv6 leaves un-NATed, from
    an edge's source prefix): (site, internet edges, circuits) carrying it."""
    owners = []
    for site, facts in facts_by_site.items():
        edges = {
            e.name
            for e in facts.internet_edges
            if address in e.nat_addresses
            or (":" in address and _in_prefixes(address, e.source_prefixes_v6))
        }
        # Traffic over a circuit is never translated to an internet edge's
        # NAT address, even when a circuit (wrongly) advertises its prefix:
        # that leak is what makes the return asymmetric, not a forward path.
        if edges:
            circuits: set[str] = set()
        elif prefixes is not None and site in prefixes:
            circuits = prefixes[site].circuits(address)
        else:
            circuits = {
                c.name for c in facts.circuits if _in_prefixes(address, c.advertised_prefixes)
            }
        if edges or circuits:
            owners.append((site, edges, circuits))
    return owners


def measured_asymmetries(
    facts_by_site: Mapping[str, SiteFacts],
    reverse_paths: Sequence[SitePath],
    forward_by_site: Mapping[str, Sequence[SitePath]],
    prefixes: Mapping[str, PrefixIndex] | None = None,
) -> list[Asymmetry]:
    """Pair reverse traces towards a site's NAT address with that site's forward paths.

    A forward path uses the NAT address when it leaves via an internet edge
    that translates to it, or via a circuit that advertises it.  Classes (CDN
    counts as internet) or circuits that differ are asymmetric.  Pairs are of one
    family: a reverse trace to an IPv6 source address says nothing of IPv4 paths,
    which leave from a NAT pool.
    """
    out: list[Asymmetry] = []
    for rev in reverse_paths:
        nat = rev.address or rev.target
        if rev.key.path_class == "unknown":
            continue
        for site, edges, circuits in owner_of(nat, facts_by_site, prefixes):
            for fwd in forward_by_site.get(site, ()):
                if fwd.family != rev.family:
                    continue
                k = fwd.key
                via_edge = _transport(k) == "internet" and (
                    k.egress in edges or (k.egress is None and edges)
                )
                via_circuit = k.path_class == "expressroute" and k.circuit in circuits
                if not (via_edge or via_circuit):
                    continue
                differs = _transport(k) != _transport(rev.key) or (
                    k.path_class == "expressroute" and k.circuit != rev.key.circuit
                )
                if not differs:
                    continue
                circuit = rev.key.circuit or k.circuit or NO_CIRCUIT
                fwd_name, rev_name = _named(fwd.target, fwd.family), _named(nat, rev.family)
                out.append(
                    Asymmetry(
                        site,
                        circuit,
                        "measured",
                        fwd.agent,
                        fwd.target,
                        (
                            f"forward {fwd.agent} -> {fwd_name}: {k.path_class}"
                            + (f"/{k.circuit}" if k.circuit else "")
                            + (f" via {k.egress}" if k.egress else "")
                            + (f" ({fwd.evidence[0]})" if fwd.evidence else ""),
                            f"reverse {rev.agent} -> {rev_name}: {rev.key.path_class}"
                            + (f"/{rev.key.circuit}" if rev.key.circuit else "")
                            + (f" ({rev.evidence[0]})" if rev.evidence else ""),
                        ),
                        family=fwd.family,
                    )
                )
    return out


def group_asymmetries(items: Iterable[Asymmetry]) -> dict[tuple[str, str], list[Asymmetry]]:
    """One group per (site, circuit): what one ErpathPathAsymmetric alert merges."""
    groups: dict[tuple[str, str], list[Asymmetry]] = {}
    for a in items:
        groups.setdefault((a.site, a.circuit), []).append(a)
    return groups
