"""Benchmark: the whole `erpath-agent probe once` against traceroute and scamper, same run.

Run as root from the repository root (builds the lab if it is not up):

    .venv/bin/python tests/bench/bench_probe.py [--rounds N] [--tags FILE]
        [--scenario NAME] [--family 4|6|both]

`--scenario ipv6-er --family both` is the dual-stack case: every target's
IPv4 and IPv6 address (IPv6 over the circuit, IPv4 over the internet),
`traceroute -6 -T` for the IPv6 ones, scamper given both families, and the
agent run with `--family both`.

From the branch namespace, over every lab target address (30 Power Platform
service addresses and the CDN ones behind the silent hop), with the lab's
ICMP rate limits off, each tool is run as a whole process under GNU time:
- `traceroute -T -p 443 -n ADDR`, one address after another;
- `scamper -p 10000 -c "trace -P tcp -d 443 -q 1 -w 1" -i ADDR...`;
- the agent's Python starting and exiting (`python -c pass`), and
  `erpath-agent --help`: the floor under every command;
- `erpath-agent probe once --json --resolver <lab DNS> NAME...`: start-up,
  DNS, route lookup, TCP probe, trace, hop naming and verdicts;
- the same with the branch's config (`--config`) pointing [service_tags] at
  the real ServiceTags_Public.json (a temporary copy, its index cache built
  before the rounds, as it is after the agent's first run);
- `erpath-agent probe once --json --resolver <silent resolver> ADDR...`: no
  DNS for the targets, and hop naming asks the lab's misbehaving resolver
  switched to "never answer" (what hop naming costs when DNS is unreachable).
Wall seconds, CPU seconds (user + system) and peak RSS are printed, the
median of N rounds; routers get time to refill their ICMP budget between
tools.  The hop lists themselves are compared in tests/bench/bench_trace.py
and in the lab tests.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.verdict.servicetags import ServiceTags  # noqa: E402
from tests.lab import Lab  # noqa: E402
from tests.lab.agentconfig import write_config  # noqa: E402
from tests.lab.scenarios import SCENARIOS  # noqa: E402

AGENT = str(Path(sys.executable).with_name("erpath-agent"))
REAL_TAGS = ROOT / ".." / "shared" / "data" / "ServiceTags_Public.json"
REFILL_S = 7.0
FAMILY_WORDS = {"4": "IPv4", "6": "IPv6", "both": "IPv4 and IPv6"}


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
    parser.add_argument("--tags", type=Path, default=REAL_TAGS, help="the real service tags file")
    parser.add_argument(
        "--scenario",
        default="er",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help="the lab scenario (default er; ipv6-er: IPv6 over the circuit, IPv4 over the internet)",
    )
    parser.add_argument(
        "--family",
        choices=("4", "6", "both"),
        default="4",
        help="the target addresses measured: IPv4, IPv6 or both (the agent's --family)",
    )
    args = parser.parse_args()

    lab = Lab()
    if not lab.is_up():
        lab.up(args.scenario)
    elif lab.current_scenario != args.scenario:
        lab.scenario(args.scenario)
    env = lab.env()
    ns = lab.ns("branch")
    targets = env["targets"]
    addresses = []
    for t in targets:
        if args.family in ("4", "both"):
            addresses.append(t["address"])
        if args.family in ("6", "both") and t.get("address6"):
            addresses.append(t["address6"])
    family = [] if args.family == "4" else ["--family", args.family]
    names = [t["name"] for t in targets]
    dns = env["dns_servers"]["public"]["address"]
    silent_dns = env["dns_servers"]["bad"]["address"]
    work = Path(tempfile.mkdtemp(prefix="erpath-bench-probe-"))
    tags = work / "ServiceTags_Public.json"
    shutil.copyfile(args.tags, tags)
    ServiceTags.load(tags)  # writes the index cache, as the agent's first run does
    config = write_config("branch", args.scenario, work)
    text = re.sub(r'(?m)^file = ".*"$', f'file = "{tags}"', config.read_text(), count=1)
    config.write_text(text)
    loop = " ; ".join(
        f"traceroute {'-6 ' if ':' in a else ''}-T -p 443 -n {a} >/dev/null" for a in addresses
    )
    tools = {
        "traceroute [-6] -T -p 443 -n (one after another)": ["sh", "-c", loop],
        "scamper -p 10000 trace -P tcp -q 1 -w 1": [
            "scamper",
            "-p",
            "10000",
            "-c",
            "trace -P tcp -d 443 -q 1 -w 1",
            "-i",
            *addresses,
        ],
        "python -c pass (the agent's interpreter)": [sys.executable, "-c", "pass"],
        "erpath-agent --help": [AGENT, "--help"],
        "erpath-agent probe once (whole process)": [
            AGENT,
            "probe",
            "once",
            "--json",
            *family,
            "--resolver",
            dns,
            *names,
        ],
        "erpath-agent probe once --config, real tags file": [
            AGENT,
            "probe",
            "once",
            "--json",
            *family,
            "--config",
            str(config),
        ],
        "erpath-agent probe once, DNS never answers": [
            AGENT,
            "probe",
            "once",
            "--json",
            "--resolver",
            silent_dns,
            *addresses,
        ],
    }
    results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in tools}
    try:
        with lab.options(rate_limit=False):
            for _ in range(args.rounds):
                for name, argv in tools.items():
                    time.sleep(REFILL_S)
                    lab.set_dns_mode("silent" if "never answers" in name else "normal")
                    results[name].append(timed(ns, argv))
    finally:
        lab.set_dns_mode("normal")
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{len(addresses)} target addresses ({FAMILY_WORDS[args.family]}) from {ns}, scenario "
        f"{args.scenario}, ICMP rate limits off, median of {args.rounds} rounds\n"
    )
    print(f"{'tool':<52} {'wall s':>7} {'cpu s':>7} {'peak RSS MB':>12}  runs (wall s)")
    for name, runs in results.items():
        wall, cpu, rss = (statistics.median(x[i] for x in runs) for i in range(3))
        each = " ".join(f"{x[0]:.2f}" for x in runs)
        print(f"{name:<52} {wall:7.3f} {cpu:7.3f} {rss:12.1f}  {each}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
