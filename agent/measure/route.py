"""The kernel's route to each destination, as `ip route get` sees it.

`route_get_many(addresses)` asks the kernel over one rtnetlink socket
(`agent.measure.netlink`), twice per address:

- a plain route lookup (what `ip route get ADDR` prints): output interface,
  gateway, preferred source and the table that held the route;
- a `fibmatch` lookup (`ip route get fibmatch ADDR`): the FIB entry itself,
  whose protocol (bgp, static, kernel ...) the plain lookup does not carry.

The kernel does not say which policy rule led to the table, so the rules are
dumped once per batch and walked as the kernel walks them (`Rule.matches`).

`watch_routes(on_change, stop)` listens to the kernel's route, rule and link
notifications and reports the prefixes they touch, so the agent re-probes
the targets inside them at once.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.measure import netlink
from agent.measure.netlink import NetlinkError
from agent.report import RouteResult

log = logging.getLogger(__name__)

# rtnetlink flags of RTM_GETROUTE (linux/rtnetlink.h).
RTM_F_LOOKUP_TABLE = 0x1000  # report the table the route came from, not always "main"
RTM_F_FIB_MATCH = 0x2000  # return the matching FIB entry, not the resolved route

# /etc/iproute2/rt_protos plus the routing daemons' own numbers
# (linux/rtnetlink.h), so reports name protocols the way `ip route` does.
PROTOCOLS = {
    0: "unspec",
    1: "redirect",
    2: "kernel",
    3: "boot",
    4: "static",
    8: "gated",
    9: "ra",
    10: "mrt",
    11: "zebra",
    12: "bird",
    13: "dnrouted",
    14: "xorp",
    15: "ntk",
    16: "dhcp",
    17: "mrouted",
    18: "keepalived",
    42: "babel",
    99: "openr",
    186: "bgp",
    187: "isis",
    188: "ospf",
    189: "rip",
    192: "eigrp",
}
TABLES = {253: "default", 254: "main", 255: "local"}
IP_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}

# The kernel's answer when the lookup ends in "no route": no matching route,
# an unreachable / prohibit / blackhole route or rule.  Blackhole gives
# EINVAL (so does `ip route get`); it is unambiguous because addresses and
# the source are checked before the kernel is asked.
NO_ROUTE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES, errno.EINVAL})

# fib_rules actions (linux/fib_rules.h).
FR_ACT_TO_TBL, FR_ACT_GOTO, FR_ACT_NOP = 1, 2, 3
FR_ACT_BLACKHOLE, FR_ACT_UNREACHABLE, FR_ACT_PROHIBIT = 6, 7, 8
FIB_RULE_INVERT = 0x2
_ACTION_NAMES = {
    FR_ACT_NOP: "nop",
    FR_ACT_BLACKHOLE: "blackhole",
    FR_ACT_UNREACHABLE: "unreachable",
    FR_ACT_PROHIBIT: "prohibit",
}
_NO_SUPPRESS = 0xFFFFFFFF
# The rules every namespace starts with: reporting them would say nothing.
_DEFAULT_RULES = {(0, 255), (32766, 254), (32767, 253)}


def protocol_name(number: int) -> str:
    return PROTOCOLS.get(number, str(number))


def table_name(number: int) -> str:
    return TABLES.get(number, str(number))


@dataclass(frozen=True, slots=True)
class Flow:
    """What a locally originated `ip route get` looks up."""

    destination: ipaddress.IPv4Address | ipaddress.IPv6Address
    source: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    uid: int = 0

    @property
    def family(self) -> int:
        return socket.AF_INET if self.destination.version == 4 else socket.AF_INET6


@dataclass(frozen=True, slots=True)
class Rule:
    """One policy routing rule, from an RTM_NEWRULE message."""

    priority: int
    family: int
    action: int
    table: int
    invert: bool = False
    source: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    destination: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    tos: int = 0
    fwmark: int | None = None
    fwmask: int | None = None
    iif: str | None = None
    oif: str | None = None
    uid_range: tuple[int, int] | None = None
    ip_proto: int | None = None
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None
    l3mdev: bool = False
    goto: int | None = None
    suppress_prefixlength: int | None = None

    @classmethod
    def from_message(cls, msg: Any) -> Rule:
        family = msg["family"]
        src, dst = msg.get_attr("FRA_SRC"), msg.get_attr("FRA_DST")
        suppress = msg.get_attr("FRA_SUPPRESS_PREFIXLEN")
        fwmark = msg.get_attr("FRA_FWMARK")
        fwmask = msg.get_attr("FRA_FWMASK")
        return cls(
            priority=msg.get_attr("FRA_PRIORITY") or 0,
            family=family,
            action=msg["action"],
            table=msg.get_attr("FRA_TABLE") or msg["table"],
            invert=bool(msg["flags"] & FIB_RULE_INVERT),
            source=ipaddress.ip_network(f"{src}/{msg['src_len']}") if src else None,
            destination=ipaddress.ip_network(f"{dst}/{msg['dst_len']}") if dst else None,
            tos=msg["tos"],
            fwmark=fwmark if fwmark or fwmask else None,
            fwmask=fwmask,
            iif=msg.get_attr("FRA_IIFNAME"),
            oif=msg.get_attr("FRA_OIFNAME"),
            uid_range=_range(msg.get_attr("FRA_UID_RANGE")),
            ip_proto=msg.get_attr("FRA_IP_PROTO"),
            sport=_range(msg.get_attr("FRA_SPORT_RANGE")),
            dport=_range(msg.get_attr("FRA_DPORT_RANGE")),
            l3mdev=bool(msg.get_attr("FRA_L3MDEV")),
            goto=msg.get_attr("FRA_GOTO"),
            suppress_prefixlength=None if suppress in (None, _NO_SUPPRESS) else suppress,
        )

    @property
    def is_default(self) -> bool:
        return (
            (self.priority, self.table) in _DEFAULT_RULES
            and self.action == FR_ACT_TO_TBL
            and self.describe()
            == f"priority {self.priority} from all lookup {table_name(self.table)}"
        )

    def matches(self, flow: Flow) -> bool:
        """Whether the kernel's fib_rule_match would select this rule for `flow`.

        An output lookup from `ip route get` has iif "lo", no oif, no mark,
        tos 0, protocol 0 and ports 0, and the asking process's uid.
        """
        if self.family != flow.family:
            return False
        source = flow.source or ipaddress.ip_address(
            "::" if flow.family == socket.AF_INET6 else "0.0.0.0"
        )
        hit = (
            (self.source is None or source in self.source)
            and (self.destination is None or flow.destination in self.destination)
            and self.tos == 0
            and (self.fwmark is None or (self.fwmark & (self.fwmask or 0xFFFFFFFF)) == 0)
            and self.iif in (None, "lo")
            and self.oif is None
            and (self.uid_range is None or self.uid_range[0] <= flow.uid <= self.uid_range[1])
            and not self.ip_proto
            and self.sport is None
            and self.dport is None
            and not self.l3mdev
        )
        return hit != self.invert

    def describe(self) -> str:
        """The rule in `ip rule` words: "priority 100 from 10.0.0.0/8 lookup 100"."""
        words = [f"priority {self.priority}"]
        if self.invert:
            words.append("not")
        words.append(f"from {self.source or 'all'}")
        if self.destination:
            words.append(f"to {self.destination}")
        if self.tos:
            words.append(f"tos {self.tos:#x}")
        if self.fwmark is not None:
            mask = "" if self.fwmask in (None, 0xFFFFFFFF) else f"/{self.fwmask:#x}"
            words.append(f"fwmark {self.fwmark:#x}{mask}")
        if self.iif:
            words.append(f"iif {self.iif}")
        if self.oif:
            words.append(f"oif {self.oif}")
        if self.uid_range:
            words.append(f"uidrange {self.uid_range[0]}-{self.uid_range[1]}")
        if self.ip_proto:
            words.append(f"ipproto {IP_PROTOCOLS.get(self.ip_proto, self.ip_proto)}")
        for name, ports in (("sport", self.sport), ("dport", self.dport)):
            if ports:
                words.append(
                    f"{name} {ports[0]}"
                    if ports[0] == ports[1]
                    else f"{name} {ports[0]}-{ports[1]}"
                )
        if self.l3mdev:
            words.append("lookup [l3mdev-table]")
        elif self.action == FR_ACT_TO_TBL:
            words.append(f"lookup {table_name(self.table)}")
        elif self.action == FR_ACT_GOTO:
            words.append(f"goto {self.goto}")
        else:
            words.append(_ACTION_NAMES.get(self.action, f"action {self.action}"))
        if self.suppress_prefixlength is not None:
            words.append(f"suppress_prefixlength {self.suppress_prefixlength}")
        return " ".join(words)


def _range(value: Any) -> tuple[int, int] | None:
    """A uid or port range: {"start": .., "end": ..} (or "start:end" text)."""
    if not value:
        return None
    if isinstance(value, dict):
        return (value["start"], value["end"])
    start, _, end = str(value).partition(":")
    return (int(start), int(end or start))


def choosing_rule(
    rules: Sequence[Rule], flow: Flow, table: int | None, prefix_len: int | None, err: int | None
) -> Rule | None:
    """The rule whose lookup produced the kernel's answer, walked as fib_rules_lookup does.

    Rules are tried in priority order; a table rule whose table answered is
    the one, unless its suppress_prefixlength rejects the route.  When the
    kernel said "no route", a terminal rule (unreachable, prohibit, blackhole)
    is blamed only if its error is the one the kernel gave.
    """
    ordered = sorted((r for r in rules if r.family == flow.family), key=lambda r: r.priority)
    goto_target: int | None = None
    for rule in ordered:
        if goto_target is not None and rule.priority < goto_target:
            continue
        goto_target = None
        if not rule.matches(flow):
            continue
        if rule.action == FR_ACT_TO_TBL:
            if table is None or rule.table != table:
                continue
            if (
                rule.suppress_prefixlength is not None
                and prefix_len is not None
                and prefix_len <= rule.suppress_prefixlength
            ):
                continue
            return rule
        if rule.action == FR_ACT_GOTO and rule.goto is not None:
            goto_target = rule.goto
            continue
        terminal_errno = {
            FR_ACT_UNREACHABLE: errno.ENETUNREACH,
            FR_ACT_PROHIBIT: errno.EACCES,
            FR_ACT_BLACKHOLE: errno.EINVAL,
        }.get(rule.action)
        if terminal_errno is not None:
            return rule if err == terminal_errno else None
    return None


# --------------------------------------------------------------------------- lookups


class RouteLookup:
    """One rtnetlink socket with the link names and rules a batch needs."""

    def __init__(self) -> None:
        # strict_check: requests go out as iproute2 sends them (rtm_table 0,
        # so the kernel reports the table that answered) and the kernel
        # rejects a malformed request instead of ignoring fields.
        self._nl = netlink.RtnlSocket(strict_check=True)
        self._links: dict[int, str] = {}
        self._rules: list[Rule] | None = None
        self._local: frozenset[str] | None = None

    def __enter__(self) -> RouteLookup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._nl.close()

    def get(self, address: str, source: str | None = None) -> RouteResult:
        """The route to `address` (from `source`, like `ip route get ADDR from SRC`)."""
        flow = Flow(
            ipaddress.ip_address(address),
            ipaddress.ip_address(source) if source else None,
            os.getuid(),
        )
        if flow.source is not None and flow.source.version != flow.destination.version:
            raise ValueError(
                f"route lookup: source {source} and destination {address} differ in family"
            )
        started = time.monotonic()
        if flow.source is not None and str(flow.source) not in self.local_addresses():
            # The kernel says "Network is unreachable" for a source it does
            # not own; that is a configuration fault, not a missing route.
            return RouteResult(duration_s=time.monotonic() - started, failure="route.error")
        # IPv6 always reports the route's table and rejects RTM_F_LOOKUP_TABLE
        # under strict checking; IPv4 reports "main" without it.
        flags = RTM_F_LOOKUP_TABLE if flow.family == socket.AF_INET else 0
        try:
            routes = self._nl.request(netlink.RTM_GETROUTE, _route_get(flow, flags))
            fibs = self._nl.request(netlink.RTM_GETROUTE, _route_get(flow, flags | RTM_F_FIB_MATCH))
        except NetlinkError as e:
            duration_s = time.monotonic() - started
            no_route = e.code in NO_ROUTE_ERRNOS
            rule = choosing_rule(self.rules(), flow, None, None, e.code) if no_route else None
            return RouteResult(
                rule=rule.describe() if rule else None,
                duration_s=duration_s,
                failure="route.none" if no_route else "route.error",
            )
        except OSError:
            return RouteResult(duration_s=time.monotonic() - started, failure="route.error")
        duration_s = time.monotonic() - started
        if not routes:
            return RouteResult(duration_s=duration_s, failure="route.error")
        route = routes[0]
        fib = fibs[0] if fibs else None
        table = route.get_attr("RTA_TABLE") or route["table"]
        prefix_len = fib["dst_len"] if fib is not None else None
        rule = choosing_rule(self.rules(), flow, table, prefix_len, None)
        oif = route.get_attr("RTA_OIF")
        return RouteResult(
            interface=self.link_name(oif) if oif else None,
            gateway=_gateway(route),
            source=route.get_attr("RTA_PREFSRC"),
            table=table,
            protocol=protocol_name(fib["proto"]) if fib is not None else None,
            rule=None if rule is None or rule.is_default else rule.describe(),
            duration_s=duration_s,
        )

    def link_name(self, index: int) -> str | None:
        if index not in self._links:
            # struct ifinfomsg, all zero: every link
            links = self._nl.request(netlink.RTM_GETLINK, bytes(16), dump=True)
            self._links = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
        return self._links.get(index)

    def local_addresses(self) -> frozenset[str]:
        if self._local is None:
            self._local = frozenset(
                str(ipaddress.ip_address(m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")))
                # struct ifaddrmsg, all zero: every address of every family
                for m in self._nl.request(netlink.RTM_GETADDR, bytes(8), dump=True)
                if m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
            )
        return self._local

    def rules(self) -> list[Rule]:
        if self._rules is None:
            self._rules = [
                Rule.from_message(m)
                for family in (socket.AF_INET, socket.AF_INET6)
                # struct fib_rule_hdr: the family, the rest zero
                for m in self._nl.request(
                    netlink.RTM_GETRULE, struct.pack("=B11x", family), dump=True
                )
            ]
        return self._rules


def _route_get(flow: Flow, flags: int) -> bytes:
    """An RTM_GETROUTE request as `ip route get` sends it: struct rtmsg, then RTA_DST (RTA_SRC)."""
    bits = 32 if flow.family == socket.AF_INET else 128
    header = struct.pack(
        "=BBBBBBBBI",
        flow.family,
        bits,
        bits if flow.source is not None else 0,
        0,
        0,
        0,
        0,
        0,
        flags,
    )
    body = header + netlink.attr(netlink.RTA_DST, flow.destination.packed)
    if flow.source is not None:
        body += netlink.attr(netlink.RTA_SRC, flow.source.packed)
    return body


def _gateway(route: Any) -> str | None:
    gateway = route.get_attr("RTA_GATEWAY")
    if gateway:
        return gateway
    via = route.get_attr("RTA_VIA")  # an IPv4 route via an IPv6 next hop (RFC 5549)
    return via.get("addr") if isinstance(via, dict) else None


def route_get_many(addresses: Sequence[str], source: str | None = None) -> dict[str, RouteResult]:
    """The kernel's route to every address, over one netlink socket.

    Addresses must be IP addresses (they come from DNS answers); anything
    else is a bug and raises ValueError before the kernel is asked.
    """
    for a in [*addresses, *([source] if source else [])]:
        try:
            ipaddress.ip_address(a)
        except ValueError as e:
            raise ValueError(f"route lookup: {a!r} is not an IP address") from e
    if not addresses:
        return {}
    with RouteLookup() as lookup:
        return {a: lookup.get(a, source) for a in dict.fromkeys(addresses)}


def route_get(address: str, source: str | None = None) -> RouteResult:
    return route_get_many([address], source)[address]


# --------------------------------------------------------------------------- change monitor

# How often the watcher looks at its stop flag.
WATCH_POLL_S = 0.2
# After the netlink socket fails, wait this long before listening again.
WATCH_RETRY_S = 1.0
_WATCH_GROUPS = (
    netlink.RTMGRP_LINK
    | netlink.RTMGRP_IPV4_ROUTE
    | netlink.RTMGRP_IPV6_ROUTE
    | netlink.RTMGRP_IPV4_RULE
    | netlink.RTMGRP_IPV6_RULE
)
_EVERYTHING = ("0.0.0.0/0", "::/0")


def changed_prefixes(msg: Any) -> tuple[str, ...]:
    """The destinations whose route a netlink notification may have changed.

    A route change touches its own prefix.  A rule change touches its `to`
    prefix (every destination when it has none).  A link change touches
    everything: when a link goes down the kernel drops its IPv4 routes
    without sending RTM_DELROUTE, and an ExpressRoute primary link going down
    is exactly the flip to catch.
    """
    event = msg.get("event")
    if event in ("RTM_NEWLINK", "RTM_DELLINK"):
        return _EVERYTHING
    family = msg.get("family")
    if family not in (socket.AF_INET, socket.AF_INET6):
        return ()
    any_address = "0.0.0.0" if family == socket.AF_INET else "::"
    if event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
        if msg.get("flags", 0) & 0x200:  # RTM_F_CLONED: a cache entry, not the FIB
            return ()
        return (f"{msg.get_attr('RTA_DST') or any_address}/{msg['dst_len']}",)
    if event in ("RTM_NEWRULE", "RTM_DELRULE"):
        return (f"{msg.get_attr('FRA_DST') or any_address}/{msg['dst_len']}",)
    return ()


def watch_routes(on_change: Callable[[str], None], stop: threading.Event) -> None:
    """Call `on_change(prefix)` for each route, rule or link change until `stop` is set.

    Blocking; run it in its own thread.  A failing callback is logged and
    does not end the watch; a failing netlink socket is reopened.  When the
    socket's buffer overflows (a route storm), notifications were lost, so
    every destination is reported changed.
    """
    while not stop.is_set():
        try:
            with netlink.RtnlSocket(_WATCH_GROUPS, strict_check=False) as nl:
                while not stop.is_set():
                    for msg in nl.notifications(WATCH_POLL_S):
                        for prefix in changed_prefixes(msg):
                            _tell(on_change, prefix)
        except OSError as e:
            if netlink.is_overrun(e):
                log.warning("event=route_watch_overrun")
                for prefix in _EVERYTHING:
                    _tell(on_change, prefix)
                continue
            log.warning("event=route_watch_failed error=%s", e)
            stop.wait(WATCH_RETRY_S)


def _tell(on_change: Callable[[str], None], prefix: str) -> None:
    try:
        on_change(prefix)
    except Exception:  # a bug in the callback must not stop the watch
        log.exception("event=route_change_callback_failed prefix=%s", prefix)
