"""Decoding one report: the collector's cost per report before any storage.

    .venv/bin/python -m tests.bench.bench_decode [--targets 30] [--rounds 2000]

Decodes the same realistic report (bench_ingest's fleet report: 30 targets,
12 hops each) as `erpath.report/2` (structured evidence) and as
`erpath.report/1` (evidence sentences), and prints microseconds per report.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from typing import Any

from tests.bench.bench_ingest import report, target_names


def report_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """The /1 fleet report as an agent of /2 sends it: evidence as facts."""
    doc = copy.deepcopy(doc)
    doc["schema"] = "erpath.report/2"
    for res in doc["results"]:
        v = res["verdict"]
        if v["class"] == "expressroute":
            v["evidence"] = [
                {
                    "kind": "msee-hop",
                    "text": v["evidence"][0],
                    "circuit": "ams-1",
                    "link": "primary",
                    "ttl": 4,
                    "address": "203.0.113.2",
                }
            ]
        else:
            v["evidence"] = [
                {
                    "kind": "nat",
                    "text": v["evidence"][0],
                    "egress": "ams-inet",
                    "address": "192.0.2.10",
                }
            ]
    return doc


def per_report_us(decode: Any, doc: dict[str, Any], rounds: int) -> float:
    docs = [json.loads(json.dumps(doc)) for _ in range(8)]  # fresh objects, as ingest sees them
    for d in docs:
        decode(d)
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for i in range(rounds):
            decode(docs[i % 8])
        samples.append((time.perf_counter() - t) / rounds * 1e6)
    return statistics.median(samples)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", type=int, default=30)
    p.add_argument("--rounds", type=int, default=2000)
    args = p.parse_args()
    from agent.report import report_from_dict

    v1 = report("agent-0001", 1, target_names(args.targets), random.Random(7))
    v2 = report_v2(v1)
    out = {
        "targets": args.targets,
        "v2_us_per_report": round(per_report_us(report_from_dict, v2, args.rounds), 1),
        "v1_us_per_report": round(per_report_us(report_from_dict, v1, args.rounds), 1),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
