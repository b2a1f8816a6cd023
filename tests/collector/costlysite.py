"""A site as costly to evaluate as the decoder alone allowed (issue 14 item 1): ~200k
advertised prefixes and 1,024 reverse paths towards its NAT addresses, written straight
into a store (the ingest caps refuse such a report now; stores written before may hold one)."""

from __future__ import annotations

import json
import sqlite3

from collector.state import REVERSE_ROLE

SITE = "costly"
PREFIXES = 200_000
REVERSE_PATHS = 1024
FORWARD_PATHS = 4


def facts(prefixes: int = PREFIXES) -> dict:
    # /28s out of 10.0.0.0/8 (an address plan, not a real one); the NAT pool is the first.
    nets = [f"10.{i >> 12 & 255}.{i >> 4 & 255}.{(i & 15) << 4}/28" for i in range(prefixes)]
    return {
        "circuits": [
            {"name": "c1", "advertised_prefixes": nets[: prefixes // 2]},
            {"name": "c2", "advertised_prefixes": nets[prefixes // 2 :]},
        ],
        "internet_edges": [],
    }


def _path(ref: int, target: str, role: str, cls: str, circuit: str | None, now_s: float):
    return (
        ref,
        target,
        role,
        cls,
        circuit,
        None,
        None,
        target if role == REVERSE_ROLE else None,
        "[]",
        "",
        "[]",
        now_s,
        1,
        now_s,
    )


def seed(conn: sqlite3.Connection, now_s: float, prefixes: int = PREFIXES) -> None:
    for ref, agent, role in ((1, "fwd-1", "branch"), (2, "az-1", "azure")):
        conn.execute(
            "INSERT INTO agents(ref, id, site, role, version, hostname, interval_s, last_seq,"
            " first_seen_s, last_seen_s) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (ref, agent, SITE if ref == 1 else "azure", role, "0", agent, 30.0, 1, now_s, now_s),
        )
    conn.execute(
        "INSERT INTO sites(name, facts, from_agent, updated_s) VALUES (?,?,?,?)",
        (SITE, json.dumps(facts(prefixes)), "fwd-1", now_s),
    )
    rows = [
        _path(1, f"api{i}.example.net", "api", "expressroute", "c1", now_s)
        for i in range(FORWARD_PATHS)
    ]
    # Reverse paths towards addresses in c1's prefixes, seen coming back over the internet.
    rows += [
        _path(2, f"10.0.{i >> 4 & 255}.{(i & 15) << 4 | 1}", REVERSE_ROLE, "internet", None, now_s)
        for i in range(REVERSE_PATHS)
    ]
    conn.executemany(
        "INSERT INTO paths(agent_ref, target, role, class, circuit, link, egress, address,"
        " addresses, signature, evidence, since_s, last_seq, last_received_s)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
