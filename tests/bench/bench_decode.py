"""Decoding one report: the collector's cost per report before any storage.

    .venv/bin/python -m tests.bench.bench_decode [--targets 30] [--rounds 2000]

Decodes the same realistic report (bench_ingest's fleet report: 30 targets,
12 hops each) from its bytes, as `erpath.report/2` (structured evidence) and
as `erpath.report/1` (evidence sentences), two ways, and prints microseconds
per report:

- `reference`: json.loads and the reference decoder (`report_from_dict`), the
  /1 document upgraded with `to_dict` — what the collector did before msgspec;
- `collector`: what the collector does now (collector/routes.py
  `_decode_body`): msgspec straight into the model (agent/report_codec.py),
  the reference path only for what that refuses (/1 documents).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Any

from tests.bench.bench_ingest import report, target_names


def per_report_us(decode: Any, body: bytes, rounds: int) -> float:
    bodies = [bytes(bytearray(body)) for _ in range(8)]  # fresh objects, as ingest sees them
    for b in bodies:
        decode(b)
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for i in range(rounds):
            decode(bodies[i % 8])
        samples.append((time.perf_counter() - t) / rounds * 1e6)
    return statistics.median(samples)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", type=int, default=30)
    p.add_argument("--rounds", type=int, default=2000)
    args = p.parse_args()
    from agent.report import SCHEMA, report_from_dict, to_dict
    from collector.routes import _decode_body

    def reference(body: bytes) -> Any:
        doc = json.loads(body.decode("utf-8"))
        rep = report_from_dict(doc)
        if doc.get("schema", SCHEMA) != SCHEMA:
            doc = to_dict(rep)
        return doc, rep

    targets = target_names(args.targets)
    v2 = json.dumps(report("agent-0001", 1, targets, random.Random(7))).encode()
    v1 = json.dumps(report("agent-0001", 1, targets, random.Random(7), schema_1=True)).encode()
    assert _decode_body(v2)[1] == reference(v2)[1] and _decode_body(v1) == reference(v1)
    out: dict[str, Any] = {"targets": args.targets, "v2_bytes": len(v2), "v1_bytes": len(v1)}
    for name, decode in (("reference", reference), ("collector", _decode_body)):
        out[f"{name}_v2_us_per_report"] = round(per_report_us(decode, v2, args.rounds), 1)
        out[f"{name}_v1_us_per_report"] = round(per_report_us(decode, v1, args.rounds), 1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
