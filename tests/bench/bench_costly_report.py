"""The long version of tests/reliability/test_costly_report.py: one agent sending the
most costly report the collector accepts at its full rate while 50 agents report
once a second, 120 s each way, against a real `erpath-collector serve`.

    .venv/bin/python -m tests.bench.bench_costly_report [seconds]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from tests.reliability.costly import run
from tests.reliability.procs import CollectorProcess, add_tokens

AGENTS = [f"br-{i:02d}" for i in range(50)]
COSTLY = "evil-1"


def main() -> int:
    duration_s = float(sys.argv[1]) if len(sys.argv) > 1 else 120.0
    with tempfile.TemporaryDirectory() as tmp:
        tokens = add_tokens(Path(tmp) / "collector.db", [*AGENTS, COSTLY])
        proc = CollectorProcess(Path(tmp), ingest="max_in_flight = 64")
        proc.start()
        try:
            quiet = asyncio.run(run(proc.url, tokens, AGENTS, duration_s, 1.0, first_seq=1))
            loud = asyncio.run(
                run(
                    proc.url, tokens, AGENTS, duration_s, 1.0, first_seq=10_000, costly_agent=COSTLY
                )
            )
        finally:
            proc.stop()
    for name, r in (("without", quiet), ("with", loud)):
        print(
            f"{name:8} reports {len(r.latencies_s):6}  p50 {r.p50_s * 1000:7.1f} ms"
            f"  p99 {r.p99_s * 1000:7.1f} ms  statuses {r.statuses}"
        )
    print(f"costly reports accepted {loud.costly_accepted}, refused {loud.costly_refused}")
    print(f"p99 ratio {loud.p99_s / quiet.p99_s:.2f} (limit 2.0)")
    return 0 if loud.p99_s <= 2 * quiet.p99_s else 1


if __name__ == "__main__":
    sys.exit(main())
