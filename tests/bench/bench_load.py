"""Fleet load: N agents reporting T targets every interval against one collector.

    .venv/bin/python -m tests.bench.bench_load                 # 2,000 agents x 30 targets / 30 s, 2 minutes
    .venv/bin/python -m tests.bench.bench_load --full          # the same for 10 minutes
    .venv/bin/python -m tests.bench.bench_load --agents 200 --duration-s 60

Real time, not compressed: 2,000 agents every 30 s is 66.7 reports/s, each
agent at its own phase in the interval (as jittered agents spread out).  A
report that is not answered 2xx is retried after its Retry-After (as the
agent's spool does); at the end the store must hold exactly one row per
acknowledged report.  Every 5 s the collector's CPU and RSS are sampled.
Storage growth per day is extrapolated from the growth after the first
report of every agent (when every agent, path and trace row exists).  Reports come from
tests/bench/bench_ingest.py (12-hop traces; 30 targets ~67 KB each).  Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests.bench.bench_ingest import (
    add_tokens,
    free_port,
    report,
    start_collector,
    stop,
    target_names,
)
from tests.reliability.procs import cpu_s, rss_mib

SAMPLE_EVERY_S = 5.0


def used_bytes(db: Path) -> int:
    """Bytes in use in the database (pages minus free pages), WAL content included."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = (
            conn.execute("PRAGMA page_count").fetchone()[0]
            - conn.execute("PRAGMA freelist_count").fetchone()[0]
        )
        return page * pages
    finally:
        conn.close()


def templates(agents: list[str], n_targets: int) -> dict[str, tuple[bytes, bytes, bytes]]:
    """Per agent: the report split around its id and seq, so each send is two joins."""
    rng = random.Random(1)
    targets = target_names(n_targets)
    out = {}
    for a in agents:
        doc = report(a, 999999991, targets, rng)
        doc["id"] = "ID-PLACEHOLDER-0000-0000-000000000000"
        head, rest = json.dumps(doc).encode().split(b"ID-PLACEHOLDER-0000-0000-000000000000")
        mid, tail = rest.split(b"999999991")
        out[a] = (head, mid, tail)
    return out


async def fleet(
    url: str,
    tokens: dict[str, str],
    bodies: dict[str, tuple[bytes, bytes, bytes]],
    interval_s: float,
    duration_s: float,
    pid: int,
    db: Path,
) -> dict[str, Any]:
    agents = sorted(tokens)
    latencies: list[float] = []
    acked = retries = 0
    samples: list[dict[str, float]] = []
    warm: dict[str, float] = {}
    first_acked: set[str] = set()
    start = time.monotonic()
    conn = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=60)

    async def agent(i: int, name: str, session: aiohttp.ClientSession) -> None:
        nonlocal acked, retries
        head, mid, tail = bodies[name]
        headers = {"Authorization": f"Bearer {tokens[name]}", "Content-Type": "application/json"}
        seq = 0
        next_at = start + i * interval_s / len(agents)
        while next_at < start + duration_s:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            seq += 1
            body = head + str(uuid.uuid4()).encode() + mid + str(seq).encode() + tail
            while True:
                t0 = time.monotonic()
                try:
                    async with session.post(url, data=body, headers=headers) as r:
                        await r.read()
                        status, retry_after = r.status, r.headers.get("Retry-After")
                except (TimeoutError, aiohttp.ClientError):
                    status, retry_after = None, None
                if status in (200, 201):
                    latencies.append(time.monotonic() - t0)
                    acked += 1
                    first_acked.add(name)
                    if not warm and len(first_acked) == len(agents):
                        # Every agent's first report (agent, path, trace rows) is in: steady state from here.
                        warm.update(t=time.monotonic(), bytes=used_bytes(db), acked=acked)
                    break
                retries += 1
                await asyncio.sleep(
                    float(retry_after) if retry_after and retry_after.isdigit() else 1.0
                )
            next_at += interval_s

    async def sampler() -> None:
        last_t, last_cpu = time.monotonic(), cpu_s(pid)
        while True:
            await asyncio.sleep(SAMPLE_EVERY_S)
            now, cpu = time.monotonic(), cpu_s(pid)
            samples.append(
                {
                    "t_s": round(now - start, 1),
                    "cpu_pct": round(100 * (cpu - last_cpu) / (now - last_t), 1),
                    "rss_mib": round(rss_mib(pid), 1),
                    "acked": acked,
                    "db_used_mib": round(used_bytes(db) / 2**20, 2),
                }
            )
            last_t, last_cpu = now, cpu

    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        watch = asyncio.ensure_future(sampler())
        await asyncio.gather(*(agent(i, a, session) for i, a in enumerate(agents)))
        end_t, end_bytes = time.monotonic(), used_bytes(db)
        watch.cancel()
    latencies.sort()

    def pct(p: float) -> float:  # nearest rank
        return latencies[max(0, math.ceil(p * len(latencies)) - 1)] if latencies else 0.0

    out: dict[str, Any] = {
        "acked": acked,
        "retries": retries,
        "elapsed_s": round(end_t - start, 1),
        "reports_per_s": round(acked / (end_t - start), 1),
        "latency_ms": {
            k: round(pct(p) * 1000, 1)
            for k, p in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999), ("max", 1.0))
        },
        "samples": samples,
    }
    if warm:
        per_s = (end_bytes - warm["bytes"]) / (end_t - warm["t"])
        out["db_growth"] = {
            "bytes_per_report": round((end_bytes - warm["bytes"]) / max(1, acked - warm["acked"])),
            "mib_per_hour": round(per_s * 3600 / 2**20, 1),
            "gib_per_day": round(per_s * 86400 / 2**30, 2),
            "gib_at_14_days_observations": round(per_s * 86400 * 14 / 2**30, 1),
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=2000)
    p.add_argument("--targets", type=int, default=30)
    p.add_argument("--interval-s", type=float, default=30.0)
    p.add_argument("--duration-s", type=float, default=120.0)
    p.add_argument("--full", action="store_true", help="run for 10 minutes (600 s)")
    args = p.parse_args()
    duration = 600.0 if args.full else args.duration_s
    agents = [f"agent-{i:04d}" for i in range(args.agents)]
    t0 = time.perf_counter()
    bodies = templates(agents, args.targets)
    size = len(b"".join(bodies[agents[0]])) + 36 + 1
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        db = tmp / "load.db"
        tokens = add_tokens(tmp, db, agents)
        port = free_port()
        proc = start_collector(tmp, db, port)
        setup_s = time.perf_counter() - t0
        try:
            result = asyncio.run(
                fleet(
                    f"http://127.0.0.1:{port}/api/v1/reports",
                    tokens,
                    bodies,
                    args.interval_s,
                    duration,
                    proc.pid,
                    db,
                )
            )
            result["collector_cpu_s"] = round(cpu_s(proc.pid), 1)
            result["rss_mib_end"] = round(rss_mib(proc.pid), 1)
        finally:
            stop(proc)
        conn = sqlite3.connect(db)
        stored = conn.execute("SELECT count(*) FROM observations").fetchone()[0]
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        conn.close()
        result["db_file_mib"] = round(
            sum(f.stat().st_size for f in tmp.glob("load.db*")) / 2**20, 1
        )
    summary = {
        "agents": args.agents,
        "targets": args.targets,
        "interval_s": args.interval_s,
        "duration_s": duration,
        "report_bytes": size,
        "setup_s": round(setup_s, 1),
        "stored": stored,
        "lost": result["acked"] - stored,
        "integrity": integrity,
        **result,
    }
    samples = summary.pop("samples")
    print(json.dumps(summary, indent=1))
    print("samples (every 5 s):")
    for sample in samples:
        print(" ", json.dumps(sample))
    return 0 if stored == result["acked"] and integrity == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
