"""Benchmark: load the real service tags file, then look addresses up.

Not a test (timings on a shared machine are not pass/fail): run it by hand

    .venv/bin/python tests/bench/bench_servicetags.py [path/to/ServiceTags_Public.json]

Targets: loading the real file (3,041 tags, 95,823 prefixes) under 1 s; a
lookup in microseconds.  Prints the median and the worst of several loads,
and per-lookup times for addresses inside Power Platform and Front Door
prefixes, inside AzureCloud only, and outside Azure.
"""

from __future__ import annotations

import ipaddress
import json
import random
import statistics
import sys
import time
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from agent.verdict.servicetags import ServiceTags  # noqa: E402

DEFAULT = REPO / ".." / "shared" / "data" / "ServiceTags_Public.json"


def _sample(doc: dict, name: str, n: int, rng: random.Random) -> list[str]:
    (tag,) = [v for v in doc["values"] if v["name"] == name]
    nets = [ipaddress.ip_network(p) for p in tag["properties"]["addressPrefixes"]]
    picks = rng.sample(nets, min(n, len(nets)))
    return [str(net[rng.randrange(net.num_addresses)]) for net in picks]


def main(path: Path) -> None:
    loads = []
    tags = None
    for _ in range(7):
        t = time.perf_counter()
        tags = ServiceTags.load(path)
        loads.append(time.perf_counter() - t)
    assert tags is not None
    print(f"file: {path.resolve()} (changeNumber {tags.change_number})")
    print(f"tags: {tags.tag_count}, prefixes: {tags.prefix_count}")
    print(
        f"load: median {statistics.median(loads) * 1e3:.0f} ms, "
        f"worst {max(loads) * 1e3:.0f} ms over {len(loads)} loads"
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
