"""Which links of a circuit a target's flows crossed, and why a link or circuit stayed unknown.

Both links of a circuit usually carry traffic at once, load-shared per flow,
so the link is a property of the circuit's state, not of one path: the
trace engine sends several flows (Paris flow ids) through the MSEE hop and
each reply keeps its flow.  A link counts the distinct flows whose reply
came from inside its peering /30.  Hops marked `shared` were copied from
another target's trace and count for nothing here: they were not asked for
this target.

A hop that did not answer (a silent or rate-limited MSEE, a CE that drops
time-exceeded) leaves the link unknown; that is said, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.report import Evidence, LinkSeen, Result, Trace
from agent.verdict import evidence as ev
from agent.verdict.siteindex import SiteIndex

_ORDER = {"primary": 0, "secondary": 1}


@dataclass(frozen=True, slots=True)
class LinksSeen:
    links: tuple[LinkSeen, ...]
    msee_flows: int  # distinct flows answered at the TTLs where the circuit's /30 showed


def _flow(trace: Trace, flow: int | None) -> int:
    # An engine that does not fill Reply.flow sent one Paris flow: the trace's.
    return trace.flow if flow is None else flow


def links_seen(result: Result, index: SiteIndex, circuit: str | None) -> LinksSeen:
    trace = result.trace
    if trace is None or circuit is None:
        return LinksSeen((), 0)
    per_link: dict[str, set[int]] = {}
    ttls: set[int] = set()
    for hop in trace.hops:
        if hop.shared:
            continue
        for reply in hop.replies:
            hit = index.circuit_address(reply.address)
            # Only a peering subnet's address names a link (and so one circuit).
            if hit is None or hit.link is None or hit.circuits[0].name != circuit:
                continue
            per_link.setdefault(hit.link, set()).add(_flow(trace, reply.flow))
            ttls.add(hop.ttl)
    asked = {
        _flow(trace, r.flow)
        for h in trace.hops
        if h.ttl in ttls and not h.shared
        for r in h.replies
    }
    links = tuple(
        LinkSeen(link, len(flows))
        for link, flows in sorted(per_link.items(), key=lambda x: _ORDER[x[0]])
    )
    return LinksSeen(links, len(asked))


def _silent_hops(result: Result) -> list[int]:
    """TTLs that did not answer before the last hop that did: where an MSEE or CE hid."""
    trace = result.trace
    if trace is None:
        return []
    last = trace.hop_count
    return sorted(h.ttl for h in trace.hops if not h.replies and h.ttl < last)


def _silence(result: Result) -> str:
    trace = result.trace
    if trace is None:
        return "no trace"
    if trace.failure:
        return f"the trace failed ({trace.failure})"
    silent = _silent_hops(result)
    if silent:
        which = ", ".join(map(str, silent))
        noun = "hop" if len(silent) == 1 else "hops"
        return (
            f"{noun} {which} did not answer (a silent or rate-limited MSEE, "
            "or a CE that drops time-exceeded)"
        )
    if all(h.shared for h in trace.hops if h.replies):
        return "its hops were copied from another target's trace"
    return "no reply came from inside a peering subnet"


def unknown_link(result: Result, circuit: str, named_by: str) -> Evidence:
    return ev.unknown(
        "link",
        f"the link of circuit {circuit} is unknown this time: {_silence(result)}; "
        f"{named_by} names the circuit, not the link",
        circuit=circuit,
    )


def unknown_circuit(
    result: Result, shared_by: str | None = None, split: tuple[str, ...] = ()
) -> Evidence:
    """Why no circuit is named.

    `shared_by`: what reached the ER edge yet names no one circuit (a CE
    several circuits share).  `split`: the circuits the trace's other flows
    crossed (load-shared) while its own flow was not seen at any.
    """
    if split:
        why = (
            "the trace's own flow was seen at no circuit and its other flows crossed circuits "
            f"{' and '.join(split)} (flows load-shared across circuits)"
        )
    elif shared_by is not None:
        why = f"{shared_by} and no hop answered in a peering subnet ({_silence(result)})"
    else:
        why = (
            "no hop answered at a circuit's CE or peering subnet and the route names none "
            f"({_silence(result)})"
        )
    return ev.unknown("circuit", f"the circuit is unknown this time: {why}")
