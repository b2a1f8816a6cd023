"""What the engine knows of each trace: the hops it asked, their replies, what it copied.

A trace is one (target, flow).  Its hops fill in as replies arrive; below a
Doubletree stop-set hit it stands on another trace's hops (`copy_from`), and
`resolved` answers for both alike.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.measure.trace.matching import SentProbe
from agent.report import Reply

if TYPE_CHECKING:
    from agent.measure import packets

ROUTER_KINDS = frozenset({"time-exceeded", "unreachable"})


@dataclass(slots=True)
class Out:
    probe: SentProbe
    deadline_s: float
    reserved: frozenset[str]
    unknown: frozenset[str] = frozenset()  # the TTL bucket it drew on, if no router was predicted
    cost: float = 1.0  # tokens reserved per router (2: a router that may say unreachable)
    # reserved routers only guessed from the distance, asked within their
    # modelled tokens: a silence says nothing of them (see Engine._expire)
    guessed: frozenset[str] = frozenset()


@dataclass(slots=True)
class HopState:
    ttl: int
    replies: list[Reply] = field(default_factory=list)
    sent: int = 0
    outstanding: dict[int, Out] = field(default_factory=dict)
    settled: bool = False
    paced: bool | None = None  # decided when first sent
    predicted: frozenset[str] = frozenset()
    guessed: frozenset[str] = frozenset()  # the predicted routers only guessed (see _predict)
    dest: bool = False  # the destination answered at this TTL
    routers: set[str] = field(default_factory=set)  # intermediate routers that answered
    blocked: bool = False  # an intermediate router answered "unreachable"
    retried: bool = False  # silent once, asked again against a known router's budget
    # the first silent TTL past the last router, asked again after that
    # router's rest (see Engine._rest); its questions cost `cost` tokens
    rested: bool = False
    cost: float = 1.0
    last_sent_s: float = 0.0  # when its latest probe went out


def routers_of(replies: Iterable[Reply], destination: str) -> set[str]:
    return {r.address for r in replies if r.kind in ROUTER_KINDS and r.address != destination}


class TraceState:
    def __init__(
        self,
        number: int,
        key: Hashable,
        flow: int,
        template: packets.Template | None,
        rr_template: packets.Template | None = None,
    ):
        self.number = number
        self.rr_template = rr_template
        # Record Route: of the distance probe's answer, or for a trace whose
        # destination never answers, the longest one a time-exceeded quoted.
        self.rr: tuple[str, ...] = ()
        self.rank = number
        self.key = key
        self.flow = flow
        self.template = template
        self.address = template.destination if template else ""
        # IPv4 and IPv6 paths share no router address and no ICMP budget:
        # Doubletree and predictions only ever compare traces of one family.
        self.family = template.version if template else 4
        self.hops: dict[int, HopState] = {}
        self.est: int | None = None
        self.est_done = False
        # The distance probe met a router saying unreachable: the path ends
        # there, at about this TTL (from its answer's TTL); nothing past it.
        self.blocker: str | None = None
        self.blocker_ttl: int | None = None
        self.head = False
        self.copy_from: tuple[TraceState, int] | None = None
        self.backward_done = False
        self.forward_done = False
        self.finished = False
        self.failure: str | None = None
        self.finished_s: float | None = None

    @property
    def group(self) -> tuple[int, int]:
        """(family, flow): the traces that may share hops with each other."""
        return self.family, self.flow

    # -- what is known

    def dest_ttl(self) -> int | None:
        return min((t for t, h in self.hops.items() if h.dest), default=None)

    def end_ttl(self) -> int | None:
        """Where the trace ends: the destination, or a router saying unreachable."""
        ends = [t for t, h in self.hops.items() if h.dest or h.blocked]
        return min(ends, default=None)

    def resolved(self, ttl: int) -> list[Reply] | None:
        """Replies at `ttl`, asked or copied; None while unknown."""
        if self.copy_from is not None and ttl < self.copy_from[1]:
            return self.copy_from[0].resolved(ttl)
        h = self.hops.get(ttl)
        if h is None or not (h.settled or h.replies):
            return None
        return h.replies

    def copied(self, ttl: int) -> bool:
        """Whether the hop at `ttl` is another trace's answer rather than our own."""
        return self.copy_from is not None and ttl < self.copy_from[1]

    def covers_below(self, ttl: int, first_ttl: int) -> bool:
        """Whether every hop below `ttl` is known (asked and settled, or copied)."""
        return all(self.resolved(x) is not None for x in range(first_ttl, ttl))
