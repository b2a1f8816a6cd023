"""Ingest with several collectors: SQLite, PostgreSQL with one replica, with two.

    .venv/bin/python -m tests.bench.bench_replicas --agents 200 --targets 30 --duration-s 20

Everything on loopback, on this machine: a throwaway PostgreSQL 15 cluster
(tests/pgcluster.py, fsync and synchronous_commit on), `erpath-collector serve`
processes, and one client process driving the same simulated agents as
`bench_ingest` (each sends its next report as soon as the last was answered,
waits out a 503/429's Retry-After).  With two replicas agent i always goes to
replica i mod 2, as a load balancer's round-robin spreads connections.  Each
configuration gets a fresh database.  CPU is counted per report for the
collectors together and for PostgreSQL's server processes, after a warm-up
(first contact of every agent) that is not measured; where the database's
busy sessions wait is sampled.  Numbers go to
BENCHMARKS.md ("Several collectors").
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tests.bench.bench_ingest import (
    PY,
    ROOT,
    bench_ingest,
    cpu_s,
    drive,
    free_port,
    report,
    stop,
    target_names,
    wait_http,
)
from tests.pgcluster import PgCluster
from tests.reliability.procs import add_tokens

ID_MARK = "ID-PLACEHOLDER-0000-0000-000000000000"
SEQ_MARK = "999999991"


def _server_pids(cluster: PgCluster) -> list[int]:
    """The postmaster and its children (backends, WAL writer, checkpointer …)."""
    postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    return [postmaster, *map(int, children)]


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # a backend that ended meanwhile
            total += cpu_s(pid)
    return total


def bench_postgresql(
    cluster: PgCluster,
    replicas: int,
    n_agents: int,
    n_targets: int,
    duration_s: float,
    warmup_s: float = 5.0,
) -> dict[str, Any]:
    db = cluster.create_database()
    passfile = str(db.passfile)
    rng = random.Random(1)
    agents = [f"agent-{i:04d}" for i in range(n_agents)]
    targets = target_names(n_targets)
    templates: dict[str, tuple[bytes, bytes, bytes]] = {}
    for a in agents:
        doc = report(a, int(SEQ_MARK), targets, rng)
        doc["id"] = ID_MARK
        head, rest = json.dumps(doc).encode().split(ID_MARK.encode())
        mid, tail = rest.split(SEQ_MARK.encode())
        templates[a] = (head, mid, tail)
    tokens = add_tokens(db.url, agents, passfile=passfile)
    out: dict[str, Any] = {"replicas": replicas, "agents": n_agents, "targets": n_targets}
    procs, ports = [], []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        try:
            for r in range(replicas):
                port = free_port()
                cfg = tmp / f"collector-{r}.toml"
                cfg.write_text(
                    f"[server]\nport = {port}\nbody_limit_bytes = 8388608\n"
                    f'[store]\nurl = "{db.url}"\npassfile = "{passfile}"\n'
                    "[ingest]\nrate_per_agent_per_s = 100000.0\nburst_per_agent = 100000\n"
                    "[detection]\nevaluate_interval_s = 5.0\n"
                )
                proc = _serve(cfg)
                wait_http(f"http://127.0.0.1:{port}/readyz", proc)
                procs.append(proc)
                ports.append(port)
            urls = [f"http://127.0.0.1:{p}/api/v1/reports" for p in ports]

            seqs = dict.fromkeys(agents, 0)  # across the warm-up and the measured run

            def request(i: int, agent: str, _seq: int):
                head, mid, tail = templates[agent]
                seqs[agent] += 1
                body = head + str(uuid.uuid4()).encode() + mid + str(seqs[agent]).encode() + tail
                headers = {
                    "Authorization": f"Bearer {tokens[agent]}",
                    "Content-Type": "application/json",
                }
                return "POST", urls[i % replicas], body, headers

            # First contact (200 agents, their sites and layouts inserted at once, each
            # waiting on the others' unique keys) is not the steady state: not measured.
            asyncio.run(drive(request, agents, warmup_s))
            server = _server_pids(cluster)
            collectors_before = _cpu_of([p.pid for p in procs])
            server_before = _cpu_of(server)
            waits: collections.Counter[str] = collections.Counter()
            sampling = threading.Event()
            sampler = threading.Thread(
                target=_sample_waits, args=(db.url, passfile, waits, sampling), daemon=True
            )
            sampler.start()
            before = _volume(db.url, passfile)
            try:
                out["ingest"] = asyncio.run(drive(request, agents, duration_s))
            finally:
                sampling.set()
                sampler.join()
            after = _volume(db.url, passfile)
            # What the database's busy sessions were doing, sampled every 0.2 s: running
            # (CPU), waiting for a row lock another transaction holds, for WAL flush …
            out["backend_samples"] = dict(waits.most_common())
            done = max(out["ingest"]["requests"], 1)
            # What each stored report costs the database: WAL written, observation bytes
            # (table and indexes) and commits — the capacity model's I/O figures.
            wal_b, observations_b, commits = (a - b for a, b in zip(after, before, strict=True))
            out["wal_bytes_per_report"] = round(wal_b / done)
            out["observation_bytes_per_report"] = round(observations_b / done, 1)
            out["commits_per_report"] = round(commits / done, 3)
            out["commits_per_s"] = round(commits / duration_s, 1)
            out["collector_cpu_ms_per_report"] = round(
                (_cpu_of([p.pid for p in procs]) - collectors_before) * 1000 / done, 2
            )
            out["postgresql_cpu_ms_per_report"] = round(
                (_cpu_of(_server_pids(cluster)) - server_before) * 1000 / done, 2
            )
        finally:
            for proc in procs:
                stop(proc)
    out["deadlocks"], out["commits"] = _database_stats(db.url, passfile)
    cluster.drop_database(db.name)
    return out


def _sample_waits(
    url: str, passfile: str, waits: collections.Counter[str], done: threading.Event
) -> None:
    import psycopg

    with psycopg.connect(url, passfile=passfile, autocommit=True) as conn:
        while not done.wait(0.2):
            for kind, event, query in conn.execute(
                "SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, ''), query"
                " FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'"
                " AND pid <> pg_backend_pid()"
            ).fetchall():
                # A lock wait names the statement that waits (its first words).
                what = " ".join(query.split()[:4]) if kind == "Lock" else ""
                waits[":".join(x for x in (kind, event, what) if x)] += 1


def _database_stats(url: str, passfile: str) -> tuple[int, int]:
    """Deadlocks PostgreSQL broke in this database, and transactions committed."""
    import psycopg

    time.sleep(1.0)  # backends report their statistics within a second of ending
    with psycopg.connect(url, passfile=passfile) as conn:
        row = conn.execute(
            "SELECT deadlocks, xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _volume(url: str, passfile: str) -> tuple[int, int, int]:
    """WAL position, the observations' bytes (with indexes) and commits so far."""
    import psycopg

    time.sleep(1.0)  # backends report their commits within a second
    with psycopg.connect(url, passfile=passfile) as conn:
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,"
            " pg_total_relation_size('observations'),"
            " (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _serve(cfg: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-m", "collector.cli", "--log-level", "WARNING", "serve", "--config", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--targets", type=int, default=30)
    p.add_argument("--duration-s", type=float, default=20.0)
    p.add_argument("--warmup-s", type=float, default=5.0, help="PostgreSQL: not measured")
    p.add_argument("--replicas", type=int, nargs="*", default=[1, 2])
    p.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = p.parse_args()
    os.chdir(ROOT)
    print(f"cpus: {os.cpu_count()}", flush=True)
    if not args.no_sqlite:
        sqlite = bench_ingest(args.agents, args.targets, args.duration_s, pushgateway_too=False)
        print(json.dumps({"sqlite": sqlite}, indent=1), flush=True)
    cluster = PgCluster()
    cluster.start()
    try:
        for n in args.replicas:
            result = bench_postgresql(
                cluster, n, args.agents, args.targets, args.duration_s, args.warmup_s
            )
            print(json.dumps({f"postgresql_{n}": result}, indent=1), flush=True)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
