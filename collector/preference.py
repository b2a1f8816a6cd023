"""The expected path of a target from the site's failover order.

A site (or one target) lists its paths in order of preference, e.g.
`prefer = ["ams-1", "dub-2", "internet"]`.  The expected path is the first
entry that is *available*: a circuit whose MSEE peering addresses answered
the agent's direct probe this cycle, or that another agent of the site is on
now, or that this agent's own paths use; `internet` always is.  Precedence: a target's own class expectation
(`expect`, carried by the verdict) when it is not ExpressRoute, then the
order, then the internet.

`expect` is pure; `available_circuits` reads the other agents' paths.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from agent.report import MseeProbe
from collector.state import PathKey

INTERNET = "internet"


@dataclass(frozen=True, slots=True)
class Expectation:
    """The expected path, whether the current one matches, and why."""

    expected: str  # a path label: expressroute/ams-1, internet
    matches: bool | None  # None when the current path is unknown
    evidence: tuple[str, ...]


def available_circuits(
    probes: Sequence[MseeProbe],
    others_on: Mapping[str, Sequence[str]],
    own: Iterable[str] = (),
) -> dict[str, str]:
    """Circuit -> why it is available: its MSEE answered, other agents or this one are on it."""
    out: dict[str, str] = {}
    for p in probes:
        if p.answered and p.circuit not in out:
            answered = sorted(
                (q.link, q.address) for q in probes if q.circuit == p.circuit and q.answered
            )
            out[p.circuit] = (
                "its links answer ("
                + ", ".join(f"{link} MSEE {address}" for link, address in answered)
                + ")"
            )
    for circuit, agents in others_on.items():
        if circuit not in out and agents:
            names = ", ".join(sorted(agents)[:3]) + (" …" if len(agents) > 3 else "")
            many = len(agents) > 1
            out[circuit] = (
                f"agent{'s' if many else ''} {names} of the site {'are' if many else 'is'} on it"
            )
    for circuit in own:
        out.setdefault(circuit, "this agent's paths use it")
    return out


def expect(
    current: PathKey,
    verdict_expected: str | None,
    prefer: Sequence[str],
    available: Mapping[str, str],
) -> Expectation | None:
    """The expectation from the failover order, or None when the order does not apply."""
    if not prefer or verdict_expected in ("internet", "cdn"):
        return None  # no order, or the target's own expectation is off ExpressRoute
    order = " > ".join(prefer)
    skipped: list[str] = []
    chosen, why = INTERNET, "no circuit of the order is available"
    for entry in prefer:
        if entry == INTERNET:
            chosen, why = INTERNET, "it comes next in the order"
            break
        if entry in available:
            chosen, why = entry, available[entry]
            break
        skipped.append(entry)
    expected = INTERNET if chosen == INTERNET else PathKey("expressroute", chosen).label
    unavailable = [
        f"{c} is preferred but not available (no MSEE answered, no agent of the site on it)"
        for c in skipped
    ]
    if current.path_class == "unknown" or (
        current.path_class == "expressroute" and current.circuit is None
    ):
        matches = None
    elif chosen == INTERNET:
        matches = current.path_class in ("internet", "cdn")
    else:
        matches = current.path_class == "expressroute" and current.circuit == chosen
    here = current.circuit if current.path_class == "expressroute" else current.path_class
    if matches is False:
        head = (
            f"on {here} while {chosen} is preferred and {why}"
            if chosen != INTERNET
            else f"on {here} while the order leads to the internet ({why})"
        )
    else:
        head = f"on {here}, expected {expected}: {why}"
    return Expectation(expected, matches, (head, *unavailable, f"failover order: {order}"))


def others_on_circuits(conn: sqlite3.Connection, site: str, agent_ref: int) -> dict[str, list[str]]:
    """Circuit -> agents of the site (other than this one, not silent) with a path on it now."""
    out: dict[str, list[str]] = {}
    for circuit, agent in conn.execute(
        "SELECT DISTINCT p.circuit, a.id FROM paths p JOIN agents a ON a.ref = p.agent_ref"
        " WHERE a.site = ? AND a.ref != ? AND a.silent = 0 AND p.class = 'expressroute'"
        " AND p.circuit IS NOT NULL",
        (site, agent_ref),
    ):
        out.setdefault(circuit, []).append(agent)
    return out
