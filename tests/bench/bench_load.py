"""Fleet load: N agents reporting T targets every interval against one collector.

    .venv/bin/python -m tests.bench.bench_load                 # 2,000 agents x 30 targets / 30 s, 2 minutes
    .venv/bin/python -m tests.bench.bench_load --full          # the same for 10 minutes
    .venv/bin/python -m tests.bench.bench_load --agents 200 --duration-s 60
    .venv/bin/python -m tests.bench.bench_load --hostile 1 --rounds 2 --duration-s 180

Real time, not compressed: 2,000 agents every 30 s is 66.7 reports/s, each
agent at its own phase in the interval (as jittered agents spread out).  A
report that is not answered 2xx is retried after its Retry-After (as the
agent's spool does) -- until `--give-up-after-s` past the duration, if given:
a collector over capacity never catches up, and what is not in by then is
counted as left in the spools.  At the end the store must hold exactly one
row per acknowledged report.  Every 5 s the collector's CPU and RSS are sampled.
Storage growth per day is extrapolated from the growth after the first
report of every agent (when every agent, path and trace row exists).  Reports come from
tests/bench/bench_ingest.py (12-hop traces; 30 targets ~67 KB each).  Loopback only.
The collector runs with its default limits (rate, burst, in-flight per agent and
in all, body size and read deadline): an ordinary agent never reaches them.

`--hostile K` (issue 14): the last K of the N agents hold valid tokens and
behave as a compromised or broken agent does: the most costly report the
collector accepts (tests/reliability/costly.py: every cap reached, half of
the results reverse traces, traces as long as the body limit allows, a new
id and seq each time), sent back to back from `--hostile-connections`
connections each, never waiting for Retry-After, reconnecting whenever a
connection closes.  They run in a process of their own, so their work does
not slow the measuring clock.  The run then alternates phases without and
with them (`--rounds` pairs, a fresh collector each phase, the same N - K
ordinary agents in both) and prints the ordinary agents' latency and the
statuses each side got side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from tests.bench.bench_ingest import (
    PY,
    ROOT,
    add_tokens,
    free_port,
    report,
    stop,
    target_names,
    wait_http,
)
from tests.reliability.procs import cpu_s, rss_mib

SAMPLE_EVERY_S = 5.0
HOSTILE_WORKER = "--hostile-worker"  # argv[1] of the hostile agents' own process
PERCENTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))


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


ID_MARK = "ID-PLACEHOLDER-0000-0000-000000000000"
SEQ_MARK = 999999991


def split_body(doc: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    """A report split around its id and seq, so each send is two joins."""
    doc = dict(doc, id=ID_MARK, seq=SEQ_MARK)
    head, rest = json.dumps(doc).encode().split(ID_MARK.encode())
    mid, tail = rest.split(str(SEQ_MARK).encode())
    return head, mid, tail


def join_body(parts: tuple[bytes, bytes, bytes], seq: int) -> bytes:
    head, mid, tail = parts
    return head + str(uuid.uuid4()).encode() + mid + str(seq).encode() + tail


def templates(agents: list[str], n_targets: int) -> dict[str, tuple[bytes, bytes, bytes]]:
    """Per agent: its report split around its id and seq."""
    rng = random.Random(1)
    targets = target_names(n_targets)
    return {a: split_body(report(a, SEQ_MARK, targets, rng)) for a in agents}


def start_collector(tmp: Path, db: Path, port: int) -> tuple[subprocess.Popen, Path]:
    """`erpath-collector serve` with its default limits; its log in a file (a pipe
    nobody reads would stall it once full)."""
    cfg = tmp / "collector.toml"
    cfg.write_text(f'[server]\nport = {port}\n[store]\npath = "{db}"\n')
    log = tmp / "collector.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PY, "-m", "collector.cli", "--log-level", "WARNING", "serve", "--config", str(cfg)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc)
    except RuntimeError as exc:
        stop(proc)
        raise RuntimeError(f"{exc}\n{log.read_text(errors='replace')[-3000:]}") from None
    return proc, log


def percentiles_ms(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    # Nearest rank.
    return {
        k: round(xs[max(0, math.ceil(p * len(xs)) - 1)] * 1000, 1) if xs else 0.0
        for k, p in PERCENTILES
    }


# --------------------------------------------------------------------------- hostile agents


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status and Connection: close of one HTTP/1.1 response; its body read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status, length, close = int(lines[0].split()[1]), 0, False
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        key = key.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"connection" and value.strip().lower() == b"close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, close


async def hostile_agent(
    port: int, token: str, agent: str, duration_s: float, connections: int
) -> dict[str, Any]:
    """One hostile agent: the worst report from `connections` connections back to back,
    whatever the answer; a new connection as soon as one closes."""
    from tests.reliability.costly import worst_report

    parts = split_body(json.loads(worst_report(agent, 1)))
    statuses: Counter[str] = Counter()
    seq = int(time.time())  # above any earlier phase's
    sent_bytes = 0
    stop_at = time.monotonic() + duration_s

    def request() -> bytes:
        nonlocal seq, sent_bytes
        seq += 1
        body = join_body(parts, seq)
        sent_bytes += len(body)
        return (
            f"POST /api/v1/reports HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def lane() -> None:
        while time.monotonic() < stop_at:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                statuses["connect-failed"] += 1
                await asyncio.sleep(0.01)
                continue
            statuses["connections"] += 1
            sending: asyncio.Future[None] | None = None
            try:
                while time.monotonic() < stop_at:
                    writer.write(request())
                    sending = asyncio.ensure_future(writer.drain())
                    status, close = await _response(reader)
                    await sending
                    statuses[str(status)] += 1
                    if close:
                        break
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                statuses["connection-lost"] += 1
            finally:
                if sending is not None and not sending.done():
                    sending.cancel()
                writer.close()

    await asyncio.gather(*(lane() for _ in range(connections)))
    return {"agent": agent, "statuses": dict(statuses), "sent_mib": round(sent_bytes / 2**20)}


async def hostile_fleet(port: int, tokens: dict[str, str], duration_s: float, connections: int):
    return await asyncio.gather(
        *(hostile_agent(port, t, a, duration_s, connections) for a, t in tokens.items())
    )


def hostile_worker(argv: list[str]) -> int:
    """The hostile agents' process: arguments as JSON, results as JSON on stdout."""
    args = json.loads(argv[0])
    agents = asyncio.run(
        hostile_fleet(args["port"], args["tokens"], args["duration_s"], args["connections"])
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"agents": agents, "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}))
    return 0


def start_hostile(
    port: int, tokens: dict[str, str], duration_s: float, connections: int
) -> subprocess.Popen:
    args = {"port": port, "tokens": tokens, "duration_s": duration_s, "connections": connections}
    return subprocess.Popen(
        [PY, "-m", "tests.bench.bench_load", HOSTILE_WORKER, json.dumps(args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


# --------------------------------------------------------------------------- ordinary agents


async def fleet(
    url: str,
    tokens: dict[str, str],
    bodies: dict[str, tuple[bytes, bytes, bytes]],
    interval_s: float,
    duration_s: float,
    pid: int,
    db: Path,
    give_up_s: float | None = None,
) -> dict[str, Any]:
    agents = sorted(tokens)
    latencies: list[float] = []  # of the accepted request
    deliveries: list[float] = []  # from the first attempt to the acknowledgement
    statuses: Counter[str] = Counter()
    acked = retries = unacked = 0
    samples: list[dict[str, float]] = []
    warm: dict[str, float] = {}
    first_acked: set[str] = set()
    start = time.monotonic()
    cpu_start = cpu_s(pid)
    conn = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=60)

    async def agent(i: int, name: str, session: aiohttp.ClientSession) -> None:
        nonlocal acked, retries, unacked
        headers = {"Authorization": f"Bearer {tokens[name]}", "Content-Type": "application/json"}
        seq = 0
        next_at = start + i * interval_s / len(agents)
        while next_at < start + duration_s:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            seq += 1
            body = join_body(bodies[name], seq)
            first = time.monotonic()
            while True:
                t0 = time.monotonic()
                try:
                    async with session.post(url, data=body, headers=headers) as r:
                        await r.read()
                        status, retry_after = r.status, r.headers.get("Retry-After")
                except (TimeoutError, aiohttp.ClientError):
                    status, retry_after = None, None
                statuses[str(status)] += 1
                if status in (200, 201):
                    now = time.monotonic()
                    latencies.append(now - t0)
                    deliveries.append(now - first)
                    acked += 1
                    first_acked.add(name)
                    if not warm and len(first_acked) == len(agents):
                        # Every agent's first report (agent, path, trace rows) is in: steady state from here.
                        warm.update(t=time.monotonic(), bytes=used_bytes(db), acked=acked)
                    break
                retries += 1
                if give_up_s is not None and time.monotonic() >= start + duration_s + give_up_s:
                    # Over capacity for good: what is not in by now stays in the spool.
                    unacked += 1
                    return
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
    elapsed = end_t - start
    out: dict[str, Any] = {
        "acked": acked,
        "unacked_at_give_up": unacked,
        "retries": retries,
        "elapsed_s": round(elapsed, 1),
        "reports_per_s": round(acked / elapsed, 1),
        "latency_ms": percentiles_ms(latencies),
        "delivery_ms": percentiles_ms(deliveries),
        "statuses": dict(sorted(statuses.items())),
        "collector_cpu_pct": round(100 * (cpu_s(pid) - cpu_start) / elapsed, 1),
        "rss_mib_max": max((s["rss_mib"] for s in samples), default=0.0),
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


# --------------------------------------------------------------------------- one phase


def phase(
    label: str,
    seed_db: Path,
    tokens: dict[str, str],
    hostile: dict[str, str],
    bodies: dict[str, tuple[bytes, bytes, bytes]],
    args: argparse.Namespace,
    duration_s: float,
) -> dict[str, Any]:
    """A fresh collector on a copy of the token store; the ordinary agents, and the
    hostile ones if given, for `duration_s`."""
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        db = tmp / "load.db"
        shutil.copyfile(seed_db, db)
        port = free_port()
        proc, log = start_collector(tmp, db, port)
        costly = (
            start_hostile(port, hostile, duration_s, args.hostile_connections) if hostile else None
        )
        try:
            result = asyncio.run(
                fleet(
                    f"http://127.0.0.1:{port}/api/v1/reports",
                    tokens,
                    bodies,
                    args.interval_s,
                    duration_s,
                    proc.pid,
                    db,
                    args.give_up_after_s,
                )
            )
            if costly is not None:
                out, _ = costly.communicate(timeout=duration_s + 120)
                result["hostile"] = json.loads(out)
            result["collector_cpu_s"] = round(cpu_s(proc.pid), 1)
            result["rss_mib_end"] = round(rss_mib(proc.pid), 1)
        finally:
            if costly is not None and costly.poll() is None:
                costly.kill()
            stop(proc)
        conn = sqlite3.connect(db)
        stored = conn.execute("SELECT count(*) FROM observations").fetchone()[0]
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        conn.close()
        result["db_file_mib"] = round(
            sum(f.stat().st_size for f in tmp.glob("load.db*")) / 2**20, 1
        )
        text = log.read_text(errors="replace")
        result["collector_log"] = {
            "lines": text.count("\n"),
            "tracebacks": text.count("Traceback"),
            "last": text.strip().splitlines()[-1][:300] if text.strip() else "",
        }
    hostile_accepted = sum(
        a["statuses"].get("201", 0) for a in result.get("hostile", {}).get("agents", ())
    )
    result.update(
        phase=label,
        stored=stored,
        hostile_accepted=hostile_accepted,
        lost=result["acked"] + hostile_accepted - stored,
        integrity=integrity,
    )
    return result


def side_by_side(phases: list[dict[str, Any]]) -> str:
    rows = [
        "| phase | ordinary acked/s | request p50 / p95 / p99 / max ms | delivery p99 / max ms"
        " | ordinary 503 / 429 / other | hostile 201 / 429 / 503 / other | collector CPU % | RSS max MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        lat, dl, st = p["latency_ms"], p["delivery_ms"], p["statuses"]
        other = sum(v for k, v in st.items() if k not in ("200", "201", "503", "429"))
        hs: Counter[str] = Counter()
        for a in p.get("hostile", {}).get("agents", ()):
            hs.update(a["statuses"])
        h_other = sum(
            v for k, v in hs.items() if k.isdigit() and k not in ("200", "201", "429", "503")
        )
        hostile = f"{hs['201']} / {hs['429']} / {hs['503']} / {h_other}" if "hostile" in p else "—"
        rows.append(
            f"| {p['phase']} | {p['reports_per_s']} | {lat['p50']} / {lat['p95']} / {lat['p99']}"
            f" / {lat['max']} | {dl['p99']} / {dl['max']} | {st.get('503', 0)} / {st.get('429', 0)}"
            f" / {other} | {hostile} | {p['collector_cpu_pct']} | {p['rss_mib_max']} |"
        )
    return "\n".join(rows)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == HOSTILE_WORKER:
        return hostile_worker(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=2000)
    p.add_argument("--targets", type=int, default=30)
    p.add_argument("--interval-s", type=float, default=30.0)
    p.add_argument("--duration-s", type=float, default=120.0, help="per phase")
    p.add_argument("--full", action="store_true", help="run for 10 minutes (600 s)")
    p.add_argument(
        "--hostile",
        type=int,
        default=0,
        metavar="K",
        help="K of the agents are hostile; alternate phases without and with them",
    )
    p.add_argument("--hostile-connections", type=int, default=32, help="per hostile agent")
    p.add_argument("--rounds", type=int, default=1, help="pairs of phases (with --hostile)")
    p.add_argument(
        "--give-up-after-s",
        type=float,
        default=None,
        help="stop retrying this long after the duration (a collector over capacity never"
        " catches up); reports not acknowledged by then are counted, not lost",
    )
    args = p.parse_args()
    if not 0 <= args.hostile < args.agents:
        p.error(f"--hostile {args.hostile}: give 0 to {args.agents - 1} (fewer than --agents)")
    duration = 600.0 if args.full else args.duration_s
    names = [f"agent-{i:04d}" for i in range(args.agents)]
    t0 = time.perf_counter()
    ordinary = names[: len(names) - args.hostile]
    bodies = templates(ordinary, args.targets)
    size = len(b"".join(bodies[ordinary[0]])) + 36 + 1
    with tempfile.TemporaryDirectory() as tmpd:
        seed = Path(tmpd) / "seed.db"
        tokens = add_tokens(Path(tmpd), seed, names)
        setup_s = time.perf_counter() - t0
        plain = {a: tokens[a] for a in ordinary}
        hostile = {a: tokens[a] for a in names[len(ordinary) :]}
        plan = [("without", {}), ("with", hostile)] * args.rounds if hostile else [("run", {})]
        phases = []
        for i, (label, h) in enumerate(plan):
            name = f"{label} hostile ({i // 2 + 1})" if hostile else label
            print(f"phase {name}: {duration:g} s ...", file=sys.stderr, flush=True)
            phases.append(phase(name, seed, plain, h, bodies, args, duration))
    header = {
        "agents": args.agents,
        "ordinary_agents": len(ordinary),
        "hostile_agents": args.hostile,
        "hostile_connections": args.hostile_connections if args.hostile else 0,
        "targets": args.targets,
        "interval_s": args.interval_s,
        "duration_s_per_phase": duration,
        "report_bytes": size,
        "setup_s": round(setup_s, 1),
    }
    print(json.dumps(header, indent=1))
    ok = True
    for result in phases:
        samples = result.pop("samples")
        print(json.dumps(result, indent=1))
        print("samples (every 5 s):")
        for sample in samples:
            print(" ", json.dumps(sample))
        ok = ok and result["lost"] == 0 and result["integrity"] == "ok"
    print(side_by_side(phases))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
