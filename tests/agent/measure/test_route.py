"""agent.measure.route against real kernel routes in throw-away network namespaces.

The site namespace has a veth link to a gateway namespace and models what a
datacenter host sees: a BGP-learned Microsoft prefix, a DHCP default route, a
policy rule sending one prefix to its own table, a source-based rule, rules
that must not match (fwmark, uidrange), a wg-quick style
`suppress_prefixlength 0` rule, and routes and rules that say "no route".
Every answer is compared with what `ip route get` prints for the same address.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from pyroute2 import netns

from agent.measure import route as agent_route
from agent.report import FAILURE_CODES, RouteResult

T = TypeVar("T")

SETUP = """
ip link set lo up
ip addr add 10.9.0.1/32 dev lo
ip link set v0 up
ip addr add 10.1.0.1/24 dev v0
ip -6 addr add 2001:db8:1::1/64 dev v0 nodad
ip route add default via 10.1.0.254 proto dhcp
ip route add 198.18.0.0/15 via 10.1.0.2 proto bgp
ip -6 route add 2001:db8:ff::/48 via 2001:db8:1::2 proto bird
ip route add unreachable 198.51.100.0/25
ip route add blackhole 198.51.100.128/25
ip route add 203.0.113.0/24 via 10.1.0.3 proto static table 100
ip route add default via 10.1.0.4 proto ospf table 200
ip route add 203.0.113.0/24 via 10.1.0.5 table 300
ip rule add priority 50 fwmark 0x1 lookup 300
ip rule add priority 100 to 203.0.113.0/24 lookup 100
ip rule add priority 110 uidrange 1000-2000 lookup 300
ip rule add priority 120 from 10.9.0.0/16 lookup 200
ip rule add priority 150 lookup main suppress_prefixlength 0
ip rule add priority 300 to 100.64.0.0/10 prohibit
"""


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """A namespace `rtdev-<id>` wired to `rtdev-<id>-gw`; both removed afterwards."""
    name = f"rtdev-{uuid.uuid4().hex[:8]}"
    gw = f"{name}-gw"
    try:
        _sh(f"ip netns add {name}")
        _sh(f"ip netns add {gw}")
        _sh(f"ip -n {name} link add v0 type veth peer name v1 netns {gw}")
        _sh(f"ip -n {gw} link set v1 up")
        _sh(f"ip -n {gw} addr add 10.1.0.2/24 dev v1")
        _ip_script(name, SETUP)
        yield name
    finally:
        for ns in (name, gw):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _sh(command: str) -> str:
    done = subprocess.run(command.split(), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{command}: {done.stderr.strip()}")
    return done.stdout


def _ip_script(name: str, script: str) -> None:
    """Run each `ip ...` line of `script` in namespace `name`."""
    for line in script.strip().splitlines():
        _sh(f"ip -n {name} {line.removeprefix('ip ')}")


def in_ns(name: str, fn: Callable[[], T]) -> T:
    """Run `fn` with this thread in namespace `name` (the netlink socket is made there)."""
    netns.pushns(name)
    try:
        return fn()
    finally:
        netns.popns()


def ip_route_get(name: str, address: str, *extra: str) -> dict:
    done = subprocess.run(
        ["ip", "-n", name, "-j", "route", "get", *extra, address], capture_output=True, text=True
    )
    return json.loads(done.stdout)[0] if done.returncode == 0 else {"error": done.stderr.strip()}


def assert_same_as_ip(name: str, address: str, r: RouteResult, *extra: str) -> None:
    ip = ip_route_get(name, address, *extra)
    fib = ip_route_get(name, address, "fibmatch", *extra)
    assert r.interface == ip["dev"]
    assert r.gateway == ip.get("gateway")
    assert r.source == ip.get("prefsrc")
    assert agent_route.table_name(r.table) == ip.get("table", "main")
    assert r.protocol == fib.get("protocol", "unspec")


def assert_routes(name: str, expected: list[tuple]) -> dict[str, RouteResult]:
    """Look up every address of `expected` at once in namespace `name`: each result is its row
    (interface, gateway, source, table, protocol, rule; no failure) and what `ip route get` says."""
    addresses = [e[0] for e in expected]
    results = in_ns(name, lambda: agent_route.route_get_many(addresses))
    assert list(results) == addresses
    for address, *row in expected:
        r = results[address]
        got = (r.interface, r.gateway, r.source, r.table, r.protocol, r.rule, r.failure)
        assert got == (*row, None), address
        assert_same_as_ip(name, address, r)
    return results


# (address, interface, gateway, source, table, protocol, rule)
EXPECTED = [
    (
        "198.18.1.1",
        "v0",
        "10.1.0.2",
        "10.1.0.1",
        254,
        "bgp",
        "priority 150 from all lookup main suppress_prefixlength 0",
    ),
    # The default route is suppressed at 150 and found again by the main rule.
    ("192.0.2.1", "v0", "10.1.0.254", "10.1.0.1", 254, "dhcp", None),
    (
        "203.0.113.5",
        "v0",
        "10.1.0.3",
        "10.1.0.1",
        100,
        "static",
        "priority 100 from all to 203.0.113.0/24 lookup 100",
    ),
    (
        "10.1.0.7",
        "v0",
        None,
        "10.1.0.1",
        254,
        "kernel",
        "priority 150 from all lookup main suppress_prefixlength 0",
    ),
    ("10.1.0.1", "lo", None, "10.1.0.1", 255, "kernel", None),
    ("2001:db8:ff::1", "v0", "2001:db8:1::2", "2001:db8:1::1", 254, "bird", None),
]


@pytest.mark.root
def test_routes_match_ip_route_get(site: str) -> None:
    results = assert_routes(site, EXPECTED)
    for r in results.values():
        assert 0 < r.duration_s < 0.5


@pytest.mark.root
def test_source_based_rule_chooses_its_table(site: str) -> None:
    r = in_ns(site, lambda: agent_route.route_get("198.18.1.1", source="10.9.0.1"))
    assert (r.gateway, r.table, r.protocol, r.rule) == (
        "10.1.0.4",
        200,
        "ospf",
        "priority 120 from 10.9.0.0/16 lookup 200",
    )
    assert_same_as_ip(site, "198.18.1.1", r, "from", "10.9.0.1")


@pytest.mark.root
@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("198.51.100.1", None),  # unreachable route
        ("198.51.100.200", None),  # blackhole route
        ("100.64.1.1", "priority 300 from all to 100.64.0.0/10 prohibit"),
        ("2001:db8:dead::1", None),  # no IPv6 default route
    ],
)
def test_no_route(site: str, address: str, rule: str | None) -> None:
    r = in_ns(site, lambda: agent_route.route_get(address))
    assert "route.none" in FAILURE_CODES
    assert (r.failure, r.rule, r.interface, r.gateway) == ("route.none", rule, None, None)
    assert "error" in ip_route_get(site, address)


@pytest.mark.root
def test_non_local_source_is_a_route_error(site: str) -> None:
    # `ip route get ADDR from SRC` with a source the host does not own says
    # "Network is unreachable": a configuration fault, not a missing route.
    r = in_ns(site, lambda: agent_route.route_get("198.18.1.1", source="10.200.0.1"))
    assert r.failure == "route.error"


@pytest.mark.root
def test_rules_are_read_as_ip_rule_prints_them(site: str) -> None:
    def rules() -> list[str]:
        with agent_route.RouteLookup() as lookup:
            return [r.describe() for r in lookup.rules() if r.family == 2]

    described = in_ns(site, rules)
    assert described == [
        "priority 0 from all lookup local",
        "priority 50 from all fwmark 0x1 lookup 300",
        "priority 100 from all to 203.0.113.0/24 lookup 100",
        "priority 110 from all uidrange 1000-2000 lookup 300",
        "priority 120 from 10.9.0.0/16 lookup 200",
        "priority 150 from all lookup main suppress_prefixlength 0",
        "priority 300 from all to 100.64.0.0/10 prohibit",
        "priority 32766 from all lookup main",
        "priority 32767 from all lookup default",
    ]


@pytest.mark.root
def test_many_addresses_are_quick(site: str) -> None:
    addresses = [f"198.18.{i}.1" for i in range(64)] + ["192.0.2.9", "100.64.0.1"]
    results = in_ns(site, lambda: agent_route.route_get_many([*addresses, *addresses]))
    assert len(results) == len(addresses)
    assert {results[a].protocol for a in addresses[:64]} == {"bgp"}
    assert results["100.64.0.1"].failure == "route.none"
    assert sum(r.duration_s for r in results.values()) < 1.0


def test_bad_input_raises_before_asking_the_kernel() -> None:
    with pytest.raises(ValueError, match="'cdn.example' is not an IP address"):
        agent_route.route_get_many(["198.18.1.1", "cdn.example"])
    with pytest.raises(ValueError, match="differ in family"):
        agent_route.route_get("2001:db8::1", source="127.0.0.1")
    assert agent_route.route_get_many([]) == {}


def test_loopback_in_this_namespace() -> None:
    # Harmless anywhere: 127.0.0.1 is always routed via lo.  Its table is
    # "local", or "main" where no custom rule exists (the kernel then merges
    # the local table into main), so compare with what `ip route get` says.
    r = agent_route.route_get("127.0.0.1")
    assert (r.interface, r.source, r.protocol, r.rule, r.failure) == (
        "lo",
        "127.0.0.1",
        "kernel",
        None,
        None,
    )
    ip = json.loads(_sh("ip -j route get 127.0.0.1"))[0]
    assert agent_route.table_name(r.table) == ip.get("table", "main")


def test_protocol_and_table_names() -> None:
    assert [agent_route.protocol_name(n) for n in (2, 3, 4, 11, 12, 16, 186, 188, 250)] == [
        "kernel",
        "boot",
        "static",
        "zebra",
        "bird",
        "dhcp",
        "bgp",
        "ospf",
        "250",
    ]
    assert [agent_route.table_name(n) for n in (100, 253, 254, 255)] == [
        "100",
        "default",
        "main",
        "local",
    ]


@pytest.mark.root
def test_watch_routes_reports_changed_prefixes(site: str) -> None:
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        # This thread alone moves into the site namespace (setns is per thread).
        netns.setns(site)
        agent_route.watch_routes(seen.append, stop)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        time.sleep(0.5)  # subscribed before the first change
        _sh(f"ip -n {site} route add 198.51.100.64/26 via 10.1.0.2 proto bgp")
        _sh(f"ip -n {site} route del 198.51.100.64/26 via 10.1.0.2")
        _sh(f"ip -n {site} rule add priority 400 to 192.0.2.0/24 lookup 100")
        _sh(f"ip -n {site} rule del priority 400")
        _wait_for(lambda: seen.count("192.0.2.0/24") == 2)
        assert seen.count("198.51.100.64/26") == 2  # added, then withdrawn
        seen.clear()
        # A link going down drops its IPv4 routes silently: everything may have moved.
        _sh(f"ip -n {site} link add w0 type veth peer name w1")
        _wait_for(lambda: "0.0.0.0/0" in seen and "::/0" in seen)
    finally:
        stop.set()
        watcher.join(timeout=2)
        subprocess.run(["ip", "-n", site, "link", "del", "w0"], capture_output=True)
    assert not watcher.is_alive()


def _wait_for(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for route notifications"
        time.sleep(0.05)


# --------------------------------------------------------------------------- IPv6

# A dual-stack host: a global IPv6 address and a ULA on one link, IPv6 routes
# with a chosen source, an IPv6 policy rule, an IPv6 unreachable route.
SETUP_V6 = """
ip link set lo up
ip link set v0 up
ip addr add 10.2.0.1/24 dev v0
ip -6 addr add 2001:db8:2::1/64 dev v0 nodad
ip -6 addr add fd00:2::1/64 dev v0 nodad
ip route add default via 10.2.0.254 proto dhcp
ip -6 route add default via 2001:db8:2::fe proto ra
ip -6 route add 2001:db8:aa::/48 via fe80::2 dev v0 src fd00:2::1 proto static
ip -6 route add 2001:db8:ee::/48 via 2001:db8:2::5 proto bgp table 100
ip -6 route add unreachable 2001:db8:dd::/48
ip -6 rule add priority 100 to 2001:db8:ee::/48 lookup 100
"""


@pytest.fixture(scope="module")
def dual() -> Iterator[str]:
    name = f"rtdev6-{uuid.uuid4().hex[:8]}"
    try:
        _sh(f"ip netns add {name}")
        _sh(f"ip -n {name} link add v0 type veth peer name v1")
        _ip_script(name, SETUP_V6)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


# (address, interface, gateway, source, table, protocol, rule)
EXPECTED_V6 = [
    ("2001:db8:ff::1", "v0", "2001:db8:2::fe", "2001:db8:2::1", 254, "ra", None),
    # The route's own source: a ULA, so RFC 6724 puts IPv4 first (rule 5).
    ("2001:db8:aa::1", "v0", "fe80::2", "fd00:2::1", 254, "static", None),
    (
        "2001:db8:ee::1",
        "v0",
        "2001:db8:2::5",
        "2001:db8:2::1",
        100,
        "bgp",
        "priority 100 from all to 2001:db8:ee::/48 lookup 100",
    ),
    ("2001:db8:2::7", "v0", None, "2001:db8:2::1", 254, "kernel", None),
]


@pytest.mark.root
def test_ipv6_routes_give_gateway_interface_and_preferred_source(dual: str) -> None:
    assert_routes(dual, EXPECTED_V6)
    unreachable = in_ns(dual, lambda: agent_route.route_get("2001:db8:dd::1"))
    assert (unreachable.failure, unreachable.source) == ("route.none", None)


@pytest.mark.root
def test_users_order_from_real_ipv6_routes(dual: str) -> None:
    """RFC 6724 on the kernel's answers: global IPv6 first, a ULA source or no route after IPv4."""
    from agent.verdict.family import Destination, rfc6724_order

    v4, v6, ula, dead = "198.18.1.1", "2001:db8:ff::1", "2001:db8:aa::1", "2001:db8:dd::1"
    routes = in_ns(dual, lambda: agent_route.route_get_many([v4, v6, ula, dead]))

    def order(*addresses: str) -> list[str]:
        return [d.address for d in rfc6724_order([Destination(a, routes[a]) for a in addresses])]

    assert order(v4, v6) == [v6, v4]
    assert order(v4, ula) == [v4, ula]
    assert order(dead, v4) == [v4, dead]
