"""Read-side queries: what the API, the metrics and the alert sender see.

Functions of a read connection, run by `Store.read` off the event loop.
Times go out as RFC 3339 UTC strings next to their Unix seconds.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collector import dialect
from collector.dialect import Connection
from collector.ingest import (
    PATH_COLUMNS,
    decode,
    report_id_of,
    site_facts_conflict,
    state_from_row,
)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _where(filters: dict[str, Any], columns: dict[str, str]) -> tuple[str, list[Any]]:
    clauses, args = [], []
    for key, col in columns.items():
        if filters.get(key) is not None:
            clauses.append(f"{col} = ?")
            args.append(filters[key])
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _after(where: str, args: list[Any], clause: str, after: tuple[Any, ...] | None) -> str:
    """Keyset pagination: only rows past the cursor (the previous page's last key)."""
    if after is None:
        return where
    args.extend(after)
    return (where + " AND " if where else " WHERE ") + clause


def _route_filters(conn: Connection, agent_ref: int) -> list[dict[str, Any]]:
    row = conn.execute(
        "SELECT facts FROM agent_site_facts WHERE agent_ref=?", (agent_ref,)
    ).fetchone()
    if row is None:
        return []
    return [
        {
            "name": c.get("name"),
            "route_filter": c.get("route_filter"),
            "route_filter_communities": list(c.get("route_filter_communities", ())),
        }
        for c in json.loads(row[0]).get("circuits", ())
    ]


def agents(
    conn: Connection,
    filters: dict[str, Any],
    limit: int = -1,
    after: tuple[Any, ...] | None = None,
) -> list[dict[str, Any]]:
    """Agents by id; `limit` rows (-1: all) after the agent id in `after`."""
    now_s = time.time()
    where, args = _where(filters, {"site": "site", "agent": "id", "role": "role"})
    where = _after(where, args, "id > ?", after)
    out = []
    for (
        agent_id,
        site,
        role,
        version,
        hostname,
        interval_s,
        last_seq,
        first_seen_s,
        last_seen_s,
        silent,
        cycle_s,
        spool,
        dropped,
        ref,
        refused,
        tags_change,
        tags_installed_s,
    ) in conn.execute(
        "SELECT id, site, role, version, hostname, interval_s, last_seq, first_seen_s, last_seen_s,"
        " silent, cycle_s, spool_reports, dropped_reports_total, ref, targets_refused,"
        " service_tags_change_number, service_tags_installed_s FROM agents"
        + where
        + " ORDER BY id LIMIT ?",
        [*args, dialect.limit(conn, limit)],
    ):
        out.append(
            {
                "agent": agent_id,
                "site": site,
                "role": role,
                "version": version,
                "hostname": hostname,
                "interval_s": interval_s,
                "last_seq": last_seq,
                "first_seen": iso(first_seen_s),
                "last_seen": iso(last_seen_s),
                "last_seen_s": last_seen_s,
                "silent": bool(silent),
                # Agents of the site whose site facts differ from this one's (issue 14).
                "site_facts_conflict": site_facts_conflict(conn, ref, site),
                "targets_refused": refused,
                # What the agent runs with (issue 16): its circuits' route filters, its tags.
                "circuits": _route_filters(conn, ref),
                "service_tags": {
                    "change_number": tags_change,
                    "installed": iso(tags_installed_s),
                    "age_s": None
                    if tags_installed_s is None
                    else round(max(0.0, now_s - tags_installed_s), 3),
                },
                "health": {
                    "cycle_s": cycle_s,
                    "spool_reports": spool,
                    "dropped_reports_total": dropped,
                },
            }
        )
    return out


def paths(
    conn: Connection,
    filters: dict[str, Any],
    limit: int = -1,
    after: tuple[Any, ...] | None = None,
) -> list[dict[str, Any]]:
    """Paths by agent, target and family, filtered by site, agent, target and family (an int);
    `limit` rows (-1: all) after (agent, target, family) in `after` (the family as a string,
    "4" or "6", as the cursor carries it)."""
    where, args = _where(
        filters,
        {"site": "a.site", "agent": "a.id", "target": "p.target", "family": "p.family"},
    )
    if after is not None:
        after = (after[0], after[1], int(after[2]))
    where = _after(where, args, "(a.id, p.target, p.family) > (?, ?, ?)", after)
    cols = ", ".join(f"p.{c.strip()}" for c in PATH_COLUMNS.split(","))
    out = []
    for row in conn.execute(
        f"SELECT a.id, a.site, {cols} FROM paths p JOIN agents a ON a.ref = p.agent_ref"
        + where
        + " ORDER BY a.id, p.target, p.family LIMIT ?",
        [*args, dialect.limit(conn, limit)],
    ):
        s = state_from_row(row[2:])
        out.append(
            {
                "agent": row[0],
                "site": row[1],
                "target": s.target,
                "family": s.family,
                "role": s.role,
                "path": s.key.label,
                "verdict": {
                    **s.key.as_dict(),
                    "link": s.link,
                    "evidence": list(s.evidence),
                    "expected": s.expected,
                    "matches_expected": s.matches_expected,
                },
                "address": s.address,
                "signature": s.signature,
                "since": iso(s.since_s),
                "since_s": s.since_s,
                "last_seq": s.last_seq,
                "last_report": iso(s.last_received_s),
                "connect_s": s.connect_s,
                "dns_s": s.dns_s,
                "hops": s.hops,
                "tcp_state": s.tcp_state,
                "flips_total": s.flips_total,
                "flip_origin": s.flip_origin.label if s.flip_origin else None,
                "pending": None
                if s.candidate is None
                else {
                    "path": s.candidate.key.label,
                    **s.candidate.key.as_dict(),
                    "reports": s.candidate.count,
                    "since": iso(s.candidate.first_received_s),
                },
            }
        )
    return out


def events(conn: Connection, filters: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    where, args = _where(
        filters, {"site": "site", "agent": "agent", "target": "target", "kind": "kind"}
    )
    extra = []
    if filters.get("since_s") is not None:
        extra.append("at_s >= ?")
        args.append(filters["since_s"])
    if filters.get("until_s") is not None:
        extra.append("at_s < ?")
        args.append(filters["until_s"])
    if extra:
        where = (where + " AND " if where else " WHERE ") + " AND ".join(extra)
    out = []
    for (
        eid,
        at_s,
        kind,
        severity,
        site,
        agent,
        target,
        circuit,
        driver,
        summary,
        before,
        after,
        evidence,
    ) in conn.execute(
        "SELECT id, at_s, kind, severity, site, agent, target, circuit, driver, summary, before, after,"
        " evidence FROM events" + where + " ORDER BY at_s DESC, id DESC LIMIT ?",
        [*args, dialect.limit(conn, limit)],
    ):
        out.append(
            {
                "id": eid,
                "at": iso(at_s),
                "at_s": at_s,
                "kind": kind,
                "severity": severity,
                "site": site,
                "agent": agent,
                "target": target,
                "circuit": circuit,
                "driver": driver,
                "summary": summary,
                "before": json.loads(before) if before else None,
                "after": json.loads(after) if after else None,
                "evidence": json.loads(evidence),
            }
        )
    return out


def alerts(
    conn: Connection,
    now_s: float,
    recent_s: float,
    state: str | None,
    limit: int = -1,
    after: tuple[Any, ...] | None = None,
) -> list[dict[str, Any]]:
    """Alerts, newest first; `limit` rows (-1: all) after the fingerprint in `after`."""
    sql = (
        "SELECT fingerprint, alertname, labels, annotations, starts_s, ends_s, version, updated_s"
        " FROM alerts WHERE (ends_s IS NULL OR ends_s >= ?)"
    )
    args: list[Any] = [now_s - recent_s]
    if state == "firing":
        sql += " AND ends_s IS NULL"
    elif state == "resolved":
        sql += " AND ends_s IS NOT NULL"
    if after is not None:
        # Past the previous page's last alert; one that was pruned meanwhile ends the list.
        sql += (
            " AND (starts_s, fingerprint) <"
            " (SELECT starts_s, fingerprint FROM alerts WHERE fingerprint = ?)"
        )
        args.extend(after)
    out = []
    for fp, name, labels, notes, starts_s, ends_s, version, updated_s in conn.execute(
        sql + " ORDER BY starts_s DESC, fingerprint DESC LIMIT ?",
        [*args, dialect.limit(conn, limit)],
    ):
        out.append(
            {
                "fingerprint": fp,
                "alertname": name,
                "state": "firing" if ends_s is None else "resolved",
                "labels": json.loads(labels),
                "annotations": json.loads(notes),
                "starts_at": iso(starts_s),
                "ends_at": iso(ends_s),
                "version": version,
                "updated_at": iso(updated_s),
            }
        )
    return out


def observations(conn: Connection, agent: str, limit: int = 100) -> list[dict[str, Any]]:
    """An agent's stored observation rows, newest first (history, decoded)."""
    out = []
    for seq, report_id, received_s, layout, times in conn.execute(
        "SELECT o.seq, o.report_id, o.received_s, l.body, o.times FROM observations o"
        " JOIN agents a ON a.ref = o.agent_ref JOIN layouts l ON l.ref = o.layout_ref"
        " WHERE a.id = ? ORDER BY o.seq DESC LIMIT ?",
        (agent, dialect.limit(conn, limit)),
    ):
        out.append(
            {
                "seq": seq,
                "report_id": report_id_of(report_id),
                "received_s": received_s,
                "targets": decode(layout, times),
            }
        )
    return out


def traces(conn: Connection, agent: str, target: str) -> list[dict[str, Any]]:
    """Both families' traces of a target, in report order; each says its family."""
    return [
        {
            "seq": seq,
            "family": family,
            "received_s": received_s,
            "signature": sig,
            "results": json.loads(zlib.decompress(body)),
        }
        for seq, family, received_s, sig, body in conn.execute(
            "SELECT t.seq, t.family, t.received_s, t.signature, t.body FROM traces t"
            " JOIN agents a ON a.ref = t.agent_ref"
            " WHERE a.id = ? AND t.target = ? ORDER BY t.seq, t.family",
            (agent, target),
        )
    ]


# --------------------------------------------------------------------------- metrics snapshot


@dataclass(frozen=True, slots=True)
class Snapshot:
    # id, site, role, last_seen_s, silent, cycle_s, spool, dropped, targets refused,
    # service tags changeNumber, service tags installed (unix s)
    agents: list[tuple[Any, ...]]
    paths: list[
        tuple[Any, ...]
    ]  # agent, site, target, class, circuit, link, egress, matches, connect, dns, hops, tcp, flips,
    # family
    asymmetries: list[tuple[str, str, str, int]]
    # site, circuit, flows on the primary, flows on the secondary, 1 while redundancy is lost:
    # every circuit of the sites' facts, with the latest flows of the site's agents not silent.
    circuits: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    # site, reporting agents of the site whose own site facts differ from another's.
    facts_conflicts: list[tuple[str, int]] = field(default_factory=list)


# {circuits}: (site, circuit) of every circuit in the sites' facts, in the connection's dialect.
_CIRCUITS = """
SELECT f.site, f.circuit, coalesce(sum(l.primary_flows), 0), coalesce(sum(l.secondary_flows), 0),
       coalesce(max(r.lost), 0)
FROM ({circuits}) f
LEFT JOIN (SELECT c.* FROM circuit_links c JOIN agents a ON a.ref = c.agent_ref WHERE a.silent = 0) l
       ON l.site = f.site AND l.circuit = f.circuit
LEFT JOIN circuit_redundancy r ON r.site = f.site AND r.circuit = f.circuit
GROUP BY f.site, f.circuit
"""


_FACTS_CONFLICTS = """
SELECT s.name, (
    SELECT count(*) FROM agent_site_facts f JOIN agents a ON a.ref = f.agent_ref
    WHERE f.site = s.name AND a.site = s.name AND a.silent = 0 AND EXISTS (
        SELECT 1 FROM agent_site_facts o JOIN agents b ON b.ref = o.agent_ref
        WHERE o.site = s.name AND b.site = s.name AND b.silent = 0
          AND o.agent_ref <> f.agent_ref AND o.facts <> f.facts))
FROM sites s
"""


def snapshot(conn: Connection) -> Snapshot:
    return Snapshot(
        agents=conn.execute(
            "SELECT id, site, role, last_seen_s, silent, cycle_s, spool_reports,"
            " dropped_reports_total, targets_refused, service_tags_change_number,"
            " service_tags_installed_s FROM agents"
        ).fetchall(),
        paths=conn.execute(
            "SELECT a.id, a.site, p.target, p.class, p.circuit, p.link, p.egress, p.matches_expected,"
            " p.connect_s, p.dns_s, p.hops, p.tcp_state, p.flips_total, p.family"
            " FROM paths p JOIN agents a ON a.ref = p.agent_ref"
        ).fetchall(),
        asymmetries=conn.execute("SELECT site, circuit, kind, active FROM asymmetries").fetchall(),
        circuits=conn.execute(
            _CIRCUITS.format(circuits=dialect.circuits_of_sites(conn))
        ).fetchall(),
        facts_conflicts=conn.execute(_FACTS_CONFLICTS).fetchall(),
    )
