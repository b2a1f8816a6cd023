"""One agent sending the most costly report the collector accepts, as fast as it is
allowed, while a fleet of ordinary agents reports: the ordinary agents' ingest
latency, with and without it.  Used by tests/reliability/test_costly_report.py
(short) and tests/bench/bench_costly_report.py (long)."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from collector import caps
from tests.collector.reports import SITE_FACTS, er, report, result, simple

BODY_LIMIT_BYTES = 4 * 1024 * 1024  # the collector's default body_limit_bytes


_WORST: dict[str, dict] = {}


def worst_report(agent: str, seq: int) -> bytes:
    """At every cap (results, circuits, prefixes, NAT addresses), half of the results
    reverse traces, each trace as long as fits the body limit; a new id each time."""
    if agent not in _WORST:
        _WORST[agent] = json.loads(_build_worst(agent))
    doc = dict(_WORST[agent], seq=seq, id=str(uuid.uuid4()))
    return json.dumps(doc).encode()


def _build_worst(agent: str, seq: int = 1) -> bytes:
    facts = copy.deepcopy(SITE_FACTS)
    c0, e0 = facts["circuits"][0], facts["internet_edges"][0]
    per = caps.MAX_PREFIXES // caps.MAX_CIRCUITS
    facts["circuits"] = [
        dict(c0, name=f"c{i}", advertised_prefixes=[f"198.51.{j}.{i * 16}/28" for j in range(per)])
        for i in range(caps.MAX_CIRCUITS)
    ]
    per_edge = caps.MAX_NAT_ADDRESSES // caps.MAX_INTERNET_EDGES
    facts["internet_edges"] = [
        dict(
            e0,
            name=f"inet{i}",
            nat_addresses=[f"192.0.2.{i * per_edge + j}" for j in range(per_edge)],
        )
        for i in range(min(caps.MAX_INTERNET_EDGES, 256 // per_edge))
    ]
    body = b""
    for hops in range(60, 1, -4):
        results = [
            result(
                f"t{i}.powerapps.com",
                er(),
                role="reverse" if i % 2 else "api",
                asns=tuple([8075] * hops),
            )
            for i in range(caps.MAX_RESULTS)
        ]
        body = json.dumps(report(agent, seq, results, facts=facts)).encode()
        if len(body) <= BODY_LIMIT_BYTES:
            return body
    raise AssertionError("no worst report fits the body limit")


@dataclass(frozen=True, slots=True)
class Run:
    latencies_s: tuple[float, ...]
    statuses: dict[int, int]
    costly_accepted: int
    costly_refused: int

    @property
    def p99_s(self) -> float:
        xs = sorted(self.latencies_s)
        return xs[min(len(xs) - 1, int(0.99 * len(xs)))]

    @property
    def p50_s(self) -> float:
        xs = sorted(self.latencies_s)
        return xs[len(xs) // 2]


async def hostile(url: str, token: str, agent: str, duration_s: float) -> dict[str, int]:
    """The costly agent: the worst report, back to back from as many connections as it
    may have in flight, waiting only as long as each 429's Retry-After says."""
    counts = {"accepted": 0, "refused": 0}
    stop_at = time.monotonic() + duration_s
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def lane(n: int) -> None:
            seq = int(time.time()) * 10 + n * 1_000_000_000
            while time.monotonic() < stop_at:
                body = worst_report(agent, seq)
                async with session.post(f"{url}/api/v1/reports", data=body, headers=headers) as r:
                    await r.read()
                seq += 1
                if r.status in (200, 201):
                    counts["accepted"] += 1
                else:
                    counts["refused"] += 1
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))

        await asyncio.gather(*(lane(n) for n in range(2)))
    return counts


def start_hostile(url: str, token: str, agent: str, duration_s: float) -> subprocess.Popen:
    """The costly agent in a process of its own: its JSON work must not slow the
    measuring process's clock."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.costly", url, token, agent, str(duration_s)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )


async def run(
    url: str,
    tokens: dict[str, str],
    agents: list[str],
    duration_s: float,
    interval_s: float,
    first_seq: int,
    costly_agent: str | None = None,
) -> Run:
    """Every agent reports once per interval, for `duration_s`; the costly agent (if
    any) meanwhile, from another process."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    costly = None
    if costly_agent is not None:
        costly = start_hostile(url, tokens[costly_agent], costly_agent, duration_s)
        await asyncio.sleep(1.0)  # its first reports are on their way
    stop_at = time.monotonic() + duration_s
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def ordinary(i: int, agent: str) -> None:
            headers = {
                "Authorization": f"Bearer {tokens[agent]}",
                "Content-Type": "application/json",
            }
            await asyncio.sleep(interval_s * i / len(agents))  # spread over the interval
            seq = first_seq
            while time.monotonic() < stop_at:
                body = json.dumps(simple(agent, seq, er())).encode()
                started = time.perf_counter()
                async with session.post(f"{url}/api/v1/reports", data=body, headers=headers) as r:
                    await r.read()
                latencies.append(time.perf_counter() - started)
                statuses[r.status] = statuses.get(r.status, 0) + 1
                seq += 1
                await asyncio.sleep(max(0.0, interval_s - (time.perf_counter() - started)))

        await asyncio.gather(*(ordinary(i, a) for i, a in enumerate(agents)))
    if costly is not None:
        out, _ = costly.communicate(timeout=120)
        counts = json.loads(out)
        return Run(tuple(latencies), statuses, counts["accepted"], counts["refused"])
    return Run(tuple(latencies), statuses, 0, 0)


if __name__ == "__main__":
    url, token, agent, duration = sys.argv[1:5]
    print(json.dumps(asyncio.run(hostile(url, token, agent, float(duration)))))
