"""Route filters that keep a destination off ExpressRoute: one alert per site, circuit and community.

An agent that knows its circuits' route filters and Microsoft peering's
communities reports `route-filter-excludes` when a destination is in a
community a circuit's filter does not allow, so Microsoft does not advertise
it there.  As a warning (no other circuit of the site advertises it) the
destination goes over the internet: that is what `ErpathRouteFilterExcludes`
says, once per (site, circuit, community) however many agents and targets
see it; the fix is one change of the filter.  An info finding (another
circuit carries it; it matters on failover) raises nothing.

It fires on the first report that has the finding and resolves when none of
the site's agents' latest reports has it any more (the community was added,
or the target is no longer measured), with a `route_filter_excludes` and a
`route_filter_cleared` event, as the other alerts have.  `excluded` is pure;
`observe` runs inside the ingest transaction, after the report became the
agent's latest.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent.report import Report
from collector import alertrules, journal
from collector.alertrules import Links

FINDING = "route-filter-excludes"


@dataclass(frozen=True, slots=True)
class Exclusion:
    """One community a circuit's filter leaves out, as one report saw it."""

    circuit: str
    community: str
    service: str | None
    region: str | None
    route_filter: str | None
    targets: tuple[str, ...]  # the targets it sent to the internet, in report order
    evidence: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.circuit, self.community)


def _filter_evidence(evidence: Iterable[Any]) -> Any | None:
    return next((e for e in evidence if _get(e, "kind") == "route-filter"), None)


def _get(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def excluded(report: Report | dict, agent: str) -> dict[tuple[str, str], Exclusion]:
    """The (circuit, community) pairs whose exclusion sends a target of `report` to the internet.

    Reads a Report or its JSON document (the site's other agents' latest
    reports are stored as JSON)."""
    out: dict[tuple[str, str], Exclusion] = {}
    for r in _get(report, "results") or ():
        target = _get(r, "target")
        for f in _get(r, "findings") or ():
            if _get(f, "kind") != FINDING or _get(f, "severity") != "warning":
                continue
            rf = _filter_evidence(_get(f, "evidence") or ())
            circuit = _get(f, "circuit") or (_get(rf, "circuit") if rf is not None else None)
            community = _get(rf, "community") if rf is not None else None
            if not circuit or not community:
                continue
            lines = [f"{agent} -> {target}: {FINDING} ({_get(f, 'severity')})"]
            lines += [f"  {_get(e, 'text')}" for e in _get(f, "evidence") or ()]
            if _get(f, "fix"):
                lines.append(f"  fix: {_get(f, 'fix')}")
            before = out.get((circuit, community))
            if before is not None:
                out[before.key] = Exclusion(
                    circuit,
                    community,
                    before.service,
                    before.region,
                    before.route_filter,
                    (*before.targets, target),
                    (*before.evidence, *lines),
                )
                continue
            out[(circuit, community)] = Exclusion(
                circuit,
                community,
                _get(rf, "service"),
                _get(rf, "region"),
                _route_filter_name(_get(report, "site"), circuit),
                (target,),
                tuple(lines),
            )
    return out


def _circuit(site: Any, name: str) -> Any | None:
    return next((c for c in _get(site, "circuits") or () if _get(c, "name") == name), None)


def _route_filter_name(site: Any, circuit: str) -> str | None:
    c = _circuit(site, circuit)
    return None if c is None else _get(c, "route_filter")


def _site_keys(conn: sqlite3.Connection, site: str) -> set[tuple[str, str]]:
    """The (circuit, community) pairs any of the site's agents' latest reports still has."""
    keys: set[tuple[str, str]] = set()
    for agent, body in conn.execute(
        "SELECT a.id, l.body FROM latest_results l JOIN agents a ON a.ref = l.agent_ref"
        " WHERE a.site = ?",
        (site,),
    ):
        try:
            doc = json.loads(zlib.decompress(body))
        except (zlib.error, ValueError):
            continue  # stored by this collector; a broken row says nothing
        keys |= excluded(doc, agent).keys()
    return keys


def observe(
    conn: sqlite3.Connection,
    site: str,
    agent: str,
    report: Report,
    received_s: float,
    links: Links,
) -> bool:
    """Fold one report into its site's route filter alerts; True when an alert changed."""
    mine = excluded(report, agent)
    firing = {
        (labels.get("circuit", ""), labels.get("community", "")): fp
        for fp, labels in journal.firing(conn, alertrules.ROUTE_FILTER_EXCLUDES, site=site)
    }
    changed = False
    for key, x in mine.items():
        if key in firing:
            continue
        spec = alertrules.route_filter_excludes(
            site, x.circuit, x.community, x.service, x.region, x.route_filter, x.evidence, links
        )
        changed |= journal.fire(conn, spec, received_s)
        journal.add_event(
            conn,
            received_s,
            "route_filter_excludes",
            "warning",
            spec.annotations["summary"],
            site=site,
            agent=agent,
            target=x.targets[0] if len(x.targets) == 1 else None,
            circuit=x.circuit,
            after={
                "route_filter": x.route_filter,
                "community": x.community,
                "service": x.service,
                "region": x.region,
                "targets": list(x.targets),
            },
            evidence=x.evidence,
        )
    gone = [key for key in firing if key not in mine]
    if gone:
        still = _site_keys(conn, site)
        for key in gone:
            if key not in still and journal.resolve(conn, firing[key], received_s):
                changed = True
                _record_cleared(conn, site, agent, report, key, received_s)
    return changed


def _record_cleared(
    conn: sqlite3.Connection,
    site: str,
    agent: str,
    report: Report,
    key: tuple[str, str],
    received_s: float,
) -> None:
    """The `route_filter_cleared` event; its summary says whether the filter now allows
    the community (the reporting agent's site facts list it) or the exclusion went otherwise."""
    circuit, community = key
    c = _circuit(report.site, circuit)
    route_filter = None if c is None else c.route_filter
    allows = c is not None and community in c.route_filter_communities
    rf = f"route filter {route_filter}" if route_filter else "the route filter"
    if allows:
        summary = f"{rf} of circuit {circuit} at {site} now allows community {community}"
        why = f"{agent}'s site facts list {community} in {rf} of circuit {circuit}"
    else:
        summary = (
            f"no agent of {site} reports {rf} of circuit {circuit} leaving out community "
            f"{community} any more"
        )
        why = (
            f"{agent}'s site facts do not list {community} in {rf}: the exclusion's targets "
            "are no longer measured, another circuit carries them, or the filter is unknown"
        )
    journal.add_event(
        conn,
        received_s,
        "route_filter_cleared",
        "info",
        summary,
        site=site,
        agent=agent,
        circuit=circuit,
        before={"route_filter": route_filter, "community": community},
        evidence=[
            why,
            f"no latest report of {site}'s agents has a route-filter-excludes warning for "
            f"{community} on circuit {circuit}",
        ],
    )
