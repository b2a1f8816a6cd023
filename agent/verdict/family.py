"""Which address family the host's users get: RFC 6724 destination order, RFC 8305 fallback.

A dual-stack client sorts a name's addresses (RFC 6724, what getaddrinfo
does) and connects to them in that order, moving to the next family when a
handshake does not complete (Happy Eyeballs, RFC 8305).  glibc sorts only
the answers of one query, so the agent cannot borrow getaddrinfo's order for
addresses its own resolver found: the rules are applied here to the kernel's
route and preferred source for each address (the route lookup), with the
default policy table (/etc/gai.conf is not read).  Rules 3, 4 and 7 need
facts a route lookup does not give (deprecated, home and 6to4 relay
addresses) and are left out.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from agent.report import Evidence, Family, Finding, RouteResult, TcpResult

_Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 6724 section 2.1, the default policy table: (prefix, precedence, label).
# IPv4 addresses are looked up as IPv4-mapped (::ffff:0:0/96).
_POLICY: tuple[tuple[ipaddress.IPv6Network, int, int], ...] = tuple(
    (ipaddress.IPv6Network(p), precedence, label)
    for p, precedence, label in (
        ("::1/128", 50, 0),
        ("::/0", 40, 1),
        ("::ffff:0:0/96", 35, 4),
        ("2002::/16", 30, 2),
        ("2001::/32", 5, 5),
        ("fc00::/7", 3, 13),
        ("::/96", 1, 3),
        ("fec0::/10", 1, 11),
        ("3ffe::/16", 1, 12),
    )
)
# Longest prefix first: the first match is the policy.
_POLICY_BY_LENGTH = sorted(_POLICY, key=lambda row: -row[0].prefixlen)

_LINK_LOCAL_SCOPE, _SITE_LOCAL_SCOPE, _GLOBAL_SCOPE = 0x2, 0x5, 0xE

# RFC 8305 section 8: the Connection Attempt Delay a Happy Eyeballs client
# waits for the first family's handshake before starting the next one.
CONNECTION_ATTEMPT_DELAY_S = 0.25


def family_of(address: str) -> Family:
    return "ipv6" if ipaddress.ip_address(address).version == 6 else "ipv4"


def _label(family: Family) -> str:
    return "IPv6" if family == "ipv6" else "IPv4"


def _as_v6(ip: _Addr) -> ipaddress.IPv6Address:
    if ip.version == 6:
        return ip  # type: ignore[return-value]
    return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed)


@functools.lru_cache(maxsize=4096)
def _policy(ip: _Addr) -> tuple[int, int]:
    """(precedence, label) of an address in the default policy table."""
    v6 = _as_v6(ip)
    for net, precedence, label in _POLICY_BY_LENGTH:
        if v6 in net:
            return precedence, label
    return 40, 1  # unreachable: ::/0 matches everything


def _scope(ip: _Addr) -> int:
    """RFC 6724 section 3.1 (IPv4: loopback and 169.254/16 are link-local, the rest global)."""
    if ip.version == 4:
        return _LINK_LOCAL_SCOPE if ip.is_loopback or ip.is_link_local else _GLOBAL_SCOPE
    if ip.is_multicast:
        return ip.packed[1] & 0x0F
    if ip.is_loopback or ip.is_link_local:
        return _LINK_LOCAL_SCOPE
    if ip.is_site_local:
        return _SITE_LOCAL_SCOPE
    return _GLOBAL_SCOPE


def _common_prefix_bits(a: _Addr, b: _Addr) -> int:
    x = int(a) ^ int(b)
    return a.max_prefixlen - x.bit_length()


@dataclass(frozen=True, slots=True)
class Destination:
    """One address of a name with the kernel's route to it (None: not looked up)."""

    address: str
    route: RouteResult | None = None

    @property
    def source(self) -> str | None:
        r = self.route
        return r.source if r is not None and r.failure is None else None


def _sort_key(d: Destination, rank: int, same_family_peers: bool) -> tuple:
    """Ascending key: the RFC 6724 section 6 rules in order, the DNS order (rule 10) last."""
    ip = ipaddress.ip_address(d.address)
    src_text = d.source
    if src_text is None:  # rule 1: no route, or no source address: unusable
        return (1, 0, 0, 0, 0, 0, rank)
    src = ipaddress.ip_address(src_text)
    precedence, label = _policy(ip)
    _src_precedence, src_label = _policy(src)
    scope, src_scope = _scope(ip), _scope(src)
    # Rule 9 compares addresses of one family only (the common prefix with the source).
    common = _common_prefix_bits(ip, src) if same_family_peers and src.version == ip.version else 0
    return (
        0,
        0 if scope == src_scope else 1,  # rule 2: matching scope
        0 if label == src_label else 1,  # rule 5: matching label
        -precedence,  # rule 6: higher precedence
        scope,  # rule 8: smaller scope
        -common,  # rule 9: longest matching prefix
        rank,  # rule 10: otherwise the order DNS gave
    )


def rfc6724_order(destinations: Sequence[Destination]) -> tuple[Destination, ...]:
    """The destinations in the order a dual-stack client tries them."""
    families = [ipaddress.ip_address(d.address).version for d in destinations]
    keyed = [
        (_sort_key(d, i, families.count(families[i]) > 1), d) for i, d in enumerate(destinations)
    ]
    return tuple(d for _, d in sorted(keyed, key=lambda kd: kd[0]))


def first_per_family(ordered: Sequence[Destination]) -> tuple[Destination, ...]:
    """The first address of each family, in the given order (what a client falls back across)."""
    seen: set[int] = set()
    out = []
    for d in ordered:
        v = ipaddress.ip_address(d.address).version
        if v not in seen:
            seen.add(v)
            out.append(d)
    return tuple(out)


Reason = Literal["first", "fallback", "none-answered", "only-family"]


@dataclass(frozen=True, slots=True)
class FamilyChoice:
    """The address (so the family) users reach a target on, and why."""

    order: tuple[Destination, ...]  # one per family, RFC 6724 order
    chosen: Destination
    reason: Reason
    # The other addresses whose handshake failed, with the outcome: those
    # tried before `chosen` (none before it when no family answered).
    failed: tuple[tuple[Destination, TcpResult | None], ...] = ()

    @property
    def family(self) -> Family:
        return family_of(self.chosen.address)


def choose(
    destinations: Sequence[Destination], tcp: Mapping[str, TcpResult | None]
) -> FamilyChoice:
    """The first destination per family in RFC 6724 order whose handshake completes (RFC 8305).

    A SYN-ACK completes a handshake; a RST, silence or an error does not, and
    the client moves to the next family.  When none completes, users are
    left with the first in order.
    """
    order = first_per_family(rfc6724_order(destinations))
    if len(order) == 1:
        return FamilyChoice(order, order[0], "only-family")
    failed: list[tuple[Destination, TcpResult | None]] = []
    for d in order:
        r = tcp.get(d.address)
        if r is not None and r.state == "open":
            return FamilyChoice(order, d, "fallback" if failed else "first", tuple(failed))
        failed.append((d, r))
    return FamilyChoice(order, order[0], "none-answered", tuple(failed[1:]))


def _why_first(d: Destination) -> str:
    route = d.route
    if d.source is None:
        why = route.failure if route is not None and route.failure else "no route"
        return f"the host has no usable route to it ({why})"
    via = f" via {route.gateway}" if route is not None and route.gateway else ""
    dev = f" on {route.interface}" if route is not None and route.interface else ""
    return f"source {d.source}{via}{dev}"


def family_evidence(address: str | None, choice: FamilyChoice) -> Evidence:
    """Which family users get for this target, and why: for each result of the target."""
    chosen = choice.chosen
    label = _label(choice.family)
    first = choice.order[0]
    if choice.reason == "only-family":
        text = f"users reach it over {label} ({chosen.address}): the name has no other family"
    elif choice.reason == "first":
        text = (
            f"users reach it over {label} ({chosen.address}): first in RFC 6724 order "
            f"({_why_first(chosen)}) and its TCP handshake succeeded"
        )
    elif choice.reason == "fallback":
        tried = ", ".join(
            f"{d.address} ({r.failure or r.state if r else 'not probed'})" for d, r in choice.failed
        )
        text = (
            f"users reach it over {label} ({chosen.address}) after falling back (RFC 8305): "
            f"{tried} came first in RFC 6724 order but its handshake did not complete"
        )
    else:
        text = (
            f"users try {label} ({first.address}) first (RFC 6724 order, {_why_first(first)}), "
            "but no family's TCP handshake succeeded"
        )
    if address is not None and address != chosen.address and choice.reason != "none-answered":
        text += f"; {address} is not the address users get"
    return Evidence("family", text, name=choice.family, address=chosen.address)


def ipv6_blackhole(choice: FamilyChoice, port: int) -> Finding | None:
    """IPv6 came first in the users' order and is routed, but its handshake died while IPv4's completed."""
    if choice.reason != "fallback" or choice.family != "ipv4":
        return None
    dead = [(d, r) for d, r in choice.failed if family_of(d.address) == "ipv6"]
    if not dead:
        return None
    d, r = dead[0]
    state = (r.failure or r.state) if r is not None else "not probed"
    evidence = (
        Evidence(
            "family",
            f"{d.address} (IPv6) comes first in RFC 6724 order ({_why_first(d)}): "
            "dual-stack clients try it first",
            name="ipv6",
            address=d.address,
        ),
        Evidence(
            "tcp",
            f"the TCP handshake to {d.address} port {port} did not complete ({state})",
            name=r.state if r is not None else None,
            address=d.address,
        ),
        Evidence(
            "family",
            f"the TCP handshake to {choice.chosen.address} (IPv4) port {port} succeeded: "
            f"Happy Eyeballs clients fall back to it after {CONNECTION_ATTEMPT_DELAY_S * 1000:.0f} ms, "
            "clients without it only after their connect timeout",
            name="ipv4",
            address=choice.chosen.address,
        ),
    )
    return Finding(
        kind="ipv6-blackhole",
        severity="warning",
        evidence=evidence,
        fix=(
            f"find where IPv6 to {d.address} dies: the firewall's IPv6 rules, the IPv6 route "
            "at the ER edge or internet edge, and (over ExpressRoute) the circuit's IPv6 "
            "Microsoft peering and the site's IPv6 prefixes in its advertised prefixes; "
            "while it is broken, withdraw the host's IPv6 default route or prefer IPv4 in "
            "/etc/gai.conf"
        ),
    )
