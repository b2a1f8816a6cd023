"""Collector benchmarks: ingest vs Pushgateway, /metrics at fleet scale, storage growth.

    .venv/bin/python -m tests.bench.bench_ingest            # all three
    .venv/bin/python -m tests.bench.bench_ingest ingest --agents 200 --duration-s 20
    .venv/bin/python -m tests.bench.bench_ingest metrics --agents 2000 --targets 30
    .venv/bin/python -m tests.bench.bench_ingest storage --agents 500 --cycles 12 --fleet 2000

Everything runs on loopback.  The collector and Debian's prometheus-pushgateway
run as separate processes; one aiohttp client process drives both with the
same 200 simulated agents, each sending its next report as soon as the last
one was answered.  Numbers go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


# --------------------------------------------------------------------------- fleet


def target_names(n: int) -> list[str]:
    base = [
        "api.powerapps.com",
        "make.powerapps.com",
        "api.flow.microsoft.com",
        "login.microsoftonline.com",
        "org.crm4.dynamics.com",
        "content.powerapps.com",
        "res.cdn.office.net",
        "graph.microsoft.com",
    ]
    return [
        base[i % len(base)] if i < len(base) else f"t{i}.{base[i % len(base)]}" for i in range(n)
    ]


def result(target: str, i: int, rng: random.Random, flip: bool = False) -> dict[str, Any]:
    er = not flip and i % 4 != 3
    verdict = (
        {
            "class": "expressroute",
            "circuit": "ams-1",
            "link": "primary",
            "egress": None,
            "evidence": [
                {
                    "kind": "msee-hop",
                    "text": "hop 4 203.0.113.2 is the MSEE of circuit ams-1 (primary)",
                    "circuit": "ams-1",
                    "link": "primary",
                    "ttl": 4,
                    "address": "203.0.113.2",
                }
            ],
        }
        if er
        else {
            "class": "internet",
            "circuit": None,
            "link": None,
            "egress": "ams-inet",
            "evidence": [
                {
                    "kind": "edge-hop",
                    "text": "egress via internet edge ams-inet (NAT 192.0.2.10)",
                    "egress": "ams-inet",
                    "ttl": 3,
                    "address": "192.0.2.10",
                }
            ],
        }
    )
    verdict.update(confidence=0.9, expected="expressroute" if i % 4 != 3 else "internet")
    verdict["matches_expected"] = verdict["expected"] == verdict["class"]
    asns = [65001, 65001, 65001, 12076, 12076, 8075, 8075, 8075, 8075, 8075, 8075, 8075]
    hops = [
        {
            "ttl": h + 1,
            "replies": [
                {
                    "address": f"10.{i}.{h}.{rng.randint(1, 2)}",
                    "rtt_s": 0.001 * (h + 1),
                    "kind": "time-exceeded",
                    "asn": asn,
                    "ptr": None,
                }
            ],
        }
        for h, asn in enumerate(asns)
    ]
    address = f"198.18.{i}.10"
    return {
        "target": target,
        "role": "api",
        "port": 443,
        "address": address,
        "dns": {
            "cname_chain": [],
            "addresses": [address],
            "ttl_s": 300,
            "duration_s": 0.004 + rng.random() / 100,
        },
        "route": {
            "interface": "eth0",
            "gateway": "10.0.0.1",
            "source": "10.0.0.5",
            "protocol": "bgp",
            "duration_s": 0.0002,
        },
        "tcp": {
            "port": 443,
            "state": "open",
            "method": "connect",
            "connect_s": 0.01 + rng.random() / 50,
            "duration_s": 0.02,
        },
        "trace": {"protocol": "tcp", "flow": 1, "reached": True, "hops": hops, "duration_s": 1.2},
        "verdict": verdict,
        "findings": [],
    }


def report(
    agent: str,
    seq: int,
    targets: list[str],
    rng: random.Random,
    flip_every: int = 0,
    interval_s: float = 30.0,
    schema_1: bool = False,
) -> dict[str, Any]:
    """A report as the current agent sends it, or as an erpath.report/1 agent did
    (`schema_1`: evidence as sentences, upgraded by the collector)."""
    flip = bool(flip_every) and (seq // 2) % flip_every == 0 and seq > 2
    doc = {
        "schema": "erpath.report/2",
        "id": str(uuid.uuid4()),
        "seq": seq,
        "agent": {
            "id": agent,
            "site": f"site-{int(agent.split('-')[1]) % 50}",
            "role": "branch",
            "version": "0.1.0",
            "hostname": agent,
        },
        "started_at": "2024-05-01T10:00:00Z",
        "duration_s": 3.1,
        "interval_s": interval_s,
        "site": {
            "circuits": [
                {
                    "name": "ams-1",
                    "location": "Amsterdam",
                    "sku": "standard",
                    "primary_subnet": "203.0.113.0/30",
                    "secondary_subnet": "203.0.113.4/30",
                    "ce_addresses": ["203.0.113.1"],
                    "advertised_prefixes": ["198.51.100.0/28"],
                }
            ],
            "internet_edges": [
                {"name": "ams-inet", "nat_addresses": ["192.0.2.10"], "hop_addresses": []}
            ],
        },
        "health": {"cycle_s": 3.1, "spool_reports": 0, "dropped_reports_total": 0},
        "results": [result(t, i, rng, flip and i == 0) for i, t in enumerate(targets)],
    }
    if schema_1:
        doc["schema"] = "erpath.report/1"
        for r in doc["results"]:
            r["verdict"]["evidence"] = [e["text"] for e in r["verdict"]["evidence"]]
    return doc


def pushgateway_group(doc: dict[str, Any]) -> bytes:
    """The same measurements as a Pushgateway metric group (text format)."""
    lines = [
        "# TYPE erpath_tcp_connect_seconds gauge",
        "# TYPE erpath_dns_resolve_seconds gauge",
        "# TYPE erpath_trace_hops gauge",
        "# TYPE erpath_path_info gauge",
    ]
    for r in doc["results"]:
        v = r["verdict"]
        t = r["target"]
        lines.append(
            f'erpath_tcp_connect_seconds{{target="{t}",class="{v["class"]}"}} {r["tcp"]["connect_s"]}'
        )
        lines.append(f'erpath_dns_resolve_seconds{{target="{t}"}} {r["dns"]["duration_s"]}')
        lines.append(f'erpath_trace_hops{{target="{t}"}} {len(r["trace"]["hops"])}')
        lines.append(
            f'erpath_path_info{{target="{t}",class="{v["class"]}",circuit="{v["circuit"] or ""}",'
            f'link="{v["link"] or ""}",egress="{v["egress"] or ""}"}} 1'
        )
    return ("\n".join(lines) + "\n").encode()


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# Run in the collector's process by `--profile`: every thread (event loop, writer,
# decoders) gets its own cProfile, merged into one pstats file at exit.
_PROFILED = """
import atexit, cProfile, sys, threading, time
profiles = []
def hook(frame, event, arg):
    p = cProfile.Profile(time.thread_time)  # CPU time: waits for the GIL are not work
    profiles.append(p)
    p.enable()  # replaces this hook in this thread
threading.setprofile(hook)
def dump():
    import pstats
    stats = None
    for p in profiles:
        p.create_stats()
        if stats is None:
            stats = pstats.Stats(p)
        else:
            stats.add(p)
    if stats is not None:
        stats.dump_stats(sys.argv[1])
atexit.register(dump)
main_profile = cProfile.Profile(time.thread_time)
profiles.append(main_profile)
main_profile.enable()
from collector.cli import main
sys.exit(main(sys.argv[2:]))
"""


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_collector(
    tmp: Path, db: Path, port: int, profile: Path | None = None
) -> subprocess.Popen:
    cfg = tmp / "collector.toml"
    cfg.write_text(
        f"[server]\nport = {port}\nbody_limit_bytes = 8388608\n"
        f'[store]\npath = "{db}"\n'
        "[ingest]\nrate_per_agent_per_s = 100000.0\nburst_per_agent = 100000\n"
        "[detection]\nevaluate_interval_s = 5.0\n"
    )
    args = ["--log-level", "WARNING", "serve", "--config", str(cfg)]
    command = (
        [PY, "-c", _PROFILED, str(profile), *args]
        if profile
        else [PY, "-m", "collector.cli", *args]
    )
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_http(f"http://127.0.0.1:{port}/readyz", proc)
    return proc


def add_tokens(tmp: Path, db: Path, agents: list[str]) -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    from collector import auth
    from collector.store import Store

    store = Store(db)
    store.open()
    tokens = {}
    for a in agents:
        tokens[a] = store.write_sync(auth.add, a, time.time())[1]
    store.close()
    return tokens


def wait_http(url: str, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args} exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not up")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


# --------------------------------------------------------------------------- ingest benchmark


async def drive(make_request, agents: list[str], duration_s: float) -> dict[str, Any]:
    """Each agent sends its next report as soon as the last one was answered; a 503 or
    429 is waited out for its Retry-After (as the agent's sender does) and sent again."""
    latencies: list[float] = []
    errors = shed = 0
    stop_at = time.perf_counter() + duration_s
    conn = aiohttp.TCPConnector(limit=len(agents) + 10)
    async with aiohttp.ClientSession(connector=conn) as session:

        async def agent_loop(i: int, agent: str) -> None:
            nonlocal errors, shed
            seq = 0
            while time.perf_counter() < stop_at:
                seq += 1
                method, url, body, headers = make_request(i, agent, seq)
                t0 = time.perf_counter()
                retry_after_s = 0.0
                try:
                    async with session.request(method, url, data=body, headers=headers) as resp:
                        await resp.read()
                        ok = resp.status < 300
                        if resp.status in (429, 503):
                            retry_after_s = float(resp.headers.get("Retry-After", "1"))
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                elif retry_after_s:
                    shed += 1
                    await asyncio.sleep(min(retry_after_s, max(0.0, stop_at - time.perf_counter())))
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(agent_loop(i, a) for i, a in enumerate(agents)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "requests": len(latencies),
        "errors": errors,
        "shed_503_429": shed,
        "elapsed_s": round(elapsed, 2),
        "per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
    }


def bench_ingest(
    n_agents: int,
    n_targets: int,
    duration_s: float,
    profile: Path | None = None,
    pushgateway_too: bool = True,
    schema_1: bool = False,
) -> dict[str, Any]:
    pushgateway = shutil.which("prometheus-pushgateway") if pushgateway_too else None
    rng = random.Random(1)
    agents = [f"agent-{i:04d}" for i in range(n_agents)]
    targets = target_names(n_targets)
    # Pre-render one body per agent with placeholders: the client must not be the bottleneck.
    templates: dict[str, tuple[bytes, bytes, bytes]] = {}
    groups: dict[str, bytes] = {}
    for a in agents:
        doc = report(a, 999999991, targets, rng, schema_1=schema_1)
        doc["id"] = "ID-PLACEHOLDER-0000-0000-000000000000"
        raw = json.dumps(doc).encode()
        head, rest = raw.split(b"ID-PLACEHOLDER-0000-0000-000000000000")
        mid, tail = rest.split(b"999999991")
        templates[a] = (head, mid, tail)
        groups[a] = pushgateway_group(doc)
    size = len(b"".join(templates[agents[0]])) + 36
    out: dict[str, Any] = {
        "agents": n_agents,
        "targets": n_targets,
        "report_bytes": size,
        "group_bytes": len(groups[agents[0]]),
        "duration_s": duration_s,
        "schema": "erpath.report/1" if schema_1 else "erpath.report/2",
    }
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        db = tmp / "bench.db"
        tokens = add_tokens(tmp, db, agents)
        port = free_port()
        proc = start_collector(tmp, db, port, profile)
        url = f"http://127.0.0.1:{port}/api/v1/reports"

        def collector_request(i: int, agent: str, seq: int):
            head, mid, tail = templates[agent]
            body = head + str(uuid.uuid4()).encode() + mid + str(seq).encode() + tail
            return (
                "POST",
                url,
                body,
                {"Authorization": f"Bearer {tokens[agent]}", "Content-Type": "application/json"},
            )

        try:
            cpu_before = cpu_s(proc.pid)
            out["collector"] = asyncio.run(drive(collector_request, agents, duration_s))
            out["collector"]["cpu_ms_per_report"] = round(
                (cpu_s(proc.pid) - cpu_before) * 1000 / max(out["collector"]["requests"], 1), 2
            )
            out["collector"]["rss_mib"] = round(rss_mib(proc.pid), 1)
        finally:
            stop(proc)
        out["collector"]["db_mib"] = round(
            sum(p.stat().st_size for p in tmp.glob("bench.db*")) / 2**20, 1
        )

        if pushgateway:
            pport = free_port()
            pg = subprocess.Popen(
                [pushgateway, f"--web.listen-address=127.0.0.1:{pport}", "--log.level=warn"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                wait_http(f"http://127.0.0.1:{pport}/-/ready", pg)
                cpu_before = cpu_s(pg.pid)
                base = f"http://127.0.0.1:{pport}/metrics/job/erpath/agent"

                def pg_request(i: int, agent: str, seq: int):
                    return (
                        "PUT",
                        f"{base}/{agent}",
                        groups[agent],
                        {"Content-Type": "text/plain; version=0.0.4"},
                    )

                out["pushgateway"] = asyncio.run(drive(pg_request, agents, duration_s))
                out["pushgateway"]["cpu_ms_per_report"] = round(
                    (cpu_s(pg.pid) - cpu_before) * 1000 / max(out["pushgateway"]["requests"], 1), 2
                )
                out["pushgateway"]["rss_mib"] = round(rss_mib(pg.pid), 1)
            finally:
                stop(pg)
            out["throughput_ratio"] = round(
                out["collector"]["per_s"] / max(out["pushgateway"]["per_s"], 1e-9), 2
            )
        elif pushgateway_too:
            out["pushgateway"] = "prometheus-pushgateway not installed"
    return out


# --------------------------------------------------------------------------- store filling (in process)


def _used_bytes(conn: Any) -> int:
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = (
        conn.execute("PRAGMA page_count").fetchone()[0]
        - conn.execute("PRAGMA freelist_count").fetchone()[0]
    )
    return page * pages


def fill(
    db: Path,
    agents: int,
    n_targets: int,
    cycles: int,
    interval_s: float,
    flip_every: int,
    sizes_at: tuple[int, ...] = (),
) -> dict[int, int]:
    """Ingest cycles of reports straight through the writer (no HTTP) with a fake clock."""
    sys.path.insert(0, str(ROOT))
    from agent.report import report_from_dict
    from collector import ingest
    from collector.alertrules import Links
    from collector.store import Store

    settings = ingest.Settings(2, Links("https://rb", "https://dash"), interval_s)
    store = Store(db)
    store.open()
    rng = random.Random(7)
    targets = target_names(n_targets)
    t0 = time.time() - cycles * interval_s
    sizes: dict[int, int] = {}
    try:
        for cycle in range(1, cycles + 1):
            futures = []
            for a in range(agents):
                doc = report(f"agent-{a:04d}", cycle, targets, rng, flip_every, interval_s)
                body = json.dumps(doc).encode()
                prepared = ingest.prepare(doc, report_from_dict(doc), body)
                futures.append(
                    store.submit(
                        ingest.apply, store.cache, prepared, t0 + cycle * interval_s, settings
                    )
                )
            for f in futures:
                f.result()
            if cycle in sizes_at:
                sizes[cycle] = store.write_sync(_used_bytes)
    finally:
        store.close()
    sizes[-1] = Path(db).stat().st_size
    return sizes


def bench_metrics(agents: int, n_targets: int) -> dict[str, Any]:
    import urllib.request

    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        db = tmp / "fleet.db"
        t0 = time.perf_counter()
        fill(db, agents, n_targets, cycles=2, interval_s=30.0, flip_every=0)
        fill_s = time.perf_counter() - t0
        port = free_port()
        proc = start_collector(tmp, db, port)
        try:
            rss_before = rss_mib(proc.pid)
            times, size = [], 0
            for _ in range(5):
                t = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as resp:
                    size = len(resp.read())
                times.append(time.perf_counter() - t)
            rss_after = rss_mib(proc.pid)
        finally:
            stop(proc)
    return {
        "agents": agents,
        "targets": n_targets,
        "paths": agents * n_targets,
        "fill_s": round(fill_s, 1),
        "scrape_s_first": round(times[0], 2),
        "scrape_s_median": round(statistics.median(times), 2),
        "scrape_s_max": round(max(times), 2),
        "exposition_mib": round(size / 2**20, 1),
        "rss_mib_idle": round(rss_before, 1),
        "rss_mib_after_scrapes": round(rss_after, 1),
    }


def bench_storage(
    agents: int, n_targets: int, cycles: int, interval_s: float, fleet: int, flip_every: int = 0
) -> dict[str, Any]:
    warm = 2
    with tempfile.TemporaryDirectory() as tmpd:
        db = Path(tmpd) / "growth.db"
        t0 = time.perf_counter()
        # flip_every=N: one target of every agent flips every 2N cycles (traces and events).
        sizes = fill(
            db,
            agents,
            n_targets,
            cycles,
            interval_s,
            flip_every=flip_every,
            sizes_at=(warm, cycles),
        )
        elapsed = time.perf_counter() - t0
    reports = agents * (cycles - warm)
    per_report = (sizes[cycles] - sizes[warm]) / reports
    per_day_reports = fleet * 86400 / interval_s  # extrapolated to the whole fleet
    per_day = per_report * per_day_reports
    return {
        "agents_simulated": agents,
        "fleet": fleet,
        "targets": n_targets,
        "interval_s": interval_s,
        "cycles": cycles,
        "flip_every": flip_every,
        "simulated_s": cycles * interval_s,
        "wall_s": round(elapsed, 1),
        "ingest_reports_per_s_in_process": round(agents * cycles / elapsed, 1),
        "bytes_per_report": round(per_report),
        "reports_per_day": int(per_day_reports),
        "gib_per_day": round(per_day / 2**30, 2),
        "gib_at_14_days_observations": round(per_day * 14 / 2**30, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "what",
        nargs="*",
        default=["ingest", "metrics", "storage"],
        choices=["ingest", "metrics", "storage"],
    )
    p.add_argument("--agents", type=int)
    p.add_argument("--targets", type=int, default=30)
    p.add_argument("--duration-s", type=float, default=20.0)
    p.add_argument("--cycles", type=int, default=12)
    p.add_argument(
        "--fleet", type=int, default=2000, help="storage: extrapolate to this many agents"
    )
    p.add_argument("--flip-every", type=int, default=0, help="storage: churn, see bench_storage")
    p.add_argument(
        "--profile",
        type=Path,
        help="ingest: run the collector under cProfile (every thread) and write pstats here",
    )
    p.add_argument("--no-pushgateway", action="store_true", help="ingest: the collector alone")
    p.add_argument(
        "--schema-1", action="store_true", help="ingest: reports as erpath.report/1 agents send"
    )
    args = p.parse_args()
    os.chdir(ROOT)
    results: dict[str, Any] = {}
    for what in args.what:
        if what == "ingest":
            results["ingest"] = bench_ingest(
                args.agents or 200,
                args.targets,
                args.duration_s,
                args.profile.resolve() if args.profile else None,
                not args.no_pushgateway,
                args.schema_1,
            )
        elif what == "metrics":
            results["metrics"] = bench_metrics(args.agents or 2000, args.targets)
        else:
            results["storage"] = bench_storage(
                args.agents or 500, args.targets, args.cycles, 30.0, args.fleet, args.flip_every
            )
        print(json.dumps({what: results[what]}, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
