"""One probe cycle: resolve, route, TCP-probe, trace, classify — one Report.

This is the only place the measurement modules are wired together.  Each
phase runs for all targets at once (the modules batch internally).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from agent import __version__
from agent.config import AgentConfig, TargetSpec
from agent.measure.dnscache import DnsCache
from agent.report import (
    AgentInfo,
    DnsResult,
    Health,
    Link,
    MseeProbe,
    Report,
    Result,
    RouteResult,
    SiteFacts,
    TcpResult,
    Trace,
    Verdict,
)
from agent.verdict.family import FamilyChoice
from agent.verdict.servicetags import ServiceTags

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ProbePlan:
    """What one cycle measures: the targets and how."""

    targets: tuple[TargetSpec, ...]
    trace: bool = True
    name_hops: bool = True
    # Only this address family's addresses of each name (4 or 6; `probe once --family`).
    family: int | None = None


@dataclass(frozen=True, slots=True)
class _Probe:
    """One (target, address) to measure; address None when DNS failed."""

    target: TargetSpec
    address: str | None
    dns: DnsResult | None


# The MSEE's BGP port: the MSEE answers a SYN there with a SYN-ACK or a RST.
BGP_PORT = 179


def msee_endpoints(site: SiteFacts) -> dict[tuple[str, int], tuple[str, Link]]:
    """The MSEE address (second address of the peering /30 or /126) of each circuit link.

    Probed only when the site has a failover order to judge (2+ entries):
    the answers tell the collector which circuits are available.
    """
    if len(site.prefer) < 2:
        return {}
    out: dict[tuple[str, int], tuple[str, Link]] = {}
    for c in site.circuits:
        for link, subnet in c.link_subnets():  # each family's MSEE of each link
            hosts = list(itertools.islice(ipaddress.ip_network(subnet, strict=False).hosts(), 2))
            if len(hosts) == 2:
                out[(str(hosts[1]), BGP_PORT)] = (c.name, link)
    return out


def msee_probes(
    endpoints: dict[tuple[str, int], tuple[str, Link]], answers: dict[tuple[str, int], TcpResult]
) -> tuple[MseeProbe, ...]:
    """A SYN-ACK or a RST from the MSEE is an answer; silence or an error is not."""
    out = []
    for key, (circuit, link) in endpoints.items():
        r = answers.get(key)
        answered = r is not None and r.state in ("open", "closed")
        out.append(
            MseeProbe(circuit, link, key[0], answered, r.connect_s if answered and r else None)
        )
    return tuple(out)


def _pick_addresses(dns: DnsResult, mode: str, family: int | None = None) -> list[str]:
    """Which of a name's addresses to probe (see [probe] addresses in docs/agent-config.md).

    "first": the first IPv4 one; "all": every one; "both" and "preferred": the
    first of each family (which of them users get needs the routes and the
    handshakes: `_users_choice`).  `family` keeps one family's addresses.
    """
    addresses = [
        a for a in dns.addresses if family is None or ipaddress.ip_address(a).version == family
    ]
    if mode == "all":
        return addresses
    if mode in ("both", "preferred"):
        seen: dict[int, str] = {}
        for a in addresses:
            seen.setdefault(ipaddress.ip_address(a).version, a)
        return list(seen.values())
    v4 = [a for a in addresses if ipaddress.ip_address(a).version == 4]
    return (v4 or addresses)[:1]


def _expand(
    targets: Sequence[TargetSpec],
    answers: dict[str, DnsResult],
    mode: str,
    family: int | None = None,
) -> list[_Probe]:
    probes: list[_Probe] = []
    for t in targets:
        if t.address:
            probes.append(_Probe(t, t.address, None))
            continue
        dns = answers[t.name]
        picked = _pick_addresses(dns, mode, family) if dns.failure is None else []
        if not picked:
            probes.append(_Probe(t, None, dns))
        probes.extend(_Probe(t, a, dns) for a in picked)
    return probes


def _users_choices(
    probes: Sequence[_Probe],
    routes: dict[str, RouteResult],
    tcp_results: dict[tuple[str, int], TcpResult],
    default_port: int,
) -> dict[str, FamilyChoice]:
    """Per name probed on more than one address: the family users get and why."""
    from agent.verdict.family import Destination, choose

    by_name: dict[str, list[_Probe]] = {}
    for p in probes:
        if p.address and p.dns is not None:
            by_name.setdefault(p.target.name, []).append(p)
    out: dict[str, FamilyChoice] = {}
    for name, group in by_name.items():
        port = group[0].target.port or default_port
        destinations = [Destination(p.address, routes.get(p.address)) for p in group if p.address]
        answers = {p.address: tcp_results.get((p.address, port)) for p in group if p.address}
        out[name] = choose(destinations, answers)
    return out


def _users_address(p: _Probe, choices: dict[str, FamilyChoice]) -> bool:
    """Is this the address users get (always, for an address target or a failed name)?"""
    choice = choices.get(p.target.name)
    return choice is None or p.address is None or p.address == choice.chosen.address


def run_cycle(
    config: AgentConfig,
    plan: ProbePlan,
    *,
    seq: int,
    interval_s: float | None = None,
    health: Health | None = None,
    dns_cache: DnsCache | None = None,
    namer: Callable[[str], tuple[str | None, int | None]] | None = None,
    progress: Progress = lambda _msg: None,
    service_tags: ServiceTags | None = None,
) -> Report:
    """Measure every target once and return the report (never raises for network outcomes)."""
    # Imported here so that `agent.cycle` stays importable without scapy for
    # tools that only build reports (and so start-up of other commands is fast).
    from agent.measure import dns, route, tcp, trace
    from agent.verdict import classify, family, findings, sharedpath

    started_wall = datetime.now(UTC)
    t0 = time.perf_counter()
    probe = config.probe

    names = sorted({t.name for t in plan.targets if not t.address})
    progress(f"resolving {len(names)} names")
    resolve_many = dns_cache.resolve_many if dns_cache else dns.resolve_many
    answers = resolve_many(names, config.dns.resolvers, config.dns.timeout_s) if names else {}
    probes = _expand(plan.targets, answers, probe.addresses, plan.family)

    addresses = sorted({p.address for p in probes if p.address})
    progress(f"looking up routes for {len(addresses)} addresses")
    routes = route.route_get_many(addresses)

    endpoints = sorted({(p.address, p.target.port or probe.port) for p in probes if p.address})
    progress(f"probing {len(endpoints)} endpoints")
    trace_options = trace.TraceOptions(
        protocol=probe.trace_protocol,
        max_ttl=probe.max_ttl,
        probes_per_hop=probe.probes_per_hop,
        pps=probe.pps,
        timeout_s=probe.trace_timeout_s,
        # More flows at the MSEE hop: the circuits' peering subnets.
        msee_prefixes=tuple(
            s for c in config.site_facts().circuits for _link, s in c.link_subnets()
        ),
    )
    # The SYN probe, then the trace: side by side their raw-socket receive
    # loops would compete for one core, and the SYN probe takes milliseconds.
    # Endpoints go in batches of `concurrency`, bounding sockets and state.
    tcp_results: dict[tuple[str, int], TcpResult] = {}
    traces: dict[tuple[str, int], Trace] = {}
    # The MSEEs get their SYN with the first batch: their answers arrive while
    # the targets' do, so a silent MSEE costs no extra wait.
    msee = msee_endpoints(config.site_facts())
    if msee and not endpoints:
        tcp_results |= tcp.probe_tcp(list(msee), probe.timeout_s)
    for i in range(0, len(endpoints), probe.concurrency):
        batch = endpoints[i : i + probe.concurrency]
        extra = list(msee) if i == 0 else []
        tcp_results |= tcp.probe_tcp(batch + extra, probe.timeout_s)
    # Which family users get needs every family's handshake: only then are the
    # addresses users do not get dropped ("preferred") and the rest traced.
    # "first" (or one family asked for) probes one family: users' choice is not measured.
    choices: dict[str, FamilyChoice] = {}
    if probe.addresses != "first" and plan.family is None:
        choices = _users_choices(probes, routes, tcp_results, probe.port)
    if probe.addresses == "preferred":
        probes = [p for p in probes if _users_address(p, choices)]
    traced = sorted({(p.address, p.target.port or probe.port) for p in probes if p.address})
    # The service passes the last good copy when the file is being replaced.
    tags = service_tags if service_tags is not None else config.load_service_tags()
    site = config.site_facts()
    # Read each cycle (cached while unchanged): an update is picked up at the next one.
    communities = config.load_bgp_communities()
    if plan.trace:
        # Routers answer ~6 probes at once, then one a second: one destination
        # per routed prefix is traced first, so each prefix gets a measured path
        # that the others may take theirs from (sharedpath, below).
        first, _rest = sharedpath.first_per_prefix(
            [a for a, _ in traced], routes, site, tags, communities
        )
        leading = set(first)
        rounds = [
            [k for k in traced if k[0] in leading],
            [k for k in traced if k[0] not in leading],
        ]
        for keys in rounds:
            for i in range(0, len(keys), probe.concurrency):
                batch = keys[i : i + probe.concurrency]
                requests = [trace.TraceRequest(address=a, port=p) for a, p in batch]
                traces |= trace.trace_many(requests, trace_options)

    if plan.name_hops and traces:
        hop_addresses = {r.address for t in traces.values() for h in t.hops for r in h.replies}
        progress(f"naming {len(hop_addresses)} hops")
        # The service passes one long-lived namer so its cache spans cycles.
        namer = namer or dns.HopNamer(config.dns.resolvers, config.dns.timeout_s)
        namer.prefetch(sorted(hop_addresses))
        traces = {k: _named(t, namer) for k, t in traces.items()}

    classified: list[Result] = []
    for p in probes:
        port = p.target.port or probe.port
        key = (p.address, port)
        measured = Result(
            target=p.target.name,
            role=p.target.role,
            port=port,
            address=p.address,
            dns=p.dns,
            route=routes.get(p.address) if p.address else None,
            tcp=tcp_results.get(key) if p.address else None,
            trace=traces.get(key) if p.address else None,
            prefer=p.target.prefer,
            family=family.family_of(p.address) if p.address else None,
        )
        verdict = classify.classify(
            measured,
            site,
            tags,
            agent_role=config.agent.role,
            expect=p.target.expect,
            communities=communities,
        )
        classified.append(replace(measured, verdict=verdict))
    # A trace that rate-limited hops cut short takes its path from another
    # result of this cycle in the same prefix, routed alike (docs/verdicts.md).
    expects = {(p.target.name, p.address): p.target.expect for p in probes}

    def reclassify(r: Result) -> Verdict:
        return classify.classify(
            r,
            site,
            tags,
            agent_role=config.agent.role,
            expect=expects[(r.target, r.address)],
            communities=communities,
        )

    classified = list(sharedpath.infer(classified, site, tags, reclassify, communities))
    results: list[Result] = []
    for p, measured in zip(probes, classified, strict=True):
        port = p.target.port or probe.port
        verdict = measured.verdict
        assert verdict is not None
        choice = choices.get(p.target.name) if p.address else None
        found = findings.find(
            measured,
            verdict,
            site,
            tags=tags,
            communities=communities,
            expect=p.target.expect,
        )
        if choice is not None and choice.reason != "only-family":
            # The verdict says which family users get (a name of one family needs
            # no word: Result.family says it); the fallback's cause is found on
            # the address users fall back to.
            verdict = replace(
                verdict, evidence=(*verdict.evidence, family.family_evidence(p.address, choice))
            )
            blackhole = family.ipv6_blackhole(choice, port)
            if blackhole is not None and p.address == choice.chosen.address:
                found = (*found, blackhole)
        result = replace(
            measured, failure=_first_failure(measured), verdict=verdict, findings=found
        )
        results.append(result)

    return Report(
        id=str(uuid.uuid4()),
        seq=seq,
        agent=AgentInfo(
            id=config.agent.id,
            site=config.agent.site,
            role=config.agent.role,
            version=__version__,
            hostname=socket.gethostname(),
        ),
        started_at=started_wall.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        duration_s=round(time.perf_counter() - t0, 6),
        interval_s=interval_s,
        site=site,
        health=_with_tags_age(health, tags),
        results=tuple(results),
        msee_probes=msee_probes(msee, tcp_results),
    )


def _with_tags_age(health: Health | None, tags: ServiceTags | None) -> Health | None:
    """Health with the service tags' changeNumber and age, so the collector sees stale tags.

    Only a report with a health block (the service's) gets them: `probe once` has no
    spool, and a made-up one would show as the agent's spool and dropped reports."""
    if tags is None or health is None:
        return health
    try:
        age_s = max(0.0, time.time() - os.stat(tags.source).st_mtime)
    except OSError:  # replaced or removed since it was read: the age is unknown
        age_s = None
    return replace(
        health,
        service_tags_change_number=tags.change_number,
        service_tags_age_s=None if age_s is None else round(age_s, 3),
    )


def _named(t: Trace, namer: Callable[[str], tuple[str | None, int | None]]) -> Trace:
    hops = []
    for h in t.hops:
        replies = []
        for r in h.replies:
            ptr, asn = namer(r.address)
            replies.append(replace(r, ptr=ptr, asn=asn))
        hops.append(replace(h, replies=tuple(replies)))
    return replace(t, hops=tuple(hops))


def _first_failure(r: Result) -> str | None:
    """The failure that explains the result best: the earliest phase that failed."""
    for phase in (r.dns, r.route, r.tcp):
        if phase is not None and phase.failure:
            return phase.failure
    if r.trace is not None and r.trace.failure and r.trace.failure != "trace.no-capability":
        return r.trace.failure
    return None
