"""Which family users get: RFC 6724 order from routes, RFC 8305 fallback, the ipv6-blackhole finding."""

from __future__ import annotations

from agent.report import RouteResult, TcpResult
from agent.verdict.family import (
    Destination,
    choose,
    family_evidence,
    family_of,
    first_per_family,
    ipv6_blackhole,
    rfc6724_order,
)

V4, V6 = "198.18.10.4", "2001:db8:ff::10"
ROUTE_V4 = RouteResult(interface="eth0", gateway="10.1.0.254", source="10.1.0.1")
ROUTE_V6 = RouteResult(interface="eth0", gateway="fe80::1", source="2001:db8:2::1")
OPEN = TcpResult(443, "open", "raw", connect_s=0.012)
FILTERED = TcpResult(443, "filtered", "raw", failure="tcp.filtered")
REFUSED = TcpResult(443, "closed", "raw", failure="tcp.refused")


def order(*ds: Destination) -> list[str]:
    return [d.address for d in rfc6724_order(ds)]


def test_global_ipv6_with_a_global_source_comes_first():
    # rule 6: precedence 40 (::/0) over 35 (IPv4-mapped), whatever DNS said first
    assert order(Destination(V4, ROUTE_V4), Destination(V6, ROUTE_V6)) == [V6, V4]


def test_no_route_or_no_source_goes_last():
    no_route = RouteResult(failure="route.none")
    assert order(Destination(V6, no_route), Destination(V4, ROUTE_V4)) == [V4, V6]
    assert order(Destination(V6, None), Destination(V4, ROUTE_V4)) == [V4, V6]


def test_ula_or_link_local_source_puts_ipv4_first():
    ula = RouteResult(interface="eth0", source="fd00:2::1")
    assert order(Destination(V6, ula), Destination(V4, ROUTE_V4)) == [V4, V6]  # rule 5
    link_local = RouteResult(interface="eth0", source="fe80::5")
    assert order(Destination(V6, link_local), Destination(V4, ROUTE_V4)) == [V4, V6]  # rule 2


def test_teredo_and_6to4_destinations_come_after_ipv4():
    teredo = RouteResult(interface="tun0", source="2001:0:4136:e378::1")
    assert order(Destination("2001:0:5ef5:79fd::1", teredo), Destination(V4, ROUTE_V4)) == [
        V4,
        "2001:0:5ef5:79fd::1",
    ]
    six_to_four = RouteResult(interface="tun6to4", source="2002:c000:204::1")
    assert order(Destination("2002:c633:6401::1", six_to_four), Destination(V4, ROUTE_V4)) == [
        V4,
        "2002:c633:6401::1",
    ]


def test_longest_common_prefix_with_the_source_within_a_family_then_dns_order():
    near, far = "2001:db8:2::99", "2001:db8:ff::10"
    assert order(Destination(far, ROUTE_V6), Destination(near, ROUTE_V6)) == [near, far]
    # rule 10: equal in every rule, the DNS order stays
    a, b = "198.18.10.4", "198.18.10.5"
    assert order(Destination(b, ROUTE_V4), Destination(a, ROUTE_V4)) == [b, a]


def test_first_per_family_keeps_the_order():
    ds = rfc6724_order(
        [Destination(V4, ROUTE_V4), Destination("198.18.10.5", ROUTE_V4), Destination(V6, ROUTE_V6)]
    )
    assert [d.address for d in first_per_family(ds)] == [V6, V4]


def test_ipv6_first_and_answering_is_what_users_get():
    choice = choose([Destination(V4, ROUTE_V4), Destination(V6, ROUTE_V6)], {V4: OPEN, V6: OPEN})
    assert (choice.chosen.address, choice.family, choice.reason, choice.failed) == (
        V6,
        "ipv6",
        "first",
        (),
    )
    e = family_evidence(V6, choice)
    assert (e.kind, e.name, e.address) == ("family", "ipv6", V6)
    assert "first in RFC 6724 order (source 2001:db8:2::1 via fe80::1 on eth0)" in e.text
    # on the IPv4 result of `both`: users do not get this one
    other = family_evidence(V4, choice)
    assert (other.name, other.address) == ("ipv6", V6)
    assert other.text.endswith(f"{V4} is not the address users get")
    assert ipv6_blackhole(choice, 443) is None


def test_ipv6_blackhole_falls_back_to_ipv4_and_is_a_finding():
    choice = choose(
        [Destination(V4, ROUTE_V4), Destination(V6, ROUTE_V6)], {V4: OPEN, V6: FILTERED}
    )
    assert (choice.chosen.address, choice.reason) == (V4, "fallback")
    assert [(d.address, r) for d, r in choice.failed] == [(V6, FILTERED)]
    e = family_evidence(V4, choice)
    assert (e.name, e.address) == ("ipv4", V4)
    assert "after falling back (RFC 8305): 2001:db8:ff::10 (tcp.filtered)" in e.text
    f = ipv6_blackhole(choice, 443)
    assert f is not None
    assert (f.kind, f.severity, f.circuit, f.asymmetry) == (
        "ipv6-blackhole",
        "warning",
        None,
        False,
    )
    assert [(x.kind, x.name, x.address) for x in f.evidence] == [
        ("family", "ipv6", V6),
        ("tcp", "filtered", V6),
        ("family", "ipv4", V4),
    ]
    assert "250 ms" in f.evidence[2].text
    assert f.fix is not None and V6 in f.fix


def test_a_refused_ipv6_handshake_falls_back_too():
    choice = choose([Destination(V4, ROUTE_V4), Destination(V6, ROUTE_V6)], {V4: OPEN, V6: REFUSED})
    assert (choice.family, choice.reason) == ("ipv4", "fallback")
    f = ipv6_blackhole(choice, 443)
    assert f is not None and f.evidence[1].name == "closed"


def test_ipv6_without_a_route_is_no_blackhole():
    # The host has no IPv6 route: clients never try it (no finding), IPv4 is simply first.
    no_route = RouteResult(failure="route.none")
    choice = choose([Destination(V4, ROUTE_V4), Destination(V6, no_route)], {V4: OPEN})
    assert (choice.family, choice.reason) == ("ipv4", "first")
    assert ipv6_blackhole(choice, 443) is None


def test_ipv4_failing_with_ipv6_after_it_is_no_ipv6_blackhole():
    ula = RouteResult(interface="eth0", source="fd00:2::1")
    choice = choose([Destination(V4, ROUTE_V4), Destination(V6, ula)], {V4: FILTERED, V6: OPEN})
    assert (choice.family, choice.reason) == ("ipv6", "fallback")
    assert ipv6_blackhole(choice, 443) is None


def test_nothing_answers_users_are_left_with_the_first():
    choice = choose(
        [Destination(V4, ROUTE_V4), Destination(V6, ROUTE_V6)], {V4: FILTERED, V6: FILTERED}
    )
    assert (choice.chosen.address, choice.reason) == (V6, "none-answered")
    e = family_evidence(V6, choice)
    assert e.name == "ipv6" and "no family's TCP handshake succeeded" in e.text
    assert ipv6_blackhole(choice, 443) is None


def test_one_family_only():
    choice = choose([Destination(V4, ROUTE_V4)], {})
    assert (choice.family, choice.reason) == ("ipv4", "only-family")
    assert "the name has no other family" in family_evidence(V4, choice).text
    assert family_of("2001:db8::1") == "ipv6" and family_of("192.0.2.1") == "ipv4"
