"""Writes of what happened: events, and the alerts' firing/resolved state.

Runs inside the writer's transaction, so an event, the path state that caused
it and the alert it raises commit together or not at all.  An alert's
`version` grows with every change the receivers must hear about; the sender
compares it with what each receiver acknowledged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from collector.alertrules import AlertSpec
from collector.dialect import Connection


def add_event(
    conn: Connection,
    at_s: float,
    kind: str,
    severity: str,
    summary: str,
    *,
    site: str | None = None,
    agent: str | None = None,
    target: str | None = None,
    circuit: str | None = None,
    driver: str | None = None,
    before: Any = None,
    after: Any = None,
    evidence: Iterable[str] = (),
) -> int:
    cur = conn.execute(
        "INSERT INTO events(at_s, kind, severity, site, agent, target, circuit, driver, summary,"
        " before, after, evidence) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
        (
            at_s,
            kind,
            severity,
            site,
            agent,
            target,
            circuit,
            driver,
            summary,
            None if before is None else json.dumps(before),
            None if after is None else json.dumps(after),
            json.dumps(list(evidence)),
        ),
    )
    return int(cur.fetchone()[0])


def fire(conn: Connection, spec: AlertSpec, now_s: float) -> bool:
    """Make the alert firing (or refresh its annotations); True when receivers must hear."""
    fp = spec.fingerprint
    annotations = json.dumps(spec.annotations, sort_keys=True)
    row = conn.execute(
        "SELECT ends_s, annotations FROM alerts WHERE fingerprint=?", (fp,)
    ).fetchone()
    labels = spec.labels
    if row is None:
        conn.execute(
            "INSERT INTO alerts(fingerprint, alertname, site, agent, target, labels, annotations,"
            " starts_s, ends_s, version, updated_s) VALUES (?,?,?,?,?,?,?,?,NULL,1,?)",
            (
                fp,
                spec.alertname,
                labels.get("site"),
                labels.get("agent"),
                labels.get("target"),
                json.dumps(labels, sort_keys=True),
                annotations,
                now_s,
                now_s,
            ),
        )
        return True
    ends_s, old_annotations = row
    if ends_s is not None:  # resolved before: a new firing episode
        conn.execute(
            "UPDATE alerts SET starts_s=?, ends_s=NULL, annotations=?, version=version+1, updated_s=?"
            " WHERE fingerprint=?",
            (now_s, annotations, now_s, fp),
        )
        return True
    if old_annotations != annotations:
        conn.execute(
            "UPDATE alerts SET annotations=?, version=version+1, updated_s=? WHERE fingerprint=?",
            (annotations, now_s, fp),
        )
        return True
    return False


def resolve(conn: Connection, fingerprint: str, now_s: float) -> bool:
    cur = conn.execute(
        "UPDATE alerts SET ends_s=?, version=version+1, updated_s=? WHERE fingerprint=? AND ends_s IS NULL",
        (now_s, now_s, fingerprint),
    )
    return cur.rowcount > 0


def firing(conn: Connection, alertname: str, **scope: str) -> list[tuple[str, dict[str, str]]]:
    """(fingerprint, labels) of firing alerts of one name, narrowed by site/agent/target."""
    sql = "SELECT fingerprint, labels FROM alerts WHERE alertname=? AND ends_s IS NULL"
    args: list[Any] = [alertname]
    for col in ("site", "agent", "target"):
        if col in scope:
            sql += f" AND {col}=?"
            args.append(scope[col])
    return [(fp, json.loads(labels)) for fp, labels in conn.execute(sql, args)]
