"""erpath's traceroute in the lab: real packets through real kernel routers.

Run with ERPATH_LAB_PREFIX set to a prefix of your own (e.g. trc).
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.measure import packets, trace
from tests.agent.measure import crafting
from tests.lab import plan

pytestmark = pytest.mark.lab

SPORT = 47000
REFILL_S = 7.0  # a Linux router's ICMP bucket (6 tokens, 1/s) is full again
TARGETS = [t.address for t in plan.targets()]
SILENT = set(plan.addresses_of("silent"))


def _trace(the_lab, addresses, **kw) -> dict:
    opts = trace.TraceOptions(source_port=SPORT, **kw)
    with the_lab.netns("branch"):
        return trace.trace_many([trace.TraceRequest(a, 443) for a in addresses], opts)


def _hop_map(t) -> dict[int, set[str]]:
    return {h.ttl: set(h.addresses) for h in t.hops if h.replies}


def _traceroute(the_lab, address: str) -> dict[int, set[str]]:
    out = the_lab.run(
        "branch", ["traceroute", "-T", "-p", "443", "-n", f"--sport={SPORT}", "-w", "0.2", address]
    ).stdout
    hops: dict[int, set[str]] = {}
    for line in out.splitlines()[1:]:
        words = line.split()
        addrs = {w for w in words[1:] if packets.is_ipv4(w)}
        if addrs:
            hops[int(words[0])] = addrs
    return hops


def test_hops_equal_traceroute_and_silent_hop_missing_in_both(lab):
    with lab.options(rate_limit=False):
        ours = _trace(lab, TARGETS)
        theirs = {a: _traceroute(lab, a) for a in TARGETS}
    for address in TARGETS:
        t = ours[(address, 443)]
        assert t.reached and t.failure is None, address
        assert _hop_map(t) == theirs[address], address
        assert t.hops[-1].replies[0].kind == "syn-ack"
        assert not SILENT & {a for h in t.hops for a in h.addresses}
    cdn = [t for t in plan.targets() if t.role == "cdn"]
    for target in cdn:  # the internet path crosses the silent hop: a TTL with no reply
        hops = ours[(target.address, 443)].hops
        assert any(not h.replies for h in hops), target.address
        assert len(theirs[target.address]) < hops[-1].ttl


def test_rate_limited_routers_every_hop_in_3s(lab):
    assert lab.rate_limit
    time.sleep(REFILL_S)
    t0 = time.perf_counter()
    ours = _trace(lab, TARGETS)
    elapsed = time.perf_counter() - t0
    assert elapsed < 3.0
    for address in TARGETS:
        expected = lab.expected_hops(None, "branch", address, sport=SPORT)
        got = _hop_map(ours[(address, 443)])
        for ttl, want in enumerate(expected, start=1):
            if want is None:
                assert ttl not in got, (address, ttl)
            else:
                assert got.get(ttl) == {want}, (address, ttl, got)


def test_blackholed_targets_keep_their_hops_under_rate_limits(lab, lab_scenario):
    """Issue 13: answers past the internet edge are lost (asymmetric NAT); with the
    kernel's ICMP rate limits two of three such traces used to come back empty."""
    lab_scenario("asymmetric-nat")
    assert lab.rate_limit
    services = [t.address for t in plan.targets() if t.role == "service"][:3]
    t0 = time.perf_counter()
    ours = _trace(lab, services)
    assert time.perf_counter() - t0 < 6.0
    for address in services:
        t = ours[(address, 443)]
        assert not t.reached
        expected = lab.expected_hops(None, "branch", address, sport=SPORT)
        got = _hop_map(t)
        assert got, address
        for ttl, want in enumerate(expected, start=1):
            if want is None:
                assert ttl not in got, (address, ttl, got)
            else:
                assert got.get(ttl) == {want}, (address, ttl, got)


def _forge(the_lab, stop: threading.Event, victim: str) -> int:
    """From the WAN router: ICMP time-exceeded quoting made-up probes, and stray SYN-ACKs."""
    sent = 0
    rng = random.Random(7)
    with the_lab.netns("wan"):
        import socket

        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        try:
            while not stop.is_set():
                dst = rng.choice(TARGETS)
                tpl = packets.tcp_syn_template(victim, dst, SPORT, 443)
                fake = packets.stamp(
                    tpl, rng.randrange(1, 8), rng.randrange(65536), rng.getrandbits(32)
                )
                router = rng.choice(["10.10.1.1", "198.19.0.6", "192.0.2.2"])
                for pkt in (
                    crafting.craft_icmp_error(router, fake),
                    crafting.craft_tcp_reply(fake, ack_delta=rng.randrange(1, 1 << 16)),
                ):
                    s.sendto(pkt, (victim, 0))
                    sent += 1
                time.sleep(0.0005)
        finally:
            s.close()
    return sent


def test_forged_replies_do_not_change_results(lab):
    victim = plan.link_between("wan", "branch").address("branch")
    with lab.options(rate_limit=False):
        clean = _trace(lab, TARGETS)
        stop = threading.Event()
        counts: list[int] = []
        forger = threading.Thread(target=lambda: counts.append(_forge(lab, stop, victim)))
        forger.start()
        try:
            time.sleep(0.05)
            # Traced again and again while the forger runs (a trace takes ~0.1 s).
            noisy = [_trace(lab, TARGETS) for _ in range(3)]
        finally:
            stop.set()
            forger.join()
    assert counts and counts[0] > 100
    for run in noisy:
        for key, t in clean.items():
            assert _hop_map(run[key]) == _hop_map(t), key
            assert run[key].reached == t.reached


def test_icmp_and_udp_traces_reach_the_service(lab):
    with lab.options(rate_limit=False):
        for protocol, last_kind in (("icmp", "echo-reply"), ("udp", "unreachable")):
            got = _trace(lab, TARGETS[:3], protocol=protocol)
            for t in got.values():
                assert t.reached and t.protocol == protocol
                assert t.hops[-1].replies[0].kind == last_kind
                assert [h.addresses for h in t.hops[:-1]] == [
                    ("10.10.1.1",),
                    ("10.255.0.2",),
                    ("10.255.1.2",),
                    ("192.0.2.2",),
                    ("198.19.0.6",),
                ]


def test_filtered_target_is_unreachable_not_an_error(lab):
    got = _trace(lab, [plan.FILTERED_ADDRESS], wait_max_s=0.3)
    t = got[(plan.FILTERED_ADDRESS, 443)]
    assert not t.reached and t.failure == "trace.unreachable"
    assert t.duration_s < 5


def test_without_cap_net_raw_no_capability(lab):
    code = (
        "from agent.measure import tcp, trace; "
        "r = trace.trace_many([trace.TraceRequest('198.19.16.10', 443)]); "
        "t = tcp.probe_tcp([('198.19.16.10', 443)], 1.0); "
        "print(list(r.values())[0].failure, t[('198.19.16.10', 443)].method, "
        "t[('198.19.16.10', 443)].state)"
    )
    out = subprocess.run(  # root, but without CAP_NET_RAW
        [
            "ip",
            "netns",
            "exec",
            lab.ns("branch"),
            "setpriv",
            "--inh-caps=-net_raw",
            "--bounding-set=-net_raw",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        cwd=str(Path(__file__).parents[4]),
    )
    assert out.stdout.split() == ["trace.no-capability", "connect", "open"], out.stderr
