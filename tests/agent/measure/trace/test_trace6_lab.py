"""IPv6 on real packets: erpath's traces and SYN probe in a throwaway set of namespaces (root).

The network is `v6net` (client, r1 splitting flows over r2a/r2b, r3, server),
not the shared lab.  Run with ERPATH_LAB_PREFIX set to a prefix of your own.
"""

from __future__ import annotations

import pytest

from agent.measure import packets, tcp, trace
from tests.agent.measure.trace import v6net
from tests.agent.measure.trace.v6net import CLIENT, R1, R2A, R2B, R3, SERVER, UNREACHABLE

pytestmark = pytest.mark.root

SPORT = 47000
FLOWS = 6


@pytest.fixture(scope="module")
def net():
    with v6net.v6net() as built:
        yield built


def _traceroute(net, sport: int) -> dict[int, set[str]]:
    """Debian's traceroute -6 -T for one flow: our source port and our flow label."""
    label = packets.flow_label(CLIENT, SERVER, sport, 443)
    argv = ["traceroute", "-6", "-T", "-p", "443", "-n", f"--sport={sport}", "-l", str(label)]
    out = net.run("c", [*argv, "-q", "1", "-w", "0.5", SERVER]).stdout
    hops: dict[int, set[str]] = {}
    for line in out.splitlines()[1:]:
        words = line.split()
        addrs = {w for w in words[1:] if packets.ip_version(w) == 6}
        if addrs:
            hops[int(words[0])] = addrs
    return hops


def test_hops_per_flow_equal_traceroute_6_tcp(net):
    with net.netns("c"):
        got = trace.trace_many(
            [trace.TraceRequest(SERVER, 443)],
            trace.TraceOptions(source_port=SPORT, flows=FLOWS, timeout_s=5.0),
        )
    t = got[(SERVER, 443)]
    assert t.reached and t.failure is None and t.family == "ipv6"
    assert t.hop_count == 4 and t.hops[-1].replies[0].kind == "syn-ack"
    seconds = set()
    for sport in range(SPORT, SPORT + FLOWS):
        ours = {
            h.ttl: {r.address for r in h.replies if r.flow == sport}
            for h in t.hops
            if any(r.flow == sport for r in h.replies)
        }
        assert ours == _traceroute(net, sport), sport
        seconds |= ours[2]
    assert ours[1] == {R1} and ours[3] <= set(R3)
    # r1 hashes the flow label: six flows are unlikely all to take one branch
    assert seconds <= {R2A, R2B}


def test_router_unreachable_ends_the_trace_with_icmpv6_type_1(net):
    with net.netns("c"):
        got = trace.trace_many(
            [trace.TraceRequest(UNREACHABLE, 443)], trace.TraceOptions(source_port=SPORT)
        )
    t = got[(UNREACHABLE, 443)]
    assert not t.reached and t.failure == "trace.unreachable"
    last = t.hops[-1]
    assert last.ttl == 3 and {r.address for r in last.replies} <= set(R3)
    assert (last.replies[0].kind, last.replies[0].icmp_type) == ("unreachable", 1)


@pytest.mark.parametrize("method", ["raw", "connect"])
def test_syn_probe_open_closed_filtered_unreachable(net, method):
    targets = [(SERVER, v6net.OPEN), (SERVER, v6net.CLOSED), (SERVER, v6net.FILTERED)]
    targets.append((UNREACHABLE, 443))
    with net.netns("c"):
        got = tcp.probe_tcp(targets, 1.0, method=method)
    o, c, f, u = (got[t] for t in targets)
    assert (o.state, o.failure, o.method) == ("open", None, method)
    assert (c.state, c.failure) == ("closed", "tcp.refused")
    assert (f.state, f.failure) == ("filtered", "tcp.filtered")
    if method == "raw":
        assert u.failure == "tcp.unreachable"
        # three routers decrement the SYN-ACK's hop limit on its way back
        assert (o.reply_ttl, o.return_hops) == (61, 3)
        assert u.duration_s < 0.5  # the ICMPv6 unreachable answers it, no waiting
    else:
        assert o.reply_ttl is None
        # "no route" is a soft error to the kernel's TCP: connect() keeps
        # retrying, so only the raw probe can tell unreachable from filtered
        assert u.failure == "tcp.filtered"


def test_dual_stack_request_list_traces_ipv6_beside_a_failed_ipv4(net):
    """An IPv4 target with no route from this IPv6-only client fails alone; IPv6 still traces."""
    with net.netns("c"):
        got = trace.trace_many(
            [trace.TraceRequest(SERVER, 443), trace.TraceRequest("198.51.100.7", 443)],
            trace.TraceOptions(source_port=SPORT, timeout_s=3.0),
        )
    assert got[(SERVER, 443)].reached and got[(SERVER, 443)].family == "ipv6"
    v4 = got[("198.51.100.7", 443)]
    assert (v4.reached, v4.failure, v4.family) == (False, "trace.unreachable", "ipv4")
