"""Benchmark: erpath's traceroute against Debian's traceroute and scamper in the lab.

Run as root from the repository root (builds the lab if it is not up):

    ERPATH_LAB_PREFIX=trc .venv/bin/python tests/bench/bench_trace.py

From the branch agent to every lab target (the CDN ones cross the silent
hop and the ECMP pair):

1. ICMP rate limits off: wall time of `traceroute -T -p 443 -n` run over the
   targets one after another, of one `scamper -p 10000 -c "trace -P tcp -d 443
   -q 1 -w 1"` over all of them, and of erpath (tracing phase, and the whole
   process: start-up, TCP probe and trace); hop lists compared with
   traceroute's (same source port, so the same ECMP member).
2. Rate limits on (the lab default): hops each tool finds, against the
   rate-limit-off truth; routers are given 7 s to refill before each tool.
3. Multi-flow at the MSEE (`--msee`, scenario er-active-active, rate limits
   off then on): erpath with one flow (no peering subnets: before) and with
   the circuits' peering subnets (after: up to 6 flows at the MSEE hop), and
   with 6 Paris flows at every hop (what `flows=6` did before), probes sent (counted at the engine's socket seam) and wall time, against
   scamper running `trace` once per flow (6 source ports) over the same
   targets; how many targets saw both links of the circuit.

    ERPATH_LAB_PREFIX=trc .venv/bin/python tests/bench/bench_trace.py --msee

4. IPv6 (`--ipv6`, a throwaway set of namespaces from
   tests/agent/measure/trace/v6net.py, not the shared lab: client, a router
   splitting flows over two more by flow label, one before the server, 30
   service addresses on it): `traceroute -6 -T -p 443 -n` one after another
   (with our source port and flow label: the truth), scamper's tcp trace
   over IPv6, and erpath, rate limits off then on (the kernel's ICMPv6
   default: a burst of 6, then one per 250 ms over a /64 route back).

    ERPATH_LAB_PREFIX=v6trace .venv/bin/python tests/bench/bench_trace.py --ipv6
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SPORT = 47000
REFILL_S = 7.0
_ADDR = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b|\b[0-9a-f]{1,4}(?::[0-9a-f]{0,4}){2,7}(?![\w:])")

Hops = dict[int, frozenset[str]]  # ttl -> addresses that answered


def _inner(addresses: list[str]) -> None:
    """Runs inside the branch namespace: one erpath probe, results as JSON on stdout."""
    import resource

    t0 = time.perf_counter()
    from agent.measure import tcp, trace

    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    tcp_results = tcp.probe_tcp([(a, 443) for a in addresses], 2.0)
    t_tcp = time.perf_counter() - t1
    t2 = time.perf_counter()
    traces = trace.trace_many(
        [trace.TraceRequest(a, 443) for a in addresses],
        trace.TraceOptions(source_port=SPORT, probes_per_hop=3),
    )
    t_trace = time.perf_counter() - t2
    out = {
        "import_s": t_import,
        "tcp_s": t_tcp,
        "trace_s": t_trace,
        "total_s": time.perf_counter() - t0,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "open": sum(1 for r in tcp_results.values() if r.state == "open"),
        "hops": {
            k[0]: {h.ttl: sorted(h.addresses) for h in t.hops if h.replies}
            for k, t in traces.items()
        },
    }
    print(json.dumps(out))


PEERING = ("192.0.2.0/30", "192.0.2.4/30", "192.0.2.8/30")  # the lab's circuits' link /30s
MSEE_FLOWS = 6


def _inner_msee(addresses: list[str]) -> None:
    """Inside the branch namespace: erpath with one flow, then with more at the MSEE hop."""
    import ipaddress

    from agent.measure import trace
    from agent.measure.trace import engine, io

    sent = [0]

    class Counting:
        def __init__(self, protocols, families):
            self._s = io.REAL.open_sockets(protocols, families)

        def send(self, packet, destination):
            sent[0] += 1
            return self._s.send(packet, destination)

        def receive(self, timeout_s):
            return self._s.receive(timeout_s)

        def close(self):
            self._s.close()

    counting = io.Io(
        now=io.REAL.now,
        open_sockets=Counting,
        source_address=io.REAL.source_address,
        ports=io.REAL.ports,
    )
    nets = [ipaddress.ip_network(p) for p in PEERING]
    out = {}
    runs = (("one flow", 1, ()), ("MSEE flows", 1, PEERING), ("6 flows/hop", MSEE_FLOWS, ()))
    for name, flows, prefixes in runs:
        sent[0] = 0
        opts = trace.TraceOptions(source_port=SPORT, flows=flows, msee_prefixes=prefixes)
        t0 = time.perf_counter()
        traces = engine.run([trace.TraceRequest(a, 443) for a in addresses], opts, counting)
        wall = time.perf_counter() - t0
        both = flows = 0
        for t in traces.values():
            at_msee = [
                r
                for h in t.hops
                if not h.shared
                for r in h.replies
                if any(ipaddress.ip_address(r.address) in n for n in nets)
            ]
            flows += len({r.flow for r in at_msee})
            both += len({r.address for r in at_msee}) >= 2
        out[name] = {"wall_s": wall, "probes": sent[0], "both_links": both, "msee_flows": flows}
        time.sleep(0.1)
    print(json.dumps(out))


def _scamper_flows(ns: str, addresses: list[str]) -> tuple[float, int, int]:
    """scamper's `trace`, once per flow (source port), over every target: wall, probes, both links."""
    total, probes = 0.0, 0
    links: dict[str, set[str]] = {}
    for i in range(MSEE_FLOWS):
        dt, out = _ns_run(
            ns,
            [
                "scamper",
                "-O",
                "json",
                "-p",
                "10000",
                "-c",
                f"trace -P tcp -d 443 -q 1 -w 1 -s {SPORT + i}",
                "-i",
                *addresses,
            ],
        )
        total += dt
        for line in out.splitlines():
            doc = json.loads(line)
            if doc.get("type") != "trace":
                continue
            probes += doc.get("probe_count", 0)
            for hop in doc.get("hops", []):
                if hop["addr"] in ("192.0.2.2", "192.0.2.6"):  # the MSEEs of ams-er-1
                    links.setdefault(doc["dst"], set()).add(hop["addr"])
    return total, probes, sum(1 for s in links.values() if len(s) >= 2)


def msee_main() -> int:
    os.environ.setdefault("ERPATH_LAB_PREFIX", "trc")
    from tests.lab import plan
    from tests.lab.lab import Lab

    lab = Lab()
    if not lab.is_up():
        lab.up()
    ns = lab.ns("branch")
    addresses = [t.address for t in plan.targets()]
    lab.scenario("er-active-active")
    try:
        for rate_limit in (False, True):
            lab.set_rate_limit(rate_limit)
            print(
                f"\ner-active-active, rate limits {'on' if rate_limit else 'off'}, {len(addresses)} targets"
            )
            time.sleep(REFILL_S)
            env = ["env", f"PYTHONPATH={ROOT}"]
            _, out = _ns_run(ns, [*env, sys.executable, __file__, "--inner-msee", *addresses])
            doc = json.loads(out)
            for name, d in doc.items():
                print(
                    f"  erpath {name:10}  {d['wall_s']:6.3f} s  {d['probes']:5d} probes  "
                    f"MSEE flows {d['msee_flows']:3d}  both links seen for {d['both_links']} targets"
                )
            time.sleep(REFILL_S)
            t_sc, probes, both = _scamper_flows(ns, addresses)
            print(
                f"  scamper x{MSEE_FLOWS} flows  {t_sc:6.3f} s  {probes:5d} probes  "
                f"both links seen for {both} targets"
            )
    finally:
        lab.scenario("er")
        lab.set_rate_limit(True)
    return 0


def _ns_run(ns: str, argv: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True)
    return time.perf_counter() - t0, p.stdout


def _parse_text(out: str) -> dict[str, Hops]:
    """traceroute/scamper text output: per destination, per TTL the answering addresses."""
    result: dict[str, Hops] = {}
    dest = None
    for line in out.splitlines():
        if line.startswith("traceroute"):
            dest = _ADDR.findall(line)[-1]
            result[dest] = {}
            continue
        m = re.match(r"\s*(\d+)\s+(.*)", line)
        if m and dest:
            addrs = frozenset(_ADDR.findall(m.group(2)))
            if addrs:
                result[dest][int(m.group(1))] = addrs
    return result


def _traceroute(
    ns: str, addresses: list[str], *, sport: bool = False, source6: str = ""
) -> tuple[float, dict[str, Hops]]:
    """One traceroute after another.  With sport (our flow: the same ECMP member)
    it probes serially, so -w 0.2 keeps its silent hop from costing 3 x 5 s.
    IPv6 (`source6`, the client's address): -6, and with sport our flow label too."""
    from agent.measure import packets

    total, hops = 0.0, {}
    for a in addresses:
        flow = [f"--sport={SPORT}", "-w", "0.2"] if sport else []
        if source6 and sport:
            flow += ["-l", str(packets.flow_label(source6, a, SPORT, 443))]
        family = ["-6"] if source6 else []
        dt, out = _ns_run(ns, ["traceroute", *family, "-T", "-p", "443", "-n", *flow, a])
        total += dt
        hops.update(_parse_text(out))
    return total, hops


def _scamper(ns: str, addresses: list[str]) -> tuple[float, dict[str, Hops]]:
    dt, out = _ns_run(
        ns,
        [
            "scamper",
            "-p",
            "10000",
            "-c",
            f"trace -P tcp -d 443 -q 1 -w 1 -s {SPORT}",
            "-i",
            *addresses,
        ],
    )
    return dt, _parse_text(out)


def _erpath(ns: str, addresses: list[str]) -> tuple[float, dict, dict[str, Hops]]:
    env = ["env", f"PYTHONPATH={ROOT}"]
    dt, out = _ns_run(ns, [*env, sys.executable, __file__, "--inner", *addresses])
    doc = json.loads(out)
    hops = {a: {int(t): frozenset(v) for t, v in h.items()} for a, h in doc["hops"].items()}
    return dt, doc, hops


def _found(truth: dict[str, Hops], got: dict[str, Hops]) -> tuple[int, int, int]:
    """(hops in truth, found with the same address, wrong address)."""
    total = found = wrong = 0
    for dest, hops in truth.items():
        for ttl, addrs in hops.items():
            total += 1
            mine = got.get(dest, {}).get(ttl)
            if mine and mine & addrs:
                found += 1
            elif mine:
                wrong += 1
    return total, found, wrong


def _fmt(hops: Hops) -> str:
    return " ".join(f"{t}:{','.join(sorted(a))}" for t, a in sorted(hops.items()))


def main() -> int:
    os.environ.setdefault("ERPATH_LAB_PREFIX", "trc")
    from tests.lab import plan
    from tests.lab.lab import Lab

    lab = Lab()
    if not lab.is_up():
        lab.up()
    ns = lab.ns("branch")
    addresses = [t.address for t in plan.targets()]
    print(f"lab {lab.prefix}: {len(addresses)} targets from branch ({ns})")

    lab.set_rate_limit(False)
    _, tr = _traceroute(ns, addresses, sport=True)  # the truth, on our flow
    t_tr, _ = _traceroute(ns, addresses)
    t_sc, sc = _scamper(ns, addresses)
    t_er, doc, er = _erpath(ns, addresses)
    print("\nrate limits off")
    print(f"  traceroute -T -p 443 -n, one after another: {t_tr:6.3f} s")
    print(f"  scamper -p 10000 trace -P tcp -q 1 -w 1:     {t_sc:6.3f} s")
    print(
        f"  erpath trace phase: {doc['trace_s']:.3f} s   tcp probe: {doc['tcp_s']:.3f} s   "
        f"imports: {doc['import_s']:.3f} s   whole process: {t_er:.3f} s   "
        f"peak RSS {doc['rss_mb']:.1f} MB   open ports {doc['open']}"
    )
    total, found, wrong = _found(tr, er)
    extra = sum(1 for d, h in er.items() for ttl in h if ttl not in tr.get(d, {}))
    print(f"  erpath vs traceroute hops: {found}/{total} equal, {wrong} different, {extra} extra")
    for d, hops in tr.items():
        if {t: set(a) for t, a in hops.items()} != {t: set(a) for t, a in er.get(d, {}).items()}:
            print(
                f"    {d}: traceroute {_fmt(hops)}\n    {' ' * len(d)}  erpath     {_fmt(er.get(d, {}))}"
            )
    total_sc, found_sc, wrong_sc = _found(tr, sc)
    print(f"  scamper vs traceroute hops: {found_sc}/{total_sc} equal, {wrong_sc} different")

    lab.set_rate_limit(True)
    print("\nrate limits on (truth: traceroute with rate limits off)")
    for name, run in (("traceroute", _traceroute), ("scamper", _scamper), ("erpath", _erpath)):
        time.sleep(REFILL_S)
        res = run(ns, addresses)
        dt, got = res[0], res[-1]
        total, found, wrong = _found(tr, got)
        print(f"  {name:10} {dt:6.3f} s  found {found}/{total} hops, lost {total - found}")
        if name == "erpath":
            print(f"             erpath trace phase {res[1]['trace_s']:.3f} s")
    return 0


def ipv6_main() -> int:
    from tests.agent.measure.trace import v6net

    addresses = v6net.service_addresses(30)
    tr: dict[str, Hops] = {}
    for rate_limit in (False, True):
        with v6net.v6net(rate_limit=rate_limit, services=len(addresses)) as net:
            ns = net.ns("c")
            print(f"\nIPv6, rate limits {'on' if rate_limit else 'off'}, {len(addresses)} targets")
            if not rate_limit:  # the truth, on our flow (same source port and flow label)
                _, tr = _traceroute(ns, addresses, sport=True, source6=v6net.CLIENT)
            results = {}
            runs = (
                ("traceroute", _traceroute, {"source6": v6net.CLIENT}),
                ("scamper", _scamper, {}),
                ("erpath", _erpath, {}),
            )
            for name, run, kw in runs:
                time.sleep(REFILL_S if rate_limit else 0.1)
                results[name] = run(ns, addresses, **kw)
            for name, res in results.items():
                dt, got = res[0], res[-1]
                total, found, wrong = _found(tr, got)
                line = f"  {name:10} {dt:6.3f} s  found {found}/{total} hops, {wrong} different"
                if name == "erpath":
                    line += f"  (trace phase {res[1]['trace_s']:.3f} s)"
                print(line)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        _inner(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--inner-msee":
        _inner_msee(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--msee":
        raise SystemExit(msee_main())
    elif len(sys.argv) > 1 and sys.argv[1] == "--ipv6":
        raise SystemExit(ipv6_main())
    else:
        raise SystemExit(main())
