"""The trace engine over IPv6 on the fake network: hops, Doubletree without Record Route, budgets per family."""

from __future__ import annotations

import pytest

from .fakenet import SPORT, Path, ecmp, hop_map, lab_model, run, truth

GW, CORE, EDGE = "2001:db8:10::1", "2001:db8:ff::2", "2001:db8:ff:3::2"
ISPS = ("2001:db8:1600::1", "2001:db8:3200::1")
MSEDGE, MSCORE = "2001:db8:4800::2", "2001:db8:1900::2"
SERVICES = [f"2001:db8:1916::{i:x}" for i in range(10, 40)]
# The same routers' IPv4 addresses: a dual-stack path.
GW4, CORE4, EDGE4 = "10.10.1.1", "10.255.0.2", "10.255.3.2"
ISPS4 = ("198.18.16.1", "198.18.32.1")
MSEDGE4, MSCORE4 = "198.18.48.2", "198.19.0.2"
SERVICES4 = [f"198.19.16.{i}" for i in range(10, 40)]


def internet(destination: str, flow: int, *, answer: str = "syn-ack") -> Path:
    """Either family: out through the edge, an ECMP pair of ISPs, a silent hop, Microsoft."""
    if ":" in destination:
        hops = (GW, CORE, EDGE, ecmp(flow, destination, ISPS), None, MSEDGE, MSCORE)
    else:
        hops = (GW4, CORE4, EDGE4, ecmp(flow, destination, ISPS4), None, MSEDGE4, MSCORE4)
    return Path(hops, answer)


def one_isp(destination: str, flow: int) -> Path:
    """The internet path through the first ISP only: no per-destination ECMP below Microsoft.

    (Where per-destination ECMP paths part and meet again below a shared
    router, only Record Route proves the routers below it; IPv6 has none, so
    Doubletree there may copy the other branch's hop, as it does for IPv4
    without Record Route.)
    """
    hops = internet(destination, flow).hops
    isp = ISPS[0] if ":" in destination else ISPS4[0]
    return Path((*hops[:3], isp, *hops[4:]))


def blackholed(destination: str, flow: int) -> Path:
    path = one_isp(destination, flow)
    return Path(path.hops, "none", lost=frozenset({MSCORE, MSCORE4}))


def test_one_ipv6_target_every_hop_time_exceeded_and_the_syn_ack():
    got, _ = run(internet, [SERVICES[0]], rate_limit=False)
    t = got[SERVICES[0]]
    assert t.reached and t.failure is None and t.family == "ipv6"
    assert hop_map(t) == truth(internet, SERVICES[0])
    assert t.hop_count == 8
    first = t.hops[0].replies[0]
    assert (first.kind, first.icmp_type, first.icmp_code) == ("time-exceeded", 3, 0)
    assert t.hops[-1].replies[0].kind == "syn-ack"


def test_ipv6_address_written_long_is_matched():
    long = "2001:0db8:1916:0000:0000:0000:0000:000a"
    got, _ = run(internet, [long], rate_limit=False)
    assert got[long].reached
    assert hop_map(got[long]) == truth(internet, SERVICES[0])


def test_icmpv6_unreachable_ends_the_trace():
    def unreachable(d, f):
        return Path((GW, CORE, EDGE), unreachable_at=3)

    t = run(unreachable, [SERVICES[0]])[0][SERVICES[0]]
    assert not t.reached and t.failure == "trace.unreachable"
    last = t.hops[-1].replies[0]
    assert (t.hops[-1].ttl, last.kind, last.icmp_type) == (3, "unreachable", 1)


def test_icmpv6_echo_probes():
    t = run(internet, [SERVICES[0]], protocol="icmp")[0][SERVICES[0]]
    assert t.reached and t.hops[-1].replies[0].kind == "echo-reply"
    assert hop_map(t) == truth(internet, SERVICES[0])


def test_udp_over_ipv6_carries_its_index_in_the_payload():
    got, net = run(one_isp, SERVICES[:3], protocol="udp")
    for a in SERVICES[:3]:
        t = got[a]
        assert t.reached and t.hops[-1].replies[0].kind == "unreachable", a
        assert (t.hops[-1].replies[0].icmp_type, t.hops[-1].replies[0].icmp_code) == (1, 4)
        assert hop_map(t) == truth(one_isp, a), a


def test_doubletree_over_ipv6_asks_shared_hops_once():
    got, net = run(one_isp, SERVICES)
    for a in SERVICES:
        assert hop_map(got[a]) == truth(one_isp, a), a
    assert sum(h.shared for a in SERVICES for h in got[a].hops) > len(SERVICES) * 3
    assert net.asked[GW] < 10
    # One /64 at one distance: one last router, asked by targets only while
    # it has tokens, then copied
    assert net.asked[MSCORE] <= 6
    assert net.asked[MSCORE] == net.answered[MSCORE]
    assert net.now_s - net.start_s < 3.0


def test_ipv6_targets_in_other_64s_each_ask_their_penultimate_hop_paced():
    """Without Record Route and outside one /64, each target asks its last router (1/s after 6)."""
    targets = [f"2001:db8:1916:{i:x}::a" for i in range(1, 11)]
    got, net = run(one_isp, targets)
    for a in targets:
        assert hop_map(got[a]) == truth(one_isp, a), a
    assert net.asked[MSCORE] - net.answered[MSCORE] <= 2  # paced: next to none lost
    assert net.now_s - net.start_s < (10 - 6) * 1.0 + 1.5


def test_blackholed_ipv6_targets_share_by_two_routers_in_a_row_without_record_route():
    """IPv6 has no Record Route: the forward walk's stop set needs two matching routers."""
    got, net = run(blackholed, SERVICES[:10])
    for a in SERVICES[:10]:
        t = got[a]
        assert not t.reached and t.family == "ipv6"
        mine, want = hop_map(t), truth(blackholed, a)
        assert all(mine[ttl] == want[ttl] for ttl in mine), a  # never a wrong hop
        assert all(ttl in mine for ttl in (1, 2, 3, 4)), a  # out through the edge and ISP
    assert any(h.shared for a in SERVICES[1:10] for h in got[a].hops)
    assert net.now_s - net.start_s <= 10.0 + 0.01


def test_dual_stack_run_keeps_families_apart():
    """One run, both families: one head per family, each family's own routers and budgets."""
    targets = SERVICES[:15] + SERVICES4[:15]
    got, net = run(one_isp, targets)
    for a in targets:
        t = got[a]
        assert t.reached and t.family == ("ipv6" if ":" in a else "ipv4"), a
        assert hop_map(t) == truth(one_isp, a), a
        # a hop never holds the other family's router
        v6 = ":" in a
        assert all((":" in r.address) == v6 for h in t.hops for r in h.replies), a
    # Each family's gateway answered by its own budget: both asked few times.
    assert net.asked[GW] < 10 and net.asked[GW4] < 10
    # IPv4 copies by Record Route; IPv6 asks the last router while it has
    # tokens and copies by the destinations' common /64 after
    assert net.now_s - net.start_s < 0.5


@pytest.mark.parametrize("flows", [6])
def test_paris_flows_over_ipv6_enumerate_ecmp(flows):
    got, net = run(internet, [SERVICES[0]], flows=flows, rate_limit=False)
    t = got[SERVICES[0]]
    assert set(hop_map(t)[4]) == set(ISPS)
    for r in t.hops[3].replies:
        assert r.address == ecmp(r.flow, SERVICES[0], ISPS)


# A dual-stack circuit's IPv6 peering: the MSEE is the second address of each /126.
PEERING6 = ("2001:db8:c1::/126", "2001:db8:c2::/126")
MSEE6_P, MSEE6_S = "2001:db8:c1::2", "2001:db8:c2::2"
CE6 = "2001:db8:ce::1"


def expressroute6(destination: str, flow: int) -> Path:
    """Over an active-active circuit: the CE hashes each flow onto the primary or secondary link."""
    return Path((GW, CORE, CE6, ecmp(flow, destination, (MSEE6_P, MSEE6_S)), MSCORE))


def test_msee_hop_over_ipv6_peering_shows_both_links_with_their_flows():
    targets = SERVICES[:5]
    got, net = run(expressroute6, targets, rate_limit=False, msee_prefixes=PEERING6)
    for a in targets:
        hop = next(h for h in got[a].hops if h.ttl == 4)
        assert not hop.shared
        assert set(hop.addresses) == {MSEE6_P, MSEE6_S}, a
        assert 2 <= len({r.flow for r in hop.replies}) <= 6
        for r in hop.replies:  # each flow's reply is the link its hash picks
            assert r.address == ecmp(r.flow, a, (MSEE6_P, MSEE6_S))
        assert all(net.flows_at(a, ttl) <= {SPORT} for ttl in (1, 2, 3, 5))


def test_a_finished_trace_releases_the_penultimate_hop_wait():
    """The lab's ipv6-er, rate limits off: a trace that ends while a silent hop awaits its retry.

    18:65::10 copies its hops below TTL 4 from the head and ends at its
    destination (TTL 6); its silent TTL 5 had just been queued for a retry
    against 19:16::10's last router.  The four /64s behind that router at the
    same distance wait for that penultimate hop: it has to count as answered
    (silent) once its trace ends, or they wait out the 10 s budget with no hop.
    """
    model = lab_model("ipv6-er")
    targets = ["2001:db8:18:65::10", "2001:db8:19:128::10"]
    targets += [f"2001:db8:19:{n}::10" for n in (16, 17, 18, 20, 24)]
    got, net = run(model, targets, rate_limit=False)
    for a in targets:
        assert hop_map(got[a]) == truth(model, a), a
    assert net.now_s - net.start_s < 1.0


# A CDN behind the silent transit, as far away as the services behind MSCORE
# (the lab's 2001:db8:18:65::10 next to 2001:db8:19:16::10 and its /64s).
CDN6, FRONT_DOOR6 = "2001:db8:1865::10", "2001:db8:1928::10"


def cdn_as_far_as_the_services(destination: str, flow: int) -> Path:
    """The services over the circuit, dead on TTL 6; the CDN over the internet, its TTL 5 silent.

    The CDN's answers come back over 6 routers, so its distance estimate is
    one too long and it reaches its silent TTL 5 after MSCORE answered at
    TTL 5 for a service: the same destination distance, another path.
    """
    if destination == CDN6:
        return Path((GW, CORE, EDGE, ISPS[0], None), return_hops=6)
    if destination == FRONT_DOOR6:
        return Path((GW, CORE, EDGE, ISPS[0], None, MSEDGE))
    return Path((GW, CORE, CE6, MSEE6_P, MSCORE))


def test_a_silent_hop_guessed_from_the_distance_does_not_drain_the_router_guessed():
    """Rate limits off: a silence at a router guessed only from the distance proves nothing of it.

    Without Record Route, MSCORE is the CDN's TTL 5 only by the destinations'
    equal distance (a guess; the CDN's hops below are not known yet).  Its
    silence there once counted as MSCORE out of tokens, with no credit left:
    every service's penultimate question after it waited a second (the
    lab's ipv6-er with --family 6: up to 9 s, one second per service).
    """
    services = [f"2001:db8:19{i:02d}::a" for i in range(16, 24)]  # 8 /64s behind MSCORE
    targets = [FRONT_DOOR6, CDN6, *services]
    got, net = run(cdn_as_far_as_the_services, targets, rate_limit=False)
    for a in targets:
        assert hop_map(got[a]) == truth(cdn_as_far_as_the_services, a), a
    assert net.asked[MSCORE] == net.answered[MSCORE] == len(services)
    assert net.now_s - net.start_s < 1.0  # the simulated clock: no second waited for a token
