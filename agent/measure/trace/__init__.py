"""Traceroute to many targets at once: the entry point the probe cycle calls.

`trace_many` traces every request in one call: TCP SYNs to the service port
by default (shaped like the real flow, so firewalls and load balancers treat
them alike), UDP or ICMP echo on request.  How the probing is done -- Paris
flow identifiers, all TTLs in flight, Doubletree reuse of shared hops,
per-router pacing -- lives in `agent.measure.trace.engine`; this module validates the
options, checks the capability and turns the engine's state into `Trace`
records.  Network outcomes never raise: a trace that could not run carries a
failure code instead.

Requests may mix IPv4 and IPv6 addresses; `Trace.family` says which each
was traced in.  IPv6 probes carry a flow label fixed per flow (Paris), the
routers' ICMPv6 budget is modelled apart from ICMP's (`router_refill_v6_s`),
and, IPv6 having no Record Route, traces share hops by Doubletree's rules
alone and by a common /64 at the same distance (see the engine).

`Trace.hops` per TTL: `Hop.shared` says the hop was copied from another
target's trace (Doubletree) rather than asked for this one; a hop that was
asked keeps only replies asked for this target.  Every `Reply.flow` is the
flow identifier (TCP/UDP source port, ICMP echo id) of the probe it answered;
`Trace.flow` is the target's first flow.  At the MSEE hop (see
`TraceOptions.msee_prefixes`) a target is asked with up to `msee.MSEE_FLOWS` flows:
the links its flows crossed are the replies of that unshared hop, counted by
distinct `flow` per peering /30.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from agent.measure import rawsock
from agent.report import Trace

if TYPE_CHECKING:
    from agent.measure.trace.io import Io


def has_raw_capability() -> bool:
    """Whether traces can run here (raw sockets need CAP_NET_RAW)."""
    return rawsock.has_raw_capability()


@dataclass(frozen=True, slots=True)
class TraceRequest:
    address: str
    port: int = 443
    key: Hashable | None = None  # result key; (address, port) when None

    @property
    def result_key(self) -> Hashable:
        return self.key if self.key is not None else (self.address, self.port)


@dataclass(frozen=True, slots=True)
class TraceOptions:
    protocol: Literal["tcp", "udp", "icmp"] = "tcp"
    max_ttl: int = 30
    first_ttl: int = 1
    probes_per_hop: int = 3
    pps: float = 5000.0  # cap on probes per second, all targets together
    timeout_s: float = 10.0  # the whole call gives up after this long
    # traceroute -w MAX,HERE,NEAR: wait at most MAX for a reply, but only
    # HERE times the RTT of a reply from the same hop, or NEAR times that of
    # a later hop -- so a silent hop costs a few RTTs, not MAX.
    wait_max_s: float = 1.0
    wait_here: float = 3.0
    wait_near: float = 10.0
    wait_min_s: float = 0.005  # floor for HERE/NEAR waits: our own scheduling jitter
    flows: int = 1  # flow identifiers per target; > 1 enumerates ECMP paths
    source_port: int | None = None  # first flow's source port / ICMP id; None = reserve one
    gap_limit: int = 5  # give up after this many silent TTLs beyond the last answer
    doubletree: bool = True  # reuse hops other traces learned (stop set)
    # Record Route on the distance probe: proves two targets share routers,
    # so their hops are copied without asking (and ECMP splits are seen).
    record_route: bool = True
    router_burst: int = 6  # modelled ICMP burst per router (Linux XRLIM_BURST_FACTOR)
    router_refill_s: float = 1.0  # modelled ICMP refill per router (net.ipv4.icmp_ratelimit)
    # ICMPv6 refill per router (net.ipv6.icmp.ratelimit, a budget apart from
    # ICMP's; the burst is the same; see `pacing`)
    router_refill_v6_s: float = 1.0
    # The circuits' peering subnets (the link /30s).  At the TTL where a reply
    # comes from inside one, each target is asked with up to msee.MSEE_FLOWS flow
    # identifiers, so the links its flows take (per-flow load sharing on an
    # active-active circuit) show in Reply.flow.  Empty: no such extra flows.
    msee_prefixes: tuple[str, ...] = ()
    # How long past the traces' end MSEE flows may wait for the MSEE routers'
    # ICMP tokens: under rate limits a target gets the flows that fit.
    msee_wait_s: float = 2.0

    def __post_init__(self) -> None:
        problems = []
        if self.protocol not in ("tcp", "udp", "icmp"):
            problems.append(f"protocol must be tcp, udp or icmp, not {self.protocol!r}")
        if not 1 <= self.first_ttl <= self.max_ttl <= 255:
            problems.append("need 1 <= first_ttl <= max_ttl <= 255")
        if not 1 <= self.probes_per_hop <= 10:
            problems.append("probes_per_hop must be 1..10")
        if self.pps <= 0 or self.timeout_s <= 0 or self.wait_max_s <= 0:
            problems.append("pps, timeout_s and wait_max_s must be positive")
        if self.msee_wait_s < 0:
            problems.append("msee_wait_s must not be negative")
        if self.wait_here < 0 or self.wait_near < 0 or self.wait_min_s < 0:
            problems.append("wait_here, wait_near and wait_min_s must not be negative")
        if not 1 <= self.flows <= 16:
            problems.append("flows must be 1..16")
        flows = max(self.flows, 6) if self.msee_prefixes else self.flows
        if self.source_port is not None and not 1 <= self.source_port <= 65535 - flows:
            problems.append("source_port must leave room for every flow below 65536")
        if (
            self.gap_limit < 1
            or self.router_burst < 1
            or self.router_refill_s <= 0
            or self.router_refill_v6_s <= 0
        ):
            problems.append(
                "gap_limit and router_burst must be >= 1, router_refill_s and"
                " router_refill_v6_s > 0"
            )
        for prefix in self.msee_prefixes:
            try:
                ipaddress.ip_network(prefix)
            except ValueError:
                problems.append(f"msee_prefixes: {prefix!r} is not a subnet like 192.0.2.0/30")
        if problems:
            raise ValueError("TraceOptions: " + "; ".join(problems))


def trace_many(
    requests: Sequence[TraceRequest],
    options: TraceOptions = TraceOptions(),
    io: Io | None = None,
) -> dict[Hashable, Trace]:
    """Trace every request together; one Trace per request key (never raises for the network).

    `io` is the machine (raw sockets, the wall clock) unless a test passes a fake network.
    """
    from agent.measure.trace import engine  # loaded only when tracing really happens

    t0 = time.perf_counter()
    if not requests:
        return {}
    unique = list({r.result_key: r for r in requests}.values())
    if io is None:
        if not has_raw_capability():
            return {
                r.result_key: Trace(
                    protocol=options.protocol, flow=0, duration_s=0.0, failure="trace.no-capability"
                )
                for r in unique
            }
        traces = engine.run(unique, options)
        elapsed = time.perf_counter() - t0
        return {k: replace(t, duration_s=min(t.duration_s, elapsed)) for k, t in traces.items()}
    return engine.run(unique, options, io)
