"""Benchmark: the whole `erpath-agent probe once` against traceroute and scamper, same run.

Run as root from the repository root (builds the lab if it is not up):

    .venv/bin/python tests/bench/bench_probe.py [--rounds N]

From the branch namespace, over every lab target address (30 Power Platform
service addresses and 3 CDN ones behind the silent hop), with the lab's ICMP
rate limits off, each tool is run as a whole process under GNU time:
- `traceroute -T -p 443 -n ADDR`, one address after another;
- `scamper -p 10000 -c "trace -P tcp -d 443 -q 1 -w 1" -i ADDR...`;
- `erpath-agent probe once --json --resolver <lab DNS> NAME...`: start-up,
  DNS, route lookup, TCP probe, trace, hop naming and verdicts.
Wall seconds, CPU seconds (user + system) and peak RSS are printed, the
median of N rounds; routers get time to refill their ICMP budget between
tools.  The hop lists themselves are compared in tests/bench/bench_trace.py
and in the lab tests.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.lab import Lab  # noqa: E402

AGENT = str(Path(sys.executable).with_name("erpath-agent"))
REFILL_S = 7.0


def timed(ns: str, argv: list[str]) -> tuple[float, float, float]:
    """(wall s, cpu s, peak RSS MB) of a command and its children, inside a namespace."""
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, "/usr/bin/time", "-f", "%e %U %S %M", *argv],
        capture_output=True,
        text=True,
    )
    wall, user, system, rss_kb = proc.stderr.strip().splitlines()[-1].split()
    return float(wall), float(user) + float(system), int(rss_kb) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    lab = Lab()
    if not lab.is_up():
        lab.up("er")
    env = lab.env()
    ns = lab.ns("branch")
    targets = env["targets"]
    addresses = [t["address"] for t in targets]
    names = [t["name"] for t in targets]
    dns = env["dns_servers"]["public"]["address"]
    loop = " ; ".join(f"traceroute -T -p 443 -n {a} >/dev/null" for a in addresses)
    tools = {
        "traceroute -T -p 443 -n (one after another)": ["sh", "-c", loop],
        "scamper -p 10000 trace -P tcp -q 1 -w 1": [
            "scamper",
            "-p",
            "10000",
            "-c",
            "trace -P tcp -d 443 -q 1 -w 1",
            "-i",
            *addresses,
        ],
        "erpath-agent probe once (whole process)": [
            AGENT,
            "probe",
            "once",
            "--json",
            "--resolver",
            dns,
            *names,
        ],
    }
    results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in tools}
    with lab.options(rate_limit=False):
        for _ in range(args.rounds):
            for name, argv in tools.items():
                time.sleep(REFILL_S)
                results[name].append(timed(ns, argv))
    print(
        f"{len(addresses)} targets from {ns}, ICMP rate limits off, median of {args.rounds} rounds\n"
    )
    print(f"{'tool':<48} {'wall s':>7} {'cpu s':>7} {'peak RSS MB':>12}")
    for name, runs in results.items():
        wall, cpu, rss = (statistics.median(x[i] for x in runs) for i in range(3))
        print(f"{name:<48} {wall:7.3f} {cpu:7.3f} {rss:12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
