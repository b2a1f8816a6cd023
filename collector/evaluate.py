"""Periodic evaluation: silent agents, flip-alert hold times, asymmetry.

`evaluate` runs as one writer job: it reads current state, calls the pure
functions in `collector.state`, and writes the events and alert changes in the
same transaction.  Staleness is judged by the collector's receive time.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from agent.report import Circuit, InternetEdge, SiteFacts
from collector import alertrules, journal
from collector.alertrules import Links
from collector.state import (
    REVERSE_ROLE,
    Asymmetry,
    PathKey,
    SitePath,
    group_asymmetries,
    measured_asymmetries,
)


@dataclass(frozen=True, slots=True)
class EvalSettings:
    silent_after_intervals: float
    default_interval_s: float
    flip_hold_s: float
    links: Links


@dataclass(slots=True)
class EvalOutcome:
    silent: int = 0
    expired: int = 0
    asymmetries: int = 0
    alerts_changed: bool = False
    events: int = 0


def site_facts(doc: dict[str, Any]) -> SiteFacts:
    return SiteFacts(
        circuits=tuple(
            Circuit(
                c["name"],
                c.get("location", ""),
                c.get("sku", "standard"),
                c.get("primary_subnet", ""),
                c.get("secondary_subnet", ""),
                tuple(c.get("ce_addresses", ())),
                tuple(c.get("advertised_prefixes", ())),
                c.get("links", "active-active"),
            )
            for c in doc.get("circuits", ())
        ),
        internet_edges=tuple(
            InternetEdge(
                e["name"], tuple(e.get("nat_addresses", ())), tuple(e.get("hop_addresses", ()))
            )
            for e in doc.get("internet_edges", ())
        ),
        prefer=tuple(doc.get("prefer", ())),
    )


def _site_path(row: tuple[Any, ...]) -> SitePath:
    agent, site, target, cls, circuit, egress, address, evidence = row
    return SitePath(
        agent,
        site,
        target,
        PathKey(cls, circuit, egress),
        address,
        tuple(json.loads(evidence)),
    )


_PATH_SELECT = (
    "SELECT a.id, a.site, p.target, p.class, p.circuit, p.egress, p.address, p.evidence"
    " FROM paths p JOIN agents a ON a.ref = p.agent_ref"
)


def current_asymmetries(conn: sqlite3.Connection) -> list[Asymmetry]:
    """Reported (agent findings) plus measured (reverse paths paired with forward ones)."""
    found = [
        Asymmetry(site, circuit, "reported", agent, target, tuple(json.loads(evidence)), severity)
        for agent, site, circuit, target, evidence, severity in conn.execute(
            "SELECT a.id, r.site, r.circuit, r.target, r.evidence, r.severity"
            " FROM reported_asymmetries r JOIN agents a ON a.ref = r.agent_ref"
        )
    ]
    reverse = [
        _site_path(r) for r in conn.execute(_PATH_SELECT + " WHERE p.role = ?", (REVERSE_ROLE,))
    ]
    if reverse:
        facts = {
            name: site_facts(json.loads(doc))
            for name, doc in conn.execute("SELECT name, facts FROM sites")
        }
        forward: dict[str, list[SitePath]] = {}
        for site in facts:
            forward[site] = [
                _site_path(r)
                for r in conn.execute(
                    _PATH_SELECT + " WHERE a.site = ? AND p.role != ?", (site, REVERSE_ROLE)
                )
            ]
        found.extend(measured_asymmetries(facts, reverse, forward))
    return found


def _silence(conn: sqlite3.Connection, now_s: float, s: EvalSettings, out: EvalOutcome) -> None:
    for ref, agent, site, interval_s, last_seen_s in conn.execute(
        "SELECT ref, id, site, interval_s, last_seen_s FROM agents WHERE silent = 0"
    ).fetchall():
        limit = s.silent_after_intervals * (interval_s or s.default_interval_s)
        if now_s - last_seen_s > limit:
            conn.execute("UPDATE agents SET silent = 1 WHERE ref = ?", (ref,))
            journal.add_event(
                conn,
                now_s,
                "agent_silent",
                "warning",
                f"{agent}: no report for {now_s - last_seen_s:.0f} s "
                f"({s.silent_after_intervals:g} intervals of {interval_s or s.default_interval_s:g} s)",
                site=site,
                agent=agent,
            )
            out.silent += 1
            out.events += 1


def _expire_flips(
    conn: sqlite3.Connection, now_s: float, s: EvalSettings, out: EvalOutcome
) -> None:
    for fp, agent, target in conn.execute(
        "SELECT fingerprint, agent, target FROM alerts"
        " WHERE alertname = ? AND ends_s IS NULL AND starts_s <= ?",
        (alertrules.ROUTE_FLIP, now_s - s.flip_hold_s),
    ).fetchall():
        if journal.resolve(conn, fp, now_s):
            # The chain ends with its alert: the next flip starts a new story.
            conn.execute(
                "UPDATE paths SET flip_origin = NULL WHERE target = ?"
                " AND agent_ref = (SELECT ref FROM agents WHERE id = ?)",
                (target, agent),
            )
            out.expired += 1
            out.alerts_changed = True


def _asymmetry(conn: sqlite3.Connection, now_s: float, s: EvalSettings, out: EvalOutcome) -> None:
    groups = group_asymmetries(current_asymmetries(conn))
    by_kind: dict[tuple[str, str, str], list[Asymmetry]] = {}
    for (site, circuit), members in groups.items():
        for m in members:
            by_kind.setdefault((site, circuit, m.kind), []).append(m)
    active = {
        (site, circuit, kind): (since_s, members)
        for site, circuit, kind, since_s, members in conn.execute(
            "SELECT site, circuit, kind, since_s, members FROM asymmetries WHERE active = 1"
        )
    }
    for key, members in by_kind.items():
        site, circuit, kind = key
        names = json.dumps(sorted({f"{m.agent}->{m.target}" for m in members}))
        evidence = [line for m in members for line in m.evidence]
        if key not in active:
            conn.execute(
                "INSERT OR REPLACE INTO asymmetries(site, circuit, kind, active, since_s, updated_s,"
                " members, evidence) VALUES (?,?,?,1,?,?,?,?)",
                (site, circuit, kind, now_s, now_s, names, json.dumps(evidence)),
            )
            journal.add_event(
                conn,
                now_s,
                "asymmetry",
                "critical" if any(m.severity == "critical" for m in members) else "warning",
                f"asymmetric routing at {site} (circuit {circuit}, {kind}): "
                + ", ".join(json.loads(names)[:10]),
                site=site,
                circuit=circuit,
                evidence=evidence,
                agent=members[0].agent if len(members) == 1 else None,
                target=members[0].target if len(members) == 1 else None,
            )
            out.events += 1
        elif active[key][1] != names:
            conn.execute(
                "UPDATE asymmetries SET members=?, evidence=?, updated_s=? WHERE site=? AND circuit=? AND kind=?",
                (names, json.dumps(evidence), now_s, site, circuit, kind),
            )
    for key in active.keys() - by_kind.keys():
        site, circuit, kind = key
        conn.execute(
            "UPDATE asymmetries SET active=0, updated_s=? WHERE site=? AND circuit=? AND kind=?",
            (now_s, site, circuit, kind),
        )
        journal.add_event(
            conn,
            now_s,
            "asymmetry_cleared",
            "info",
            f"asymmetric routing at {site} (circuit {circuit}, {kind}) cleared",
            site=site,
            circuit=circuit,
        )
        out.events += 1

    wanted = {}
    for (site, circuit), members in groups.items():
        spec = alertrules.path_asymmetric(site, circuit, members, s.links)
        wanted[spec.fingerprint] = spec
        out.alerts_changed |= journal.fire(conn, spec, now_s)
    for fp, _ in journal.firing(conn, alertrules.PATH_ASYMMETRIC):
        if fp not in wanted:
            out.alerts_changed |= journal.resolve(conn, fp, now_s)
    out.asymmetries = len(groups)


def evaluate(conn: sqlite3.Connection, now_s: float, s: EvalSettings) -> EvalOutcome:
    out = EvalOutcome()
    _silence(conn, now_s, s, out)
    _expire_flips(conn, now_s, s, out)
    _asymmetry(conn, now_s, s, out)
    return out
