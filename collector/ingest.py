"""One report into the store: compact rows, path state, events, alerts.

`prepare` runs on the event loop (pure work on the parsed report); `apply`
runs on the writer thread inside one savepoint, so a report is stored
completely or not at all.

Storage is kept small on purpose.  A report becomes one observation row: a
reference to its *layout* (per target: class, circuit, link, egress, hop
count, path signature, TCP state — rarely changing, stored once and shared)
plus 4 bytes per target of connect and DNS times.  Full traces are stored
only when a target's path signature changes, plus the latest report per agent.
"""

from __future__ import annotations

import array
import hashlib
import json
import logging
import sqlite3
import uuid
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

from agent import report_codec
from agent.report import Report, SiteFacts, to_dict
from collector import alertrules, dialect, journal, preference, redundancy, routefilter
from collector.alertrules import Links
from collector.state import (
    Asymmetry,
    Candidate,
    Observation,
    PathKey,
    PathState,
    Transition,
    compatible,
    family_of,
    observations,
    reported_asymmetries,
)
from collector.state import apply as apply_path

log = logging.getLogger(__name__)

# Times are kept as 0.1 ms units in an unsigned 16-bit slot: up to 6.5533 s.
TIME_UNIT_S = 1e-4
TIME_NONE = 0xFFFF
TIME_MAX = 0xFFFE


@dataclass(frozen=True, slots=True)
class Settings:
    confirm_reports: int
    links: Links
    default_interval_s: float
    # Reports in a row that confirm a circuit running on one link.
    redundancy_lost_reports: int = 3
    # Paths (targets) kept per agent; a report's targets beyond them are refused.
    max_targets_per_agent: int = 2048


@dataclass(frozen=True, slots=True)
class Prepared:
    report: Report
    observations: tuple[Observation, ...]
    asymmetries: tuple[Asymmetry, ...]
    # The document's results as received (current shape), or None: `body` is the document,
    # parsed only when a trace is stored (a path's signature changed: rarely).
    results: list[Any] | None
    body: bytes  # the report as received (decoded JSON text)


@dataclass(slots=True)
class Outcome:
    status: str  # accepted | duplicate | conflict
    applied: bool = False
    events: int = 0
    flips: int = 0
    alerts_changed: bool = False
    asymmetry_inputs_changed: bool = False
    targets_refused: int = 0
    detail: str = ""
    event_ids: list[int] = field(default_factory=list)


def prepare(doc: dict[str, Any] | None, report: Report, body: bytes) -> Prepared:
    """`doc`: the parsed body in the current shape, or None when the body is one."""
    return Prepared(
        report,
        tuple(observations(report)),
        tuple(reported_asymmetries(report)),
        None if doc is None else doc.get("results", []),
        body,
    )


def _raw_results(p: Prepared) -> dict[tuple[str, int], list[Any]]:
    """The document's results by (target, family); the decoded ones are in its order."""
    raw = p.results if p.results is not None else report_codec.parse(p.body).get("results", [])
    by_path: dict[tuple[str, int], list[Any]] = {}
    for result, doc in zip(p.report.results, raw, strict=True):
        by_path.setdefault((result.target, family_of(result)), []).append(doc)
    return by_path


# --------------------------------------------------------------------------- compact rows


def report_key(report_id: str) -> bytes | str:
    """A UUID report id as its 16 bytes (a fifth of an observation row saved), anything else as is."""
    try:
        u = uuid.UUID(report_id)
    except ValueError:
        return report_id
    return u.bytes if str(u) == report_id.lower() else report_id


def report_id_of(key: bytes | str) -> str:
    return str(uuid.UUID(bytes=key)) if isinstance(key, bytes) else key


def _ticks(seconds: float | None) -> int:
    if seconds is None:
        return TIME_NONE
    return min(int(round(seconds / TIME_UNIT_S)), TIME_MAX)


def encode(obs: tuple[Observation, ...]) -> tuple[str, bytes, bytes]:
    """(layout body, layout digest, times blob) of one report's observations.

    An IPv6 path's row ends with its family; an IPv4 path's row has none, so IPv4-only
    reports keep the layouts (and digests) they had before paths had a family."""
    layout = json.dumps(
        [
            [
                o.target,
                o.role,
                o.key.path_class,
                o.key.circuit,
                o.link,
                o.key.egress,
                o.hops,
                o.signature,
                o.tcp_state,
                *((o.family,) if o.family != 4 else ()),
            ]
            for o in obs
        ],
        separators=(",", ":"),
    )
    times = array.array("H")
    for o in obs:
        times.append(_ticks(o.connect_s))
        times.append(_ticks(o.dns_s))
    return layout, hashlib.sha1(layout.encode()).digest(), times.tobytes()


def decode(layout: str, times_blob: bytes) -> list[dict[str, Any]]:
    """The observation rows of one report, as dicts (see `encode`)."""
    times = array.array("H")
    times.frombytes(times_blob)
    out = []
    for i, row in enumerate(json.loads(layout)):
        target, role, cls, circuit, link, egress, hops, sig, tcp = row[:9]
        c, d = times[2 * i], times[2 * i + 1]
        out.append(
            {
                "target": target,
                "family": row[9] if len(row) > 9 else 4,
                "role": role,
                "class": cls,
                "circuit": circuit,
                "link": link,
                "egress": egress,
                "hops": hops,
                "signature": sig,
                "tcp_state": tcp,
                "connect_s": None if c == TIME_NONE else round(c * TIME_UNIT_S, 4),
                "dns_s": None if d == TIME_NONE else round(d * TIME_UNIT_S, 4),
            }
        )
    return out


def _layout_ref(conn: sqlite3.Connection, cache: dict[str, Any], body: str, digest: bytes) -> int:
    layouts = cache.setdefault("layouts", {})
    ref = layouts.get(digest)
    if ref is None:
        row = conn.execute("SELECT ref FROM layouts WHERE digest=?", (digest,)).fetchone()
        if row is None:
            # Another writer inserting the same layout meanwhile: nothing here, its row below.
            row = (
                conn.execute(
                    "INSERT INTO layouts(digest, body) VALUES (?,?)"
                    " ON CONFLICT(digest) DO NOTHING RETURNING ref",
                    (digest, body),
                ).fetchone()
                or conn.execute("SELECT ref FROM layouts WHERE digest=?", (digest,)).fetchone()
            )
        ref = row[0]
        if len(layouts) > 100_000:
            layouts.clear()
        layouts[digest] = ref
    return ref


# --------------------------------------------------------------------------- path rows

PATH_COLUMNS = (
    "target, role, class, circuit, link, egress, address, addresses, signature, evidence, expected,"
    " matches_expected, connect_s, dns_s, hops, tcp_state, since_s, last_seq, last_received_s,"
    " candidate, flips_total, flip_origin, family"
)

# What a report's upsert sets on a path it has: not the key it matched on (SQLite rewrites
# a WITHOUT ROWID row whose key is set, even to the same value: a tenth of the upsert).
_PATH_UPDATED = tuple(
    c for c in PATH_COLUMNS.replace(" ", "").split(",") if c not in ("target", "family")
)

# A path's address and evidence lists are the same text report after report: each
# text is parsed (and each list written) once, not 30 times per report.  Pure
# functions of their argument, so any writer may share them; bounded, emptied when full.
_LIST_MEMO_MAX = 65536
_PARSED: dict[str, tuple[str, ...]] = {}
_WRITTEN: dict[tuple[str, ...], str] = {}


def _parsed_list(text: str) -> tuple[str, ...]:
    found = _PARSED.get(text)
    if found is None:
        if len(_PARSED) >= _LIST_MEMO_MAX:
            _PARSED.clear()
        found = _PARSED[text] = tuple(json.loads(text))
    return found


def _written_list(items: tuple[str, ...]) -> str:
    found = _WRITTEN.get(items)
    if found is None:
        if len(_WRITTEN) >= _LIST_MEMO_MAX:
            _WRITTEN.clear()
        found = _WRITTEN[items] = json.dumps(list(items))
    return found


_FACTS_TEXT: dict[SiteFacts, str] = {}


def _facts_text(facts: SiteFacts) -> str:
    """The site facts as stored and compared (the same text for the same facts)."""
    found = _FACTS_TEXT.get(facts)
    if found is None:
        if len(_FACTS_TEXT) >= 4096:
            _FACTS_TEXT.clear()
        found = _FACTS_TEXT[facts] = json.dumps(to_dict(facts))
    return found


def state_from_row(row: tuple[Any, ...]) -> PathState:
    (
        target,
        role,
        cls,
        circuit,
        link,
        egress,
        address,
        addresses,
        sig,
        evidence,
        expected,
        matches,
        connect_s,
        dns_s,
        hops,
        tcp_state,
        since_s,
        last_seq,
        last_received_s,
        cand,
        flips,
        origin,
        family,
    ) = row
    candidate = None
    if cand:
        c = json.loads(cand)
        candidate = Candidate(
            PathKey.from_dict(c["key"]), c["count"], c["first_received_s"], c["address"]
        )
    return PathState(
        target=target,
        role=role,
        key=PathKey(cls, circuit, egress),
        since_s=since_s,
        last_seq=last_seq,
        last_received_s=last_received_s,
        link=link,
        address=address,
        addresses=_parsed_list(addresses),
        signature=sig,
        evidence=_parsed_list(evidence),
        expected=expected,
        matches_expected=None if matches is None else bool(matches),
        connect_s=connect_s,
        dns_s=dns_s,
        hops=hops,
        tcp_state=tcp_state,
        candidate=candidate,
        flips_total=flips,
        flip_origin=PathKey.from_dict(json.loads(origin)) if origin else None,
        family=family,
    )


def _row_from_state(agent_ref: int, s: PathState) -> tuple[Any, ...]:
    cand = None
    if s.candidate:
        c = s.candidate
        cand = json.dumps(
            {
                "key": c.key.as_dict(),
                "count": c.count,
                "first_received_s": c.first_received_s,
                "address": c.address,
            }
        )
    return (
        agent_ref,
        s.target,
        s.role,
        s.key.path_class,
        s.key.circuit,
        s.link,
        s.key.egress,
        s.address,
        _written_list(s.addresses),
        s.signature,
        _written_list(s.evidence),
        s.expected,
        None if s.matches_expected is None else int(s.matches_expected),
        s.connect_s,
        s.dns_s,
        s.hops,
        s.tcp_state,
        s.since_s,
        s.last_seq,
        s.last_received_s,
        cand,
        s.flips_total,
        json.dumps(s.flip_origin.as_dict()) if s.flip_origin else None,
        s.family,
    )


# --------------------------------------------------------------------------- the transaction


def _agent(
    conn: sqlite3.Connection, cache: dict[str, Any], r: Report, received_s: float, interval_s: float
) -> tuple[int, int, int]:
    """(ref, last_seq, silent) of the agent, creating it on first contact.

    A report from a new epoch (the agent's state directory was wiped: a
    reinstall, a new disk) restarts the agent's ordering, else its seq 1 would
    be "late" behind the old last seq for ever: paths and alerts frozen while
    the agent looks alive.  A report without an epoch (erpath.report/1, an
    older agent) keeps the order it had; the first epoch seen is adopted.
    """
    a = r.agent
    row = conn.execute(
        "SELECT ref, last_seq, silent, epoch FROM agents WHERE id=?", (a.id,)
    ).fetchone()
    if row is not None:
        ref, last_seq, silent, epoch = row
        if a.epoch is not None and a.epoch != epoch:
            if epoch is not None:
                _new_epoch(conn, ref, a.id, epoch, a.epoch)
                last_seq = -1
            conn.execute(
                "UPDATE agents SET epoch=?, last_seq=? WHERE ref=?", (a.epoch, last_seq, ref)
            )
        return ref, last_seq, silent
    ref = conn.execute(
        "INSERT INTO agents(id, site, role, version, hostname, interval_s, last_seq, first_seen_s,"
        " last_seen_s, epoch) VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING ref",
        (
            a.id,
            a.site,
            a.role,
            a.version,
            a.hostname,
            interval_s,
            -1,
            received_s,
            received_s,
            a.epoch,
        ),
    ).fetchone()[0]
    return ref, -1, 0


def _site_facts(
    conn: sqlite3.Connection, agent_ref: int, agent: str, site: str, facts: str, received_s: float
) -> None:
    """Keep the agent's own facts; they become the site's unless another reporting agent
    of the site says otherwise.

    Two agents of one site with different facts (one config not yet rolled out)
    used to overwrite each other at every report: circuits and NAT pools
    flapped, and asymmetry came and went with them.  Now the site keeps the
    facts it had, and the conflict is shown (`GET /api/v1/agents`
    `site_facts_conflict`) until the configs agree.

    Facts rarely change, and every report carries them: a row is written only when
    they do (updated_s is when they last changed), and a site that has them already
    needs no decision.
    """
    conn.execute(
        "INSERT INTO agent_site_facts(agent_ref, site, facts, updated_s) VALUES (?,?,?,?)"
        " ON CONFLICT(agent_ref) DO UPDATE SET site=excluded.site, facts=excluded.facts,"
        " updated_s=excluded.updated_s"
        " WHERE agent_site_facts.site<>excluded.site OR agent_site_facts.facts<>excluded.facts",
        (agent_ref, site, facts, received_s),
    )
    row = conn.execute("SELECT facts FROM sites WHERE name=?", (site,)).fetchone()
    if row is not None and row[0] == facts:
        return
    if site_facts_conflict(conn, agent_ref, site, facts):
        return
    conn.execute(
        "INSERT INTO sites(name, facts, from_agent, updated_s) VALUES (?,?,?,?)"
        " ON CONFLICT(name) DO UPDATE SET facts=excluded.facts, from_agent=excluded.from_agent,"
        " updated_s=excluded.updated_s",
        (site, facts, agent, received_s),
    )


def site_facts_conflict(
    conn: sqlite3.Connection, agent_ref: int, site: str, facts: str | None = None
) -> list[str]:
    """Other agents of the site, still reporting, whose facts differ from this agent's."""
    if facts is None:
        row = conn.execute(
            "SELECT facts FROM agent_site_facts WHERE agent_ref=? AND site=?", (agent_ref, site)
        ).fetchone()
        if row is None:
            return []
        facts = row[0]
    return [
        agent
        for (agent,) in conn.execute(
            "SELECT a.id FROM agent_site_facts f JOIN agents a ON a.ref=f.agent_ref"
            " WHERE f.site=? AND a.site=? AND f.agent_ref<>? AND f.facts<>? AND a.silent=0"
            " ORDER BY a.id",
            (site, site, agent_ref, facts),
        )
    ]


def _new_epoch(conn: sqlite3.Connection, ref: int, agent: str, old: str, new: str) -> None:
    """Move the agent's stored history below every seq it had, order kept, so the new
    epoch's seq 1, 2 … neither collide with it (409) nor count as late."""
    lo, hi = conn.execute(
        "SELECT min(seq), max(seq) FROM observations WHERE agent_ref=?", (ref,)
    ).fetchone()
    tlo, thi = conn.execute(
        "SELECT min(seq), max(seq) FROM traces WHERE agent_ref=?", (ref,)
    ).fetchone()
    seqs = [v for v in (lo, hi, tlo, thi) if v is not None]
    if seqs:
        # Every new value lies below the old minimum: no unique-index collision mid-update.
        shift = max(seqs) - min(seqs) + 1 + max(0, max(seqs))
        conn.execute("UPDATE observations SET seq=seq-? WHERE agent_ref=?", (shift, ref))
        conn.execute("UPDATE traces SET seq=seq-? WHERE agent_ref=?", (shift, ref))
    conn.execute("UPDATE paths SET last_seq=-1 WHERE agent_ref=?", (ref,))
    log.info(
        "agent %s starts a new epoch (%s after %s): its order restarts at seq 1", agent, new, old
    )


def lock_agent(conn: sqlite3.Connection, agent_id: str) -> None:
    """First in a report's transaction: one agent's reports apply one at a time, whichever
    replica (or PostgreSQL writer) took them, so its seq order and the duplicate check below
    hold across replicas.  The second waits for the first to commit, then sees its row
    (READ COMMITTED reads anew at each statement): a report acknowledged by one replica
    and sent again to another is a duplicate there.  SQLite's one writer already
    serialises every write.  An agent's very first report locks no row yet; two racing
    copies of it meet at the agents' unique id, and the store runs the loser again."""
    if dialect.of(conn) == dialect.POSTGRESQL:
        conn.execute("SELECT 1 FROM agents WHERE id = ? FOR UPDATE", (agent_id,))


def apply(
    conn: sqlite3.Connection,
    cache: dict[str, Any],
    p: Prepared,
    received_s: float,
    settings: Settings,
) -> Outcome:
    r = p.report
    a = r.agent
    lock_agent(conn, a.id)
    interval_s = r.interval_s or settings.default_interval_s
    agent_ref, last_seq, silent = _agent(conn, cache, r, received_s, interval_s)

    dup = conn.execute(
        "SELECT report_id FROM observations WHERE agent_ref=? AND seq=?", (agent_ref, r.seq)
    ).fetchone()
    rid = report_key(r.id)
    if dup is not None:
        if dup[0] == rid:
            return Outcome("duplicate")
        return Outcome(
            "conflict",
            detail=f"seq {r.seq} of agent {a.id} was already used by report "
            f"{report_id_of(dup[0])!r}",
        )

    prev = {
        (s.target, s.family): s
        for s in map(
            state_from_row,
            conn.execute(f"SELECT {PATH_COLUMNS} FROM paths WHERE agent_ref=?", (agent_ref,)),
        )
    }
    kept, refused = _within_cap(p.observations, prev, settings.max_targets_per_agent)
    layout, digest, times = encode(kept)
    conn.execute(
        "INSERT INTO observations(agent_ref, seq, report_id, received_s, layout_ref, times)"
        " VALUES (?,?,?,?,?,?)",
        (agent_ref, r.seq, rid, int(received_s), _layout_ref(conn, cache, layout, digest), times),
    )
    out = Outcome("accepted", targets_refused=len(refused))
    if silent:
        out.event_ids.append(
            journal.add_event(
                conn,
                received_s,
                "agent_recovered",
                "info",
                f"{a.id} reports again",
                site=a.site,
                agent=a.id,
            )
        )
        out.asymmetry_inputs_changed = True

    if r.seq <= last_seq:
        # Late (spooled) or replayed-with-new-id: history only, the current path stays.
        conn.execute(
            "UPDATE agents SET last_seen_s=CASE WHEN last_seen_s > ? THEN last_seen_s ELSE ? END,"
            " silent=0 WHERE ref=?",
            (received_s, received_s, agent_ref),
        )
        out.events = len(out.event_ids)
        return out

    out.applied = True
    h = r.health
    _refusals(conn, agent_ref, a.site, a.id, refused, received_s, settings, out)
    conn.execute(
        "UPDATE agents SET site=?, role=?, version=?, hostname=?, interval_s=?, last_seq=?,"
        " last_report_id=?, last_seen_s=CASE WHEN last_seen_s > ? THEN last_seen_s ELSE ? END,"
        " silent=0, cycle_s=?, spool_reports=?,"
        " dropped_reports_total=?, service_tags_change_number=?, service_tags_installed_s=?"
        " WHERE ref=?",
        (
            a.site,
            a.role,
            a.version,
            a.hostname,
            interval_s,
            r.seq,
            r.id,
            received_s,
            received_s,
            h.cycle_s if h else None,
            h.spool_reports if h else None,
            h.dropped_reports_total if h else None,
            h.service_tags_change_number if h else None,
            received_s - h.service_tags_age_s if h and h.service_tags_age_s is not None else None,
            agent_ref,
        ),
    )
    if r.site.circuits or r.site.internet_edges:
        _site_facts(conn, agent_ref, a.id, a.site, _facts_text(r.site), received_s)

    firing_alerts = [
        (fp, name, target, json.loads(labels))
        for fp, name, target, labels in conn.execute(
            "SELECT fingerprint, alertname, target, labels FROM alerts"
            " WHERE agent=? AND ends_s IS NULL",
            (a.id,),
        )
    ]
    # Which circuits are available matters only to targets with a failover order (a
    # query over the site's paths otherwise run for every report).
    available = (
        preference.available_circuits(
            r.msee_probes,
            preference.others_on_circuits(conn, a.site, agent_ref),
            {o.key.circuit for o in kept if o.key.circuit},
        )
        if any(o.prefer for o in kept)
        else {}
    )
    rows = []
    raw_results: dict[tuple[str, int], list[Any]] | None = None
    for obs in kept:
        before = prev.get((obs.target, obs.family))
        t: Transition = apply_path(before, obs, r.seq, received_s, settings.confirm_reports)
        expectation = preference.expect(t.state.key, obs.expected, obs.prefer, available)
        if expectation is not None:
            t = replace(
                t,
                state=replace(
                    t.state, expected=expectation.expected, matches_expected=expectation.matches
                ),
            )
        rows.append(_row_from_state(agent_ref, t.state))
        if obs.role == "reverse" and (before is None or t.flip is not None):
            out.asymmetry_inputs_changed = True
        for ev in t.events:
            out.event_ids.append(
                journal.add_event(
                    conn,
                    received_s,
                    ev.kind,
                    ev.severity,
                    f"{a.id}: {ev.summary}",
                    site=a.site,
                    agent=a.id,
                    target=ev.target,
                    circuit=(ev.after or {}).get("circuit"),
                    driver=ev.driver,
                    before=ev.before,
                    after=ev.after,
                    evidence=ev.evidence,
                )
            )
        if t.signature_changed and obs.signature:
            if raw_results is None:
                raw_results = _raw_results(p)
            conn.execute(
                "INSERT INTO traces(agent_ref, target, family, seq, received_s, signature, body)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    agent_ref,
                    obs.target,
                    obs.family,
                    r.seq,
                    received_s,
                    obs.signature,
                    zlib.compress(
                        json.dumps(raw_results.get((obs.target, obs.family), [])).encode(),
                        6,
                    ),
                ),
            )
        out.alerts_changed |= _path_alerts(
            conn, a.site, a.id, t, firing_alerts, received_s, settings, expectation
        )
        if t.flip is not None:
            out.flips += 1
            out.asymmetry_inputs_changed = True
    conn.executemany(
        "INSERT INTO paths(agent_ref, "
        + PATH_COLUMNS
        + ") VALUES ("
        + ",".join("?" * 24)
        + ") ON CONFLICT(agent_ref, target, family) DO UPDATE SET "
        + ", ".join(f"{c}=excluded.{c}" for c in _PATH_UPDATED),
        rows,
    )
    conn.execute(
        "INSERT INTO latest_results(agent_ref, seq, received_s, body) VALUES (?,?,?,?)"
        " ON CONFLICT(agent_ref) DO UPDATE SET seq=excluded.seq, received_s=excluded.received_s,"
        " body=excluded.body",
        (agent_ref, r.seq, received_s, zlib.compress(p.body, 1)),
    )
    had = conn.execute(
        "SELECT count(*) FROM reported_asymmetries WHERE agent_ref=?", (agent_ref,)
    ).fetchone()[0]
    if had or p.asymmetries:
        conn.execute("DELETE FROM reported_asymmetries WHERE agent_ref=?", (agent_ref,))
        conn.executemany(
            "INSERT INTO reported_asymmetries(agent_ref, target, site, circuit, evidence, seen_s,"
            " severity, family) VALUES (?,?,?,?,?,?,?,?)",
            [
                (
                    agent_ref,
                    x.target,
                    x.site,
                    x.circuit,
                    json.dumps(list(x.evidence)),
                    received_s,
                    x.severity,
                    x.family,
                )
                for x in p.asymmetries
            ],
        )
        out.asymmetry_inputs_changed = True
    out.alerts_changed |= redundancy.observe(
        conn,
        a.site,
        agent_ref,
        r,
        received_s,
        settings.redundancy_lost_reports,
        settings.links,
    )
    out.alerts_changed |= routefilter.observe(conn, a.site, a.id, r, received_s, settings.links)
    out.events = len(out.event_ids)
    return out


def _within_cap(
    obs: tuple[Observation, ...], known: dict[tuple[str, int], PathState], cap: int
) -> tuple[tuple[Observation, ...], list[str]]:
    """(observations kept, targets refused): paths the agent has, then new ones in report
    order while the agent stays within `cap` paths (a dual-stack target is two).  Target
    names are the agent's free strings: without a cap, each new one is a path row and ~7
    series forever."""
    room = cap - len(known)
    kept, refused = [], []
    for o in obs:  # one observation per (target, family)
        if (o.target, o.family) in known:
            kept.append(o)
        elif room > 0:
            room -= 1
            kept.append(o)
        else:
            refused.append(o.target)
    return tuple(kept), refused


def _refusals(
    conn: sqlite3.Connection,
    agent_ref: int,
    site: str,
    agent: str,
    refused: list[str],
    now_s: float,
    settings: Settings,
    out: Outcome,
) -> None:
    """Count the targets refused by the cap; an event when refusing starts."""
    if not refused:  # every report but a capped agent's: no read, and a write only when it was
        conn.execute(
            "UPDATE agents SET targets_refused=0 WHERE ref=? AND targets_refused<>0", (agent_ref,)
        )
        return
    (before,) = conn.execute(
        "SELECT targets_refused FROM agents WHERE ref=?", (agent_ref,)
    ).fetchone()
    conn.execute("UPDATE agents SET targets_refused=? WHERE ref=?", (len(refused), agent_ref))
    if refused and not before:
        out.event_ids.append(
            journal.add_event(
                conn,
                now_s,
                "targets_refused",
                "warning",
                f"{agent}: {len(refused)} target(s) beyond the cap of"
                f" {settings.max_targets_per_agent} paths per agent are not stored"
                f" (first: {refused[0]!r}); trim the agent's targets or raise"
                " [ingest] max_targets_per_agent",
                site=site,
                agent=agent,
            )
        )


def _path_alerts(
    conn: sqlite3.Connection,
    site: str,
    agent: str,
    t: Transition,
    firing_alerts: list[tuple[str, str, str, dict[str, str]]],
    now_s: float,
    settings: Settings,
    expectation: preference.Expectation | None = None,
) -> bool:
    """Route-flip and unexpected-path alerts of one (agent, target, family) after a transition."""
    changed = False
    target = t.state.target
    mine = [
        (fp, name, labels)
        for fp, name, tgt, labels in firing_alerts
        if tgt == target and alertrules.family_of_labels(labels) == t.state.family
    ]
    if t.flip is not None:
        # A chain of flips is one story told from where it started: the new
        # alert keeps the first path as `from`, and coming back to it resolves all.
        flips = [fp for fp, name, _ in mine if name == alertrules.ROUTE_FLIP]
        before = PathKey.from_dict(t.flip.before or {"class": "unknown"})
        origin = (t.flip.origin or before) if flips else before
        for fp in flips:
            changed |= journal.resolve(conn, fp, now_s)
        if not compatible(origin, t.state.key):
            spec = alertrules.route_flip(site, agent, t.flip, settings.links, origin.label)
            changed |= journal.fire(conn, spec, now_s)
    if t.state.matches_expected is False:
        why = expectation.evidence if expectation is not None else ()
        spec = alertrules.unexpected_path(site, agent, t.state, settings.links, why)
        for fp, name, _ in mine:
            if name == alertrules.UNEXPECTED_PATH and fp != spec.fingerprint:
                changed |= journal.resolve(conn, fp, now_s)
        # Refresh only when the path itself changed: annotations follow the current path.
        if t.flip is not None or not any(fp == spec.fingerprint for fp, _, _ in mine):
            changed |= journal.fire(conn, spec, now_s)
    elif t.state.matches_expected is True:
        for fp, name, _ in mine:
            if name == alertrules.UNEXPECTED_PATH:
                changed |= journal.resolve(conn, fp, now_s)
    return changed
