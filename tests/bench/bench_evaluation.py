"""One asymmetry evaluation of a costly site: ~200k advertised prefixes, 1,024 reverse paths.

    .venv/bin/python -m tests.bench.bench_evaluation [--prefixes 200000] [--sample 8]

Before (issue 14 item 1) every evaluation parsed every prefix for every reverse
path, on the writer thread, every 5 s; the figure for all 1,024 reverse paths is
extrapolated from `--sample` of them.  Now the prefixes are parsed once per
version of the site's facts (the first evaluation) and later evaluations look
each address up in the index; both run on the internal reader, the writer only
applies the outcome.  Prints seconds and prefixes parsed per evaluation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from collector import evaluate
from collector.evaluate import FactsCache
from collector.state import measured_asymmetries
from collector.store import Store
from tests.collector.costlysite import REVERSE_PATHS, seed
from tests.collector.test_evaluation_cost import SETTINGS


def before(conn: sqlite3.Connection, sample: int) -> float:
    """Seconds of the old pairing (a prefix parse per reverse path) for `sample` paths."""
    rows = conn.execute(evaluate._PATH_SELECT + " WHERE p.role = 'reverse' LIMIT ?", (sample,))
    reverse = [evaluate._site_path(r) for r in rows]
    facts = {
        n: evaluate.site_facts(json.loads(d))
        for n, d in conn.execute("SELECT name, facts FROM sites")
    }
    forward = {
        s: [
            evaluate._site_path(r)
            for r in conn.execute(
                evaluate._PATH_SELECT + " WHERE a.site = ? AND p.role != 'reverse'", (s,)
            )
        ]
        for s in facts
    }
    t0 = time.perf_counter()
    measured_asymmetries(facts, reverse, forward)
    return time.perf_counter() - t0


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefixes", type=int, default=200_000)
    ap.add_argument("--sample", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        store.open()
        try:
            now_s = time.time()
            await store.write(seed, now_s, args.prefixes)
            old_s = await store.read(before, args.sample) * REVERSE_PATHS / args.sample
            print(
                f"before: ~{old_s:.1f} s per evaluation on the writer (extrapolated from"
                f" {args.sample} of {REVERSE_PATHS} reverse paths), {args.prefixes} prefixes"
                f" parsed {REVERSE_PATHS} times"
            )
            cache = store.read_cache.setdefault("facts", FactsCache())
            for label in ("first evaluation (new facts)", "next evaluation (same facts)"):
                parsed0 = cache.prefixes_parsed
                t0 = time.perf_counter()
                await evaluate.run(store, now_s, SETTINGS)
                print(
                    f"now, {label}: {time.perf_counter() - t0:.2f} s, off the writer;"
                    f" prefixes parsed {cache.prefixes_parsed - parsed0}"
                )
        finally:
            store.close()


if __name__ == "__main__":
    asyncio.run(main())
