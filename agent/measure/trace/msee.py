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

This module decides which flow to ask next and when a target is done; the
engine sends the probes against the MSEE routers' ICMP budget.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.report import Reply

if TYPE_CHECKING:
    from agent.measure import packets

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
