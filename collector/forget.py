"""Forgetting a decommissioned agent: its state, series and alerts go, its history's events stay.

Without it an agent taken out of service exported its last values for ever
and `ErpathAgentSilent` never stopped.  One writer job: the agent's rows go,
its firing alerts resolve (receivers hear a resolution), and when it was the
last agent of its site the site's facts, circuits and asymmetries go too.
Tokens are left alone: revoking is its own, deliberate step.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector import journal
from collector.dialect import Connection
from collector.ingest import lock_agent

# Tables with one or more rows per agent, keyed by its ref.
_AGENT_TABLES = (
    "paths",
    "observations",
    "traces",
    "latest_results",
    "reported_asymmetries",
    "agent_site_facts",
    "circuit_links",
)


@dataclass(frozen=True, slots=True)
class Forgotten:
    agent: str
    site: str
    paths: int
    alerts_resolved: int
    site_forgotten: bool


def forget(conn: Connection, agent: str, now_s: float) -> Forgotten | None:
    """Remove the agent; None when the collector knows no such agent."""
    # A report of this agent being applied by a replica meanwhile would re-create rows
    # after the deletes: wait for it, and make its successors wait for this.
    lock_agent(conn, agent)
    row = conn.execute("SELECT ref, site FROM agents WHERE id=?", (agent,)).fetchone()
    if row is None:
        return None
    ref, site = row
    (paths,) = conn.execute("SELECT count(*) FROM paths WHERE agent_ref=?", (ref,)).fetchone()
    for table in _AGENT_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE agent_ref=?", (ref,))
    conn.execute("DELETE FROM agents WHERE ref=?", (ref,))
    resolved = 0
    for (fp,) in conn.execute(
        "SELECT fingerprint FROM alerts WHERE agent=? AND ends_s IS NULL", (agent,)
    ).fetchall():
        resolved += journal.resolve(conn, fp, now_s)
    last_of_site = (
        conn.execute("SELECT 1 FROM agents WHERE site=? LIMIT 1", (site,)).fetchone() is None
    )
    if last_of_site:
        # Site-wide state only this agent fed: nothing would ever clear it.
        for table in ("circuit_redundancy", "asymmetries"):
            conn.execute(f"DELETE FROM {table} WHERE site=?", (site,))
        conn.execute("DELETE FROM sites WHERE name=?", (site,))
        for (fp,) in conn.execute(
            "SELECT fingerprint FROM alerts WHERE site=? AND ends_s IS NULL", (site,)
        ).fetchall():
            resolved += journal.resolve(conn, fp, now_s)
    journal.add_event(
        conn,
        now_s,
        "agent_forgotten",
        "info",
        f"{agent} forgotten: {paths} path(s) and their series removed, {resolved} alert(s)"
        " resolved" + (f"; it was the last agent of {site}" if last_of_site else ""),
        site=site,
        agent=agent,
    )
    return Forgotten(agent, site, paths, resolved, last_of_site)
