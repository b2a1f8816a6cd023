"""Benchmark: load the real service tags file (built, and from its cache), then look addresses up.

Not a test (timings on a shared machine are not pass/fail): run it by hand

    .venv/bin/python tests/bench/bench_servicetags.py [path/to/ServiceTags_Public.json]

The file is copied into a temporary directory first, so its index cache
(`<file>.erpath-index`) is written there and never beside the shared data.
Each load runs in a fresh interpreter, whose peak RSS is printed beside a
bare interpreter's (same run):

- built by the helper: the first load of a new file version; a child
  process parses the JSON and writes the index cache, the agent reads it,
- built in process: the same where no helper can run (`helper=False`),
- cached: the index read from its cache file (every later load),

then per-lookup times for addresses inside Power Platform and Front Door
prefixes, inside AzureCloud only, and outside Azure.  Targets: loading under
1 s, lookups in microseconds, the agent's peak RSS with the real file
at most 48 MB (see bench_probe.py and bench_agent_memory.py).
"""

from __future__ import annotations

import ipaddress
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from agent.verdict import indexcache  # noqa: E402
from agent.verdict.servicetags import ServiceTags  # noqa: E402

DEFAULT = REPO / ".." / "shared" / "data" / "ServiceTags_Public.json"

# One load in a fresh interpreter: (seconds, peak RSS MB, peak RSS MB before loading).
# VmHWM, not ru_maxrss: a forked child's ru_maxrss starts at its parent's RSS.
_PEAK = """
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""
_INNER = (
    _PEAK
    + """
import json, sys, time
from agent.verdict.servicetags import ServiceTags
before = peak()
t = time.perf_counter()
tags = ServiceTags.load(sys.argv[1], helper=sys.argv[2] == "helper")
print(json.dumps([time.perf_counter() - t, peak(), before]))
"""
)


def _fresh_load(path: Path, how: str = "helper") -> tuple[float, float, float]:
    out = subprocess.run(
        [sys.executable, "-c", _INNER, str(path), how],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    seconds, peak, before = json.loads(out)
    return seconds, peak, before


def _bare_peak_mb() -> float:
    out = subprocess.run(
        [sys.executable, "-c", _PEAK + "print(peak())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out)


def _sample(doc: dict, name: str, n: int, rng: random.Random) -> list[str]:
    (tag,) = [v for v in doc["values"] if v["name"] == name]
    nets = [ipaddress.ip_network(p) for p in tag["properties"]["addressPrefixes"]]
    picks = rng.sample(nets, min(n, len(nets)))
    return [str(net[rng.randrange(net.num_addresses)]) for net in picks]


def main(source: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="erpath-bench-tags-") as tmp:
        path = Path(tmp) / "ServiceTags_Public.json"
        shutil.copyfile(source, path)
        cache = Path(indexcache.path_for(path))
        built, in_process, cached = [], [], []
        for _ in range(5):
            cache.unlink(missing_ok=True)
            in_process.append(_fresh_load(path, "in-process"))
            cache.unlink(missing_ok=True)
            built.append(_fresh_load(path))
            cached.append(_fresh_load(path))
        print(f"file: {source.resolve()} ({path.stat().st_size / 1e6:.1f} MB)")
        tags = ServiceTags.load(path)
        print(
            f"tags: {tags.tag_count}, prefixes: {tags.prefix_count} "
            f"(changeNumber {tags.change_number}); index cache {cache.stat().st_size / 1e6:.1f} MB"
        )
        print(f"bare interpreter peak RSS: {_bare_peak_mb():.1f} MB")
        loads = (
            ("built by the helper process", built),
            ("built in process", in_process),
            ("cached (index file)", cached),
        )
        for label, runs in loads:
            seconds = [r[0] for r in runs]
            print(
                f"load {label}: median {statistics.median(seconds) * 1e3:.0f} ms, "
                f"worst {max(seconds) * 1e3:.0f} ms of {len(runs)}; peak RSS "
                f"{statistics.median(r[1] for r in runs):.1f} MB "
                f"({statistics.median(r[2] for r in runs):.1f} MB before the load)"
            )

        doc = json.loads(path.read_text())
        rng = random.Random(1)
        groups = {
            "PowerPlatformInfra (IPv4+IPv6)": _sample(doc, "PowerPlatformInfra", 200, rng),
            "AzureFrontDoor.Frontend": _sample(doc, "AzureFrontDoor.Frontend", 100, rng),
            "AzureCloud": _sample(doc, "AzureCloud", 200, rng),
            "outside Azure": [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(200)]
            + ["10.1.2.3", "192.0.2.1", "2001:db8::1"],
        }
        for label, addresses in groups.items():
            rounds = 50
            seconds = timeit.timeit(
                lambda addresses=addresses: [tags.lookup(a) for a in addresses], number=rounds
            )
            per = seconds / (rounds * len(addresses))
            hits = sum(1 for a in addresses if tags.lookup(a))
            print(f"lookup {label}: {per * 1e6:.1f} us each ({hits}/{len(addresses)} in a tag)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
