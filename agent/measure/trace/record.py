"""The engine's state turned into report records: one Trace per target, its flows merged."""

from __future__ import annotations

from collections.abc import Sequence

from agent.measure.trace.state import TraceState
from agent.report import Hop, Reply, Trace


def trace_record(
    states: Sequence[TraceState],
    protocol: str,
    t0: float,
    now: float,
    first_ttl: int,
    msee: tuple[int, list[Reply]] | None,
) -> Trace:
    """One Trace for a request: its flows merged hop by hop.

    At a TTL where some flow asked and another copied, only the asked replies
    stay: a hop that is not `shared` holds nothing but answers to this target.
    """
    asked: dict[int, list[Reply]] = {}
    copied: dict[int, list[Reply]] = {}
    reached = False
    failure = None
    finished = []
    for s in states:
        end = s.end_ttl()
        known = [x for x in range(first_ttl, (end or max(s.hops, default=0)) + 1) if s.resolved(x)]
        last = end if end is not None else max(known, default=first_ttl - 1)
        for ttl in range(first_ttl, last + 1):
            into = copied if s.copied(ttl) else asked
            into.setdefault(ttl, []).extend(s.resolved(ttl) or ())
        reached = reached or s.dest_ttl() is not None
        failure = failure or s.failure
        finished.append((s.finished_s or now) - t0)
    if msee is not None and msee[1]:
        ttl, replies = msee
        asked.setdefault(ttl, []).extend(replies)
    hops = tuple(
        Hop(ttl=ttl, replies=tuple(asked[ttl]))
        if ttl in asked
        else Hop(ttl=ttl, replies=tuple(copied[ttl]), shared=True)
        for ttl in sorted(asked.keys() | copied.keys())
    )
    if reached:
        failure = None
    elif failure is None:
        failure = "trace.unreachable"
    flow = states[0].flow if states else 0
    family = states[0].family if states else None
    return Trace(
        protocol=protocol,
        flow=flow,
        family=None if family is None else "ipv6" if family == 6 else "ipv4",
        reached=reached,
        hops=hops,
        duration_s=max(max(finished, default=0.0), 0.0),
        failure=failure,
    )
