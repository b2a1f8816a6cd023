"""More flows at the MSEE hop: which links of a circuit a target's flows take.

On an active-active ExpressRoute circuit the CE load-shares flows over the
primary and the secondary link by a hash of the 5-tuple; the MSEE answering
a probe is the second address of that link's peering /30.  One Paris flow
per target shows one link.  So at the TTL where a target's trace met an
address inside a circuit's peering subnets, the target is asked again with
more flow identifiers (only at that hop: not a full MDA of every hop), until
MDA-lite's rule is met: a second next hop has shown, or MSEE_FLOWS flows
have shown one -- had there been a second, it would have shown with at
least 95% probability.  Replies keep their flow, so the verdict counts the
flows per link.

`MseeHop` decides which flow to ask next and when a target is done;
`MseeProber` finds each target's MSEE hop in the engine's traces and sends
the flows through the engine, against the MSEE routers' ICMP budget.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.measure import rawsock
from agent.measure.trace.state import ROUTER_KINDS, Out, TraceState
from agent.report import Reply

if TYPE_CHECKING:
    from agent.measure import packets
    from agent.measure.trace.engine import Engine
    from agent.measure.trace.matching import Match

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# MDA (Veitch et al., 2009): when one next hop has shown, 6 flows that all
# take it reject a second one at 95% confidence; an MSEE hop has at most two
# (the primary and the secondary link), so 6 flows is also the bound.
MSEE_FLOWS = 6


def in_prefixes(
    address: str, prefixes: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip.version == p.version and ip in p for p in prefixes)


@dataclass(slots=True)
class MseeHop:
    """One target's MSEE hop, asked with up to MSEE_FLOWS flows (templates[i] is flow i)."""

    key: Hashable  # the request's result key
    ttl: int
    templates: tuple[packets.Template, ...]
    asked: dict[int, int] = field(default_factory=dict)  # flow index -> probes sent
    answered: dict[int, Reply] = field(default_factory=dict)  # flow index -> its reply
    outstanding: set[int] = field(default_factory=set)  # flow indexes with a probe out
    given_up: set[int] = field(default_factory=set)  # flows that never answered

    def links(self) -> set[str]:
        """The MSEE addresses (one per link) the flows have shown."""
        return {r.address for r in self.answered.values()}

    def done(self) -> bool:
        """MDA-lite: a second next hop showed, or every flow had its chance."""
        tried = len(self.answered) + len(self.given_up)
        return len(self.links()) >= 2 or tried >= len(self.templates)

    def next_flow(self, probes_per_flow: int) -> int | None:
        """The flow to ask now, or None (done, or every open flow has a probe out)."""
        if self.done():
            return None
        for i in range(len(self.templates)):
            if i in self.answered or i in self.given_up or i in self.outstanding:
                continue
            if self.asked.get(i, 0) < probes_per_flow:
                return i
        return None

    def replies(self) -> list[Reply]:
        return [self.answered[i] for i in sorted(self.answered)]

    def sent(self, flow: int) -> None:
        self.asked[flow] = self.asked.get(flow, 0) + 1
        self.outstanding.add(flow)

    def reply(self, flow: int, reply: Reply) -> None:
        self.outstanding.discard(flow)
        self.answered.setdefault(flow, reply)

    def silent(self, flow: int, probes_per_flow: int) -> None:
        self.outstanding.discard(flow)
        if self.asked.get(flow, 0) >= probes_per_flow and flow not in self.answered:
            self.given_up.add(flow)


class MseeProber:
    """The engine's side of `agent.measure.trace.msee`: finds each target's MSEE hop, sends its flows."""

    def __init__(
        self,
        prefixes: Sequence[Network],
        by_key: dict[Hashable, list[TraceState]],
        extra: Callable[[TraceState, int], packets.Template],
        extra_flows: int,
    ):
        self.prefixes = tuple(prefixes)
        self.by_key = by_key
        self.extra = extra  # (a trace of the target, extra flow number) -> template
        self.extra_flows = extra_flows
        self.hops: dict[Hashable, MseeHop] = {}
        self.prefilled: dict[Hashable, set[int]] = {}
        self.out: dict[int, tuple[MseeHop, int, Out]] = {}

    def plan(self, engine: Engine) -> None:
        """Give every target whose trace met a peering subnet its MSEE hop."""
        first = engine.opts.first_ttl
        for key, states in self.by_key.items():
            if key in self.hops or states[0].template is None:
                continue
            ttl = self._msee_ttl(states, first)
            if ttl is None:
                continue
            own = tuple(s.template for s in states if s.template is not None)
            extra = tuple(self.extra(states[0], i) for i in range(self.extra_flows))
            hop = MseeHop(key, ttl, own + extra)
            self.prefilled[key] = set()
            for i, s in enumerate(states):
                h = s.hops.get(ttl)
                if h is not None and not s.copied(ttl) and h.replies:
                    # This flow was asked at the MSEE hop for this target already.
                    hop.sent(i)
                    hop.reply(i, h.replies[0])
                    self.prefilled[key].add(i)
            self.hops[key] = hop

    def _msee_ttl(self, states: Sequence[TraceState], first: int) -> int | None:
        for s in states:
            end = s.end_ttl() or max(s.hops, default=first)
            for ttl in range(first, end + 1):
                replies = s.resolved(ttl) or ()
                if any(
                    r.kind in ROUTER_KINDS and in_prefixes(r.address, self.prefixes)
                    for r in replies
                ):
                    return ttl
        return None

    def done(self) -> bool:
        return not self.out and all(h.done() for h in self.hops.values())

    def _routers(self, ttl: int) -> frozenset[str]:
        """The MSEE addresses seen at `ttl` so far: the budget a question there draws on."""
        seen = {
            r.address
            for h in self.hops.values()
            if h.ttl == ttl
            for r in h.answered.values()
            if in_prefixes(r.address, self.prefixes)
        }
        return frozenset(seen)

    def send_due(self, engine: Engine, now: float) -> float:
        """Ask the next flows as budgets allow, targets furthest along first; when to look again.

        Under rate limits the MSEE's tokens are few: spent one per target they
        would show every target one link; spent on the targets already begun
        they show some targets both.
        """
        wake = float("inf")
        n = engine.opts.probes_per_hop
        progress = True
        while progress:
            progress = False
            for hop in sorted(self.hops.values(), key=lambda h: -len(h.asked)):
                flow = hop.next_flow(n)
                if flow is None:
                    continue
                routers = self._routers(hop.ttl)
                wait = max(engine.pps.wait_s(now), engine.budget.wait_s(routers, now, credit=True))
                if wait > 0:
                    wake = min(wake, now + wait)
                    continue
                engine.pps.take(now)
                engine.budget.reserve(routers, now)
                hop.sent(flow)
                try:
                    out = engine.emit(hop.templates[flow], -1, hop.ttl, hop.asked[flow], routers)
                except rawsock.SendError:
                    hop.given_up.add(flow)
                    hop.outstanding.discard(flow)
                    continue
                # traceroute -w HERE: a few times the RTT of the answers at this
                # hop (the trace's own or copied one to begin with), so an answer
                # lost on the way (a router's global ICMP limit) costs
                # milliseconds, not wait_max_s.
                known = self.by_key[hop.key][0].resolved(hop.ttl) or []
                rtts = [r.rtt_s for r in (*hop.answered.values(), *known)]
                if rtts:
                    o = engine.opts
                    cap = max(o.wait_min_s, o.wait_here * min(rtts))
                    out.deadline_s = min(out.deadline_s, out.probe.sent_s + cap)
                self.out[out.probe.index] = (hop, flow, out)
                progress = True
                now = engine.now()
        return wake

    def reply(self, engine: Engine, m: Match) -> None:
        hop, flow, out = self.out.pop(m.probe.index)
        hop.reply(flow, m.reply())
        if not m.from_destination:
            engine.budget.answered(m.address, out.reserved, engine.now())

    def expire(self, engine: Engine, now: float) -> None:
        for idx, (hop, flow, out) in list(self.out.items()):
            if out.deadline_s <= now:
                del self.out[idx]
                hop.silent(flow, engine.opts.probes_per_hop)
                engine.budget.silent(out.reserved, now)

    def replies(self, key: Hashable) -> tuple[int, list[Reply]] | None:
        """(MSEE TTL, the replies asked there for this target beyond its own trace's)."""
        hop = self.hops.get(key)
        if hop is None:
            return None
        skip = self.prefilled.get(key, set())
        return hop.ttl, [r for i, r in sorted(hop.answered.items()) if i not in skip]
