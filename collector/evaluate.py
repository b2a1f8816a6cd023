"""Periodic evaluation: silent agents, flip-alert hold times, expired paths, asymmetry.

`run` pairs forward and reverse paths on the collector's internal reader
thread, from one snapshot, and hands only the outcome to the writer, which
writes the events and alert changes in one transaction: a costly pairing (a
site with ~200k advertised prefixes, 1,024 reverse paths) never holds the
single writer that every report waits on.  A site's prefixes are parsed once
per version of its facts (`FactsCache`).  Staleness is judged by the
collector's receive time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from agent.report import Circuit, InternetEdge, SiteFacts
from collector import alertrules, journal
from collector.alertrules import Links
from collector.state import (
    REVERSE_ROLE,
    Asymmetry,
    PathKey,
    PrefixIndex,
    SitePath,
    group_asymmetries,
    measured_asymmetries,
)
from collector.store import Store


@dataclass(frozen=True, slots=True)
class EvalSettings:
    silent_after_intervals: float
    default_interval_s: float
    flip_hold_s: float
    links: Links
    # A path its agent stopped reporting expires after this many of the agent's intervals.
    path_expiry_intervals: float = 20.0


@dataclass(slots=True)
class EvalOutcome:
    silent: int = 0
    expired: int = 0  # flip alerts past their hold time
    paths_expired: int = 0
    asymmetries: int = 0
    alerts_changed: bool = False
    events: int = 0


def site_facts(doc: dict[str, Any]) -> SiteFacts:
    """The site's facts as stored (the report's own JSON), both families: IPv6 peering
    /126s beside the /30s (`Circuit.link_subnets`), internet edges' IPv6 source prefixes."""
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
                primary_subnet_v6=c.get("primary_subnet_v6"),
                secondary_subnet_v6=c.get("secondary_subnet_v6"),
            )
            for c in doc.get("circuits", ())
        ),
        internet_edges=tuple(
            InternetEdge(
                e["name"],
                tuple(e.get("nat_addresses", ())),
                tuple(e.get("hop_addresses", ())),
                tuple(e.get("source_prefixes_v6", ())),
            )
            for e in doc.get("internet_edges", ())
        ),
        prefer=tuple(doc.get("prefer", ())),
    )


def _site_path(row: tuple[Any, ...]) -> SitePath:
    agent, site, target, cls, circuit, egress, address, evidence, family = row
    return SitePath(
        agent,
        site,
        target,
        PathKey(cls, circuit, egress),
        address,
        tuple(json.loads(evidence)),
        family,
    )


@dataclass(slots=True)
class FactsCache:
    """Each site's parsed facts and prefix index, by a digest of the facts' text.

    Used by one thread at a time (the store's internal reader); `built` counts
    the prefix indexes built, the work a version change costs."""

    sites: dict[str, tuple[bytes, SiteFacts, PrefixIndex]] = field(default_factory=dict)
    built: int = 0
    prefixes_parsed: int = 0

    def get(self, site: str, doc: str) -> tuple[SiteFacts, PrefixIndex]:
        version = hashlib.blake2b(doc.encode(), digest_size=16).digest()
        hit = self.sites.get(site)
        if hit is not None and hit[0] == version:
            return hit[1], hit[2]
        facts = site_facts(json.loads(doc))
        index = PrefixIndex(facts)
        self.built += 1
        self.prefixes_parsed += index.parsed
        self.sites[site] = (version, facts, index)
        return facts, index

    def keep_only(self, sites: set[str]) -> None:
        for gone in self.sites.keys() - sites:
            del self.sites[gone]


_PATH_SELECT = (
    "SELECT a.id, a.site, p.target, p.class, p.circuit, p.egress, p.address, p.evidence,"
    " p.family FROM paths p JOIN agents a ON a.ref = p.agent_ref"
)


def current_asymmetries(
    conn: sqlite3.Connection, cache: FactsCache | None = None
) -> list[Asymmetry]:
    """Reported (agent findings) plus measured (reverse paths paired with forward ones)."""
    found = [
        Asymmetry(
            site, circuit, "reported", agent, target, tuple(json.loads(evidence)), severity, family
        )
        for agent, site, circuit, target, evidence, severity, family in conn.execute(
            "SELECT a.id, r.site, r.circuit, r.target, r.evidence, r.severity, r.family"
            " FROM reported_asymmetries r JOIN agents a ON a.ref = r.agent_ref"
        )
    ]
    reverse = [
        _site_path(r) for r in conn.execute(_PATH_SELECT + " WHERE p.role = ?", (REVERSE_ROLE,))
    ]
    if reverse:
        cache = cache if cache is not None else FactsCache()
        facts, prefixes = {}, {}
        for name, doc in conn.execute("SELECT name, facts FROM sites"):
            facts[name], prefixes[name] = cache.get(name, doc)
        cache.keep_only(set(facts))
        forward: dict[str, list[SitePath]] = {}
        for site in facts:
            forward[site] = [
                _site_path(r)
                for r in conn.execute(
                    _PATH_SELECT + " WHERE a.site = ? AND p.role != ?", (site, REVERSE_ROLE)
                )
            ]
        found.extend(measured_asymmetries(facts, reverse, forward, prefixes))
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
    for fp, agent, target, labels in conn.execute(
        "SELECT fingerprint, agent, target, labels FROM alerts"
        " WHERE alertname = ? AND ends_s IS NULL AND starts_s <= ?",
        (alertrules.ROUTE_FLIP, now_s - s.flip_hold_s),
    ).fetchall():
        if journal.resolve(conn, fp, now_s):
            # The chain ends with its alert: the next flip starts a new story.
            conn.execute(
                "UPDATE paths SET flip_origin = NULL WHERE target = ? AND family = ?"
                " AND agent_ref = (SELECT ref FROM agents WHERE id = ?)",
                (target, alertrules.family_of_labels(json.loads(labels)), agent),
            )
            out.expired += 1
            out.alerts_changed = True


@dataclass(frozen=True, slots=True)
class Found:
    """What the reader found: asymmetries now, and paths past their expiry."""

    asymmetries: list[Asymmetry]
    # (agent ref, agent, site, target, family, the path's last report as read)
    expired: list[tuple[int, str, str, str, int, float]]


def expired_paths(
    conn: sqlite3.Connection, s: EvalSettings
) -> list[tuple[int, str, str, str, int, float]]:
    """Paths the agent stopped reporting (a removed target).

    Judged against the agent's own last report, not the clock: a silent agent's
    paths stay (ErpathAgentSilent says why they are old).  A scan of every path,
    so it runs on the reader."""
    return conn.execute(
        "SELECT a.ref, a.id, a.site, p.target, p.family, p.last_received_s FROM paths p"
        " JOIN agents a ON a.ref = p.agent_ref"
        " WHERE a.last_seen_s - p.last_received_s > ? * coalesce(a.interval_s, ?)",
        (s.path_expiry_intervals, s.default_interval_s),
    ).fetchall()


def _expire_paths(
    conn: sqlite3.Connection,
    now_s: float,
    s: EvalSettings,
    out: EvalOutcome,
    expired: list[tuple[int, str, str, str, int, float]],
) -> None:
    """Expired paths go, with their alerts; one reported again since it was read stays.

    A family's path expires on its own: a dual-stack target whose users moved to IPv4
    (ipv6-blackhole) keeps its IPv4 path while the IPv6 one goes."""
    for ref, agent, site, target, family, last_received_s in expired:
        gone = conn.execute(
            "DELETE FROM paths WHERE agent_ref = ? AND target = ? AND family = ?"
            " AND last_received_s = ?",
            (ref, target, family, last_received_s),
        ).rowcount
        if not gone:
            continue
        conn.execute(
            "DELETE FROM reported_asymmetries WHERE agent_ref = ? AND target = ? AND family = ?",
            (ref, target, family),
        )
        for name in (alertrules.ROUTE_FLIP, alertrules.UNEXPECTED_PATH):
            for fp, labels in journal.firing(conn, name, agent=agent, target=target):
                if alertrules.family_of_labels(labels) == family:
                    out.alerts_changed |= journal.resolve(conn, fp, now_s)
        named = target if family == 4 else f"{target} (IPv{family})"
        journal.add_event(
            conn,
            now_s,
            "path_expired",
            "info",
            f"{agent}: {named} not reported for {s.path_expiry_intervals:g} intervals;"
            " its path, series and alerts are gone",
            site=site,
            agent=agent,
            target=target,
        )
        out.paths_expired += 1
        out.events += 1


def _asymmetry(
    conn: sqlite3.Connection,
    now_s: float,
    s: EvalSettings,
    out: EvalOutcome,
    found: list[Asymmetry],
) -> None:
    groups = group_asymmetries(found)
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
                "INSERT INTO asymmetries(site, circuit, kind, active, since_s, updated_s,"
                " members, evidence) VALUES (?,?,?,1,?,?,?,?) ON CONFLICT(site, circuit, kind)"
                " DO UPDATE SET active=1, since_s=excluded.since_s, updated_s=excluded.updated_s,"
                " members=excluded.members, evidence=excluded.evidence",
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


def apply(conn: sqlite3.Connection, now_s: float, s: EvalSettings, found: Found) -> EvalOutcome:
    """The writer's part: state changes from what the reader found."""
    out = EvalOutcome()
    _silence(conn, now_s, s, out)
    _expire_flips(conn, now_s, s, out)
    _expire_paths(conn, now_s, s, out, found.expired)
    _asymmetry(conn, now_s, s, out, found.asymmetries)
    return out


def find(conn: sqlite3.Connection, s: EvalSettings, cache: FactsCache | None = None) -> Found:
    """The reader's part: everything that scans (paths, facts, pairing)."""
    return Found(current_asymmetries(conn, cache), expired_paths(conn, s))


def evaluate(conn: sqlite3.Connection, now_s: float, s: EvalSettings) -> EvalOutcome:
    """Both parts on one connection (tools and tests without a running store)."""
    return apply(conn, now_s, s, find(conn, s))


async def run(store: Store, now_s: float, s: EvalSettings) -> EvalOutcome:
    """Pair on the internal reader (its snapshot), then write the outcome.

    What changed between the two (a report, a path expired) is seen by the next
    evaluation, seconds later, as any report arriving just after one is."""
    cache = store.read_cache.setdefault("facts", FactsCache())
    found = await store.read_internal(find, s, cache)
    return await store.write(apply, now_s, s, found)
