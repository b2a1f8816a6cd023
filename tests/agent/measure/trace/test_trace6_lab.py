"""IPv6 on real packets: erpath's traces and SYN probe in a throwaway set of namespaces (root).

The network is `v6net` (client, r1 splitting flows over r2a/r2b, r3, server),
not the shared lab.  Run with ERPATH_LAB_PREFIX set to a prefix of your own.
"""

from __future__ import annotations

import pytest

from agent.measure import packets, tcp, trace
from tests.agent.measure.trace import v6net
from tests.agent.measure.trace.v6net import (
    CLIENT,
    R1,
    R2A,
    R2B,
    R3,
    SERVER,
    SERVER4,
    UNREACHABLE,
)

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


def test_udp_and_icmpv6_echo_traces(net):
    """UDP carries its index in the payload (no IP ID); equal to traceroute -6 -U on our flow."""
    with net.netns("c"):
        got = {
            proto: trace.trace_many(
                [trace.TraceRequest(SERVER, 33434)],
                trace.TraceOptions(protocol=proto, source_port=SPORT),
            )[(SERVER, 33434)]
            for proto in ("udp", "icmp")
        }
    udp, echo = got["udp"], got["icmp"]
    last = udp.hops[-1].replies[0]
    assert udp.reached and (last.kind, last.icmp_type, last.icmp_code) == ("unreachable", 1, 4)
    label = packets.flow_label(CLIENT, SERVER, SPORT, 33434)
    argv = ["traceroute", "-6", "-U", "-p", "33434", "-n", f"--sport={SPORT}", "-l", str(label)]
    out = net.run("c", [*argv, "-q", "1", "-w", "0.5", SERVER]).stdout
    theirs = {
        int(line.split()[0]): {line.split()[1]}
        for line in out.splitlines()[1:]
        if packets.ip_version(line.split()[1]) == 6
    }
    assert {h.ttl: set(h.addresses) for h in udp.hops} == theirs
    assert echo.reached and echo.hop_count == 4
    assert (echo.hops[-1].replies[0].kind, echo.hops[-1].replies[0].icmp_type) == (
        "echo-reply",
        129,
    )


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


def _traceroute4(net, sport: int) -> dict[int, set[str]]:
    out = net.run(
        "c",
        ["traceroute", "-4", "-T", "-p", "443", "-n", f"--sport={sport}", "-q", "1", "-w", "0.5"]
        + [SERVER4],
    ).stdout
    return {
        int(line.split()[0]): {w for w in line.split()[1:] if packets.ip_version(w) == 4}
        for line in out.splitlines()[1:]
        if any(packets.ip_version(w) == 4 for w in line.split()[1:])
    }


def test_dual_stack_run_traces_each_family_on_its_own_sockets(net):
    """One call, both families: each trace in its family, hops equal traceroute -4 / -6 per flow."""
    with net.netns("c"):
        got = trace.trace_many(
            [trace.TraceRequest(SERVER, 443), trace.TraceRequest(SERVER4, 443)],
            trace.TraceOptions(source_port=SPORT, flows=2, timeout_s=5.0),
        )
        syn = tcp.probe_tcp([(SERVER, 443), (SERVER4, 443), (SERVER4, v6net.CLOSED)], 1.0)
    t6, t4 = got[(SERVER, 443)], got[(SERVER4, 443)]
    assert (t6.family, t4.family) == ("ipv6", "ipv4")
    assert t6.reached and t4.reached and t6.hop_count == t4.hop_count == 4
    for sport in (SPORT, SPORT + 1):
        for t, theirs in ((t6, _traceroute(net, sport)), (t4, _traceroute4(net, sport))):
            ours = {
                h.ttl: {r.address for r in h.replies if r.flow == sport}
                for h in t.hops
                if any(r.flow == sport for r in h.replies)
            }
            assert ours == theirs, (t.family, sport)
    assert [syn[t].state for t in ((SERVER, 443), (SERVER4, 443), (SERVER4, v6net.CLOSED))] == [
        "open",
        "open",
        "closed",
    ]
    assert syn[(SERVER, 443)].return_hops == syn[(SERVER4, 443)].return_hops == 3


def test_thirty_ipv6_targets_under_the_kernels_icmpv6_rate_limit():
    """A burst of 6, then one per second per router: every target keeps every hop, in seconds."""
    addresses = v6net.service_addresses(30)
    with (
        v6net.v6net(rate_limit=True, services=len(addresses), tag="rl") as limited,
        limited.netns("c"),
    ):
        got = trace.trace_many(
            [trace.TraceRequest(a, 443) for a in addresses],
            trace.TraceOptions(source_port=SPORT),
        )
    for a in addresses:
        t = got[(a, 443)]
        assert t.reached and t.hop_count == 4, a
        hops = {h.ttl: set(h.addresses) for h in t.hops}
        assert hops[1] == {R1} and hops[2] <= {R2A, R2B} and hops[3] <= set(R3), a
        assert all(hops[ttl] for ttl in (1, 2, 3)), a
        assert t.duration_s < 3.0, a
