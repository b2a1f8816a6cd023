"""Circuit redundancy: are both links of a circuit carrying the site's flows?

On an active-active circuit (Microsoft's recommendation) the CE hashes each
flow onto the primary or the secondary link, so the flows of a site's agents
land on both.  When every flow the site's latest reports attributed to the
circuit crossed one link, although enough flows were seen to show the other
one (the MDA-lite bound: 6 flows miss a second, evenly loaded link with
probability 2 x 0.5^6, about 3 %), one link is down or out of the hash.  On an
active-standby circuit, traffic on the standby (secondary) link with none on
the primary means the primary failed.  Either for N reports in a row raises
one `ErpathCircuitRedundancyLost` per site and circuit.

Flows whose MSEE hop stayed silent name no link: they count for nothing, so
an unanswering MSEE never starts, confirms or resolves the alert.  Nor do the
flows of a silent agent (no report for its silence window).

`circuit_flows` and `judge` are pure; `observe` keeps the site's latest flows
per agent and the streak in the store, inside the ingest transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.report import Report
from collector import alertrules, journal
from collector.alertrules import Links
from collector.dialect import Connection

# Flows with a known link that a single-link verdict needs (MDA-lite, 95 %).
MIN_FLOWS = 6


@dataclass(frozen=True, slots=True)
class Flows:
    """Flows per link of one circuit."""

    primary: int = 0
    secondary: int = 0

    @property
    def total(self) -> int:
        return self.primary + self.secondary

    def __add__(self, other: Flows) -> Flows:
        return Flows(self.primary + other.primary, self.secondary + other.secondary)


def circuit_flows(report: Report) -> dict[str, Flows]:
    """Per circuit of the report's ExpressRoute verdicts, the flows each link carried."""
    out: dict[str, Flows] = {}
    for r in report.results:
        v = r.verdict
        if v is None or v.path_class != "expressroute" or not v.circuit:
            continue
        flows = out.get(v.circuit, Flows())
        for seen in v.links_seen:
            if seen.link == "primary":
                flows += Flows(primary=seen.flows)
            else:
                flows += Flows(secondary=seen.flows)
        out[v.circuit] = flows
    return out


@dataclass(frozen=True, slots=True)
class Judgement:
    """One report's say on a circuit: lost, healthy, or nothing (None)."""

    lost: bool | None
    in_use: str | None = None  # the link still carrying flows when lost


def judge(mode: str, flows: Flows) -> Judgement:
    if mode == "active-standby":
        if flows.secondary and not flows.primary:
            return Judgement(True, "secondary")
        return Judgement(False if flows.primary else None)
    if flows.primary and flows.secondary:
        return Judgement(False)
    if flows.total >= MIN_FLOWS:
        return Judgement(True, "primary" if flows.primary else "secondary")
    return Judgement(None)


def evidence(
    circuit: str, mode: str, j: Judgement, per_agent: Iterable[tuple[str, Flows]], streak: int
) -> list[str]:
    rows = sorted(per_agent)
    total = sum((f for _, f in rows), Flows())
    other = "secondary" if j.in_use == "primary" else "primary"
    if mode == "active-standby":
        head = (
            f"circuit {circuit} (active-standby): {total.secondary} flow(s) on the standby "
            f"secondary link and none on the primary, {streak} report(s) in a row"
        )
    else:
        head = (
            f"circuit {circuit} (active-active): all {total.total} flow(s) of the site's latest "
            f"reports crossed the {j.in_use} link and none the {other}, "
            f"{streak} report(s) in a row (at least {MIN_FLOWS} flows show both links)"
        )
    lines = [head, f"link still in use: {j.in_use}"]
    lines += [
        f"  {agent}: primary {f.primary} flow(s), secondary {f.secondary} flow(s)"
        for agent, f in rows
    ]
    return lines


def _site_flows(conn: Connection, site: str, circuit: str) -> list[tuple[str, Flows]]:
    # A silent agent's last flows are history: counted, they would show a link
    # that may have failed since, and hide the loss the other agents see.
    return [
        (agent, Flows(p, s))
        for agent, p, s in conn.execute(
            "SELECT a.id, c.primary_flows, c.secondary_flows FROM circuit_links c"
            " JOIN agents a ON a.ref = c.agent_ref"
            " WHERE c.site = ? AND c.circuit = ? AND a.silent = 0",
            (site, circuit),
        )
    ]


def observe(
    conn: Connection,
    site: str,
    agent_ref: int,
    report: Report,
    received_s: float,
    confirm_reports: int,
    links: Links,
) -> bool:
    """Fold one in-order report into its site's circuits; True when an alert changed."""
    flows = circuit_flows(report)
    conn.execute("DELETE FROM circuit_links WHERE agent_ref = ? AND site = ?", (agent_ref, site))
    conn.executemany(
        "INSERT INTO circuit_links(site, circuit, agent_ref, primary_flows, secondary_flows,"
        " seen_s) VALUES (?,?,?,?,?,?)",
        [(site, c, agent_ref, f.primary, f.secondary, received_s) for c, f in flows.items()],
    )
    changed = False
    for c in report.site.circuits:
        if c.name not in flows:
            continue  # this report says nothing of the circuit
        per_agent = _site_flows(conn, site, c.name)
        j = judge(c.links, sum((f for _, f in per_agent), Flows()))
        row = conn.execute(
            "SELECT streak, in_use, lost FROM circuit_redundancy WHERE site = ? AND circuit = ?",
            (site, c.name),
        ).fetchone()
        streak, in_use, lost = row if row else (0, None, 0)
        if j.lost is None:
            continue
        # A streak is of one link: all flows on the primary, then all on the
        # secondary, is both links working, seen one at a time.
        streak = (streak + 1 if j.in_use == in_use else 1) if j.lost else 0
        spec = alertrules.redundancy_lost(
            site, c.name, evidence(c.name, c.links, j, per_agent, streak) if j.lost else [], links
        )
        if j.lost and streak >= confirm_reports and not lost:
            # Evidence as of the report that confirmed it: flow counts move with
            # every report, and each change would be a delivery to every receiver.
            changed |= journal.fire(conn, spec, received_s)
            journal.add_event(
                conn,
                received_s,
                "redundancy_lost",
                "warning",
                spec.annotations["summary"],
                site=site,
                circuit=c.name,
                evidence=spec.annotations["evidence"].splitlines(),
            )
            lost = 1
        elif not j.lost and lost:
            changed |= journal.resolve(conn, spec.fingerprint, received_s)
            journal.add_event(
                conn,
                received_s,
                "redundancy_restored",
                "info",
                f"circuit {c.name} at {site}: both links carry traffic again"
                if c.links == "active-active"
                else f"circuit {c.name} at {site}: the primary link carries traffic again",
                site=site,
                circuit=c.name,
            )
            lost = 0
        conn.execute(
            "INSERT INTO circuit_redundancy(site, circuit, mode, streak, in_use, lost, updated_s)"
            " VALUES (?,?,?,?,?,?,?) ON CONFLICT(site, circuit) DO UPDATE SET mode=excluded.mode,"
            " streak=excluded.streak, in_use=excluded.in_use, lost=excluded.lost,"
            " updated_s=excluded.updated_s",
            (site, c.name, c.links, streak, j.in_use, lost, received_s),
        )
    return changed
