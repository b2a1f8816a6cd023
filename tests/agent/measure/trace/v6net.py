"""A throwaway dual-stack network of namespaces for the raw-socket tests (root; not the shared lab).

    client ── r1 ─┬─ r2a ─┬─ r3 ── server
                  └─ r2b ─┘

r1 splits flows over r2a and r2b (an IPv6 multipath route; Linux hashes
source, destination, flow label and next header), r3 has a route that says
unreachable (2001:db8:99::/64), the server listens on 443, answers RST on
444 and drops 445 (nftables).  Forwarding is on, ICMPv6 rate limiting off
(net.ipv6.icmp.ratelimit=0) so hop lists compare deterministically with
`traceroute -6` -- or at the kernel's default (a burst of 6, then one per
1000 ms) with `rate_limit`.
`services` more addresses on the server (`service_addresses`) give the
benchmark many targets behind one path.  Every IPv6 address 2001:db8:N::X
has an IPv4 twin 10.6.N.X (`v4`) on the same interface, with the same
routes, so both families can be traced in one run.  Namespaces are named `<prefix>-<node>` with the prefix
from ERPATH_LAB_PREFIX (default "v6t"), and deleted on exit.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from tests.lab.nsenter import netns, write_sysctls

CLIENT = "2001:db8:1::10"
SERVER = "2001:db8:6::10"
UNREACHABLE = "2001:db8:99::10"  # r3 has an "unreachable" route for it
R1 = "2001:db8:1::1"
R2A, R2B = "2001:db8:2::2", "2001:db8:3::2"
R3 = ("2001:db8:4::2", "2001:db8:5::2")
OPEN, CLOSED, FILTERED = 443, 444, 445


def v4(address: str) -> str:
    """The IPv4 twin of one of this network's IPv6 addresses or routes: 2001:db8:N::X -> 10.6.N.X."""
    if address == "default":
        return address
    if address == "2001:db8::/32":
        return "10.6.0.0/16"
    net, _, length = address.partition("/")
    n, x = net.removeprefix("2001:db8:").split("::")
    twin = f"10.6.{n}.{x or 0}"
    return f"{twin}/24" if length else twin


SERVER4 = v4(SERVER)
CLIENT4 = v4(CLIENT)
NODES = ("c", "r1", "r2a", "r2b", "r3", "s")

# (node, ifname, address/64, peer node, peer ifname, peer address/64)
_LINKS = (
    ("c", "c-r1", "2001:db8:1::10", "r1", "r1-c", "2001:db8:1::1"),
    ("r1", "r1-a", "2001:db8:2::1", "r2a", "r2a-r1", "2001:db8:2::2"),
    ("r1", "r1-b", "2001:db8:3::1", "r2b", "r2b-r1", "2001:db8:3::2"),
    ("r2a", "r2a-r3", "2001:db8:4::1", "r3", "r3-a", "2001:db8:4::2"),
    ("r2b", "r2b-r3", "2001:db8:5::1", "r3", "r3-b", "2001:db8:5::2"),
    ("r3", "r3-s", "2001:db8:6::1", "s", "s-r3", "2001:db8:6::10"),
)
_ROUTES = (
    ("c", "default via 2001:db8:1::1"),
    (
        "r1",
        "2001:db8::/32 nexthop via 2001:db8:2::2 dev r1-a nexthop via 2001:db8:3::2 dev r1-b",
    ),
    ("r2a", "2001:db8:1::/64 via 2001:db8:2::1"),
    ("r2a", "default via 2001:db8:4::2"),
    ("r2b", "2001:db8:1::/64 via 2001:db8:3::1"),
    ("r2b", "default via 2001:db8:5::2"),
    ("r3", "2001:db8:1::/64 via 2001:db8:4::1"),
    ("r3", "unreachable 2001:db8:99::/64"),
    ("s", "default via 2001:db8:6::1"),
)
_NFT = f"""
table inet v6trace {{
  chain input {{
    type filter hook input priority 0; policy accept;
    tcp dport {FILTERED} drop
  }}
}}
"""


@dataclass(frozen=True, slots=True)
class V6Net:
    prefix: str

    def ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def run(self, node: str, argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns(node), *argv],
            capture_output=True,
            text=True,
            check=False,
        )

    def netns(self, node: str):
        return netns(self.ns(node))


def service_addresses(n: int) -> list[str]:
    return [f"2001:db8:6::{0x100 + i:x}" for i in range(n)]


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)


def _delete(net: V6Net) -> None:
    for node in NODES:
        subprocess.run(["ip", "netns", "del", net.ns(node)], capture_output=True, check=False)


def _warm(net: V6Net, addresses: list[str]) -> None:
    """One handshake per address, so every router knows its neighbours before a test.

    A router's first ICMPv6 error towards a neighbour it has not resolved yet
    is lost (seen on 6.18: the first traceroute to a fresh r1 gets no answer
    at all), which no real network shows and no test should depend on.  The
    handshakes cost the routers no ICMP token.
    """
    with net.netns("c"):
        for address in addresses:
            with socket.create_connection((address, OPEN), timeout=2.0):
                pass


@contextmanager
def v6net(*, rate_limit: bool = False, services: int = 0, tag: str = "") -> Iterator[V6Net]:
    """Build the network, yield it with the server listening, delete it afterwards.

    `tag` goes after the prefix in the namespace names, so two networks can be up at once.
    """
    net = V6Net(os.environ.get("ERPATH_LAB_PREFIX", "v6t")[:8] + tag)
    _delete(net)  # a run that was killed leaves its namespaces behind
    try:
        for node in NODES:
            _ip("netns", "add", net.ns(node))
            _ip("-n", net.ns(node), "link", "set", "lo", "up")
            write_sysctls(
                net.ns(node),
                {
                    "net.ipv4.ip_forward": 1,
                    "net.ipv4.icmp_ratelimit": 1000 if rate_limit else 0,
                    "net.ipv4.fib_multipath_hash_policy": 0,
                    "net.ipv6.conf.all.forwarding": 1,
                    "net.ipv6.conf.default.accept_dad": 0,
                    "net.ipv6.icmp.ratelimit": 1000 if rate_limit else 0,
                    "net.ipv6.fib_multipath_hash_policy": 0,
                },
            )
        for node, ifname, addr, peer, peer_if, peer_addr in _LINKS:
            _ip("link", "add", ifname, "netns", net.ns(node), "type", "veth", "peer", "name",
                peer_if, "netns", net.ns(peer))  # fmt: skip
            for n, i, a in ((node, ifname, addr), (peer, peer_if, peer_addr)):
                _ip("-n", net.ns(n), "-6", "addr", "add", f"{a}/64", "dev", i, "nodad")
                _ip("-n", net.ns(n), "addr", "add", f"{v4(a)}/24", "dev", i)
                _ip("-n", net.ns(n), "link", "set", i, "up")
        for address in service_addresses(services):
            _ip("-n", net.ns("s"), "-6", "addr", "add", f"{address}/64", "dev", "s-r3", "nodad")
        for node, route in _ROUTES:
            _ip("-n", net.ns(node), "-6", "route", "add", *route.split())
            words = [
                v4(w) if w.startswith("2001:db8") or w == "default" else w for w in route.split()
            ]
            _ip("-n", net.ns(node), "-4", "route", "add", *words)
        subprocess.run(
            ["ip", "netns", "exec", net.ns("s"), "nft", "-f", "-"],
            input=_NFT,
            text=True,
            check=True,
            capture_output=True,
        )
        with ExitStack() as stack:
            with net.netns("s"):
                for port in (OPEN, FILTERED):  # 445 listens too: only the firewall makes it silent
                    srv = stack.enter_context(socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
                    srv.bind(("::", port))
                    srv.listen(64)
            _warm(net, [SERVER, SERVER4, *service_addresses(services)])
            yield net
    finally:
        _delete(net)
