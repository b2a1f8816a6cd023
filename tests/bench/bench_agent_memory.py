"""Benchmark: the agent's memory over many probe cycles (no growth), and CPU per cycle.

Run as root from the repository root (builds the lab if it is not up):

    .venv/bin/python tests/bench/bench_agent_memory.py [--cycles 1000]

Inside the branch namespace, one process runs the service's cycle exactly as
`erpath-agent run` does (the same DNS cache, hop namer, service tags and
report serialisation into a spool, with the service's modules loaded) over
the branch's targets, back to back with the lab's ICMP rate limits off, and
prints RSS after 10 cycles and after the last, peak RSS and CPU seconds per
cycle.  The config's [service_tags] file is the real ServiceTags_Public.json
(`--tags`, copied to a temporary directory where its index cache lives).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.lab import Lab  # noqa: E402
from tests.lab.agentconfig import write_config  # noqa: E402

REAL_TAGS = ROOT / ".." / "shared" / "data" / "ServiceTags_Public.json"

INNER = """
import json, resource, sys, tempfile, time
from pathlib import Path
from agent.config import load
from agent.measure.dns import HopNamer, resolve_many
from agent.measure.dnscache import DnsCache
from agent.cycle import ProbePlan, run_cycle
from agent.report import to_dict
from agent.service.spool import Spool
import agent.service.runner  # the service's own modules, loaded as `erpath-agent run` loads them

def rss_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024

config = load(sys.argv[1]); cycles = int(sys.argv[2])
plan = ProbePlan(targets=config.targets())
cache, namer = DnsCache(resolve_many), HopNamer(config.dns.resolvers, config.dns.timeout_s)
tags = config.load_service_tags()
spool = Spool(Path(tempfile.mkdtemp()), max_bytes=50_000_000, max_age_s=3600)
rss = {}
cpu0 = time.process_time(); t0 = time.perf_counter()
for seq in range(1, cycles + 1):
    report = run_cycle(config, plan, seq=seq, dns_cache=cache, namer=namer, service_tags=tags)
    item = spool.put(seq, report.id, json.dumps(to_dict(report)).encode())
    spool.ack(item)
    if seq in (10, cycles):
        rss[seq] = rss_mb()
cpu = time.process_time() - cpu0
print(json.dumps({"rss_10_mb": rss[10], "rss_last_mb": rss[cycles], "cycles": cycles,
                  "cpu_per_cycle_s": cpu / cycles, "wall_per_cycle_s": (time.perf_counter() - t0) / cycles,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


@contextlib.contextmanager
def _removed_after(directory: Path):
    try:
        yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--tags", type=Path, default=REAL_TAGS, help="the real service tags file")
    args = parser.parse_args()
    lab = Lab()
    if not lab.is_up():
        lab.up("er")
    work = Path(tempfile.mkdtemp(prefix="erpath-bench-memory-"))
    tags = work / "ServiceTags_Public.json"
    shutil.copyfile(args.tags, tags)
    config = write_config("branch", "er", work)
    text = re.sub(r'(?m)^file = ".*"$', f'file = "{tags}"', config.read_text(), count=1)
    config.write_text(text)
    with lab.options(rate_limit=False), _removed_after(work):
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                lab.ns("branch"),
                sys.executable,
                "-c",
                INNER,
                str(config),
                str(args.cycles),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        ).stdout
    print(out.strip())
    import json

    doc = json.loads(out)
    growth = (doc["rss_last_mb"] - doc["rss_10_mb"]) / doc["rss_10_mb"] * 100
    print(
        f"RSS after 10 cycles {doc['rss_10_mb']:.1f} MB, after {doc['cycles']} {doc['rss_last_mb']:.1f} MB "
        f"({growth:+.1f} %); peak {doc['peak_rss_mb']:.1f} MB; CPU {doc['cpu_per_cycle_s']:.3f} s/cycle, "
        f"wall {doc['wall_per_cycle_s']:.3f} s/cycle"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
