"""rtnetlink on a plain socket: the few requests and notifications route lookup needs.

Route lookup asks the kernel a handful of questions per cycle (`ip route get`
per address, the links, addresses and rules once) and the service listens
to route, rule and link notifications.  pyroute2 answers all of that but
imports its whole library -- every netlink family, asyncio, NDB -- for
~70 ms and ~13 MB on every start; these messages are a fixed C layout
(linux/rtnetlink.h, linux/fib_rules.h) decoded here with `struct`.  The lab
keeps pyroute2, and tests/agent/measure/test_route.py compares every answer
with what `ip route get` and `ip rule` print.

A decoded message is a `Message`: its header fields by iproute2's names
(`msg["dst_len"]`, `msg["table"]`), its attributes by their kernel names
(`msg.get_attr("RTA_OIF")`), and `msg["event"]` ("RTM_NEWROUTE" ...).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
from collections.abc import Iterator
from typing import Any

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_GET_STRICT_CHK = 12

# linux/netlink.h
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x300
_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id

# linux/rtnetlink.h: message types
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
EVENTS = {
    RTM_NEWLINK: "RTM_NEWLINK",
    RTM_DELLINK: "RTM_DELLINK",
    RTM_NEWADDR: "RTM_NEWADDR",
    RTM_NEWROUTE: "RTM_NEWROUTE",
    RTM_DELROUTE: "RTM_DELROUTE",
    RTM_NEWRULE: "RTM_NEWRULE",
    RTM_DELRULE: "RTM_DELRULE",
}

# Multicast groups (the legacy bitmask bound at socket creation).
RTMGRP_LINK = 0x1
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV4_RULE = 0x80
RTMGRP_IPV6_ROUTE = 0x400
RTMGRP_IPV6_RULE = 0x40000  # 1 << (RTNLGRP_IPV6_RULE - 1)

# Fixed headers, by message type; field names as pyroute2 and iproute2 say them.
_RTMSG = (
    struct.Struct("=BBBBBBBBI"),
    ("family", "dst_len", "src_len", "tos", "table", "proto", "scope", "type", "flags"),
)
_FIB_RULE_HDR = (
    struct.Struct("=BBBBBBBBI"),
    ("family", "dst_len", "src_len", "tos", "table", "res1", "res2", "action", "flags"),
)
_IFINFOMSG = (struct.Struct("=BxHiII"), ("family", "ifi_type", "index", "flags", "change"))
_IFADDRMSG = (struct.Struct("=BBBBI"), ("family", "prefixlen", "flags", "scope", "index"))
_HEADERS = {
    RTM_NEWROUTE: _RTMSG,
    RTM_DELROUTE: _RTMSG,
    RTM_NEWRULE: _FIB_RULE_HDR,
    RTM_DELRULE: _FIB_RULE_HDR,
    RTM_NEWLINK: _IFINFOMSG,
    RTM_DELLINK: _IFINFOMSG,
    RTM_NEWADDR: _IFADDRMSG,
}

# Attributes: (name, decoder) by message kind and number.
_ADDR, _U8, _U32, _STR, _VIA, _RANGE32, _RANGE16 = range(7)
_ROUTE_ATTRS = {
    1: ("RTA_DST", _ADDR),
    2: ("RTA_SRC", _ADDR),
    4: ("RTA_OIF", _U32),
    5: ("RTA_GATEWAY", _ADDR),
    6: ("RTA_PRIORITY", _U32),
    7: ("RTA_PREFSRC", _ADDR),
    15: ("RTA_TABLE", _U32),
    18: ("RTA_VIA", _VIA),
}
_RULE_ATTRS = {
    1: ("FRA_DST", _ADDR),
    2: ("FRA_SRC", _ADDR),
    3: ("FRA_IIFNAME", _STR),
    4: ("FRA_GOTO", _U32),
    6: ("FRA_PRIORITY", _U32),
    10: ("FRA_FWMARK", _U32),
    14: ("FRA_SUPPRESS_PREFIXLEN", _U32),
    15: ("FRA_TABLE", _U32),
    16: ("FRA_FWMASK", _U32),
    17: ("FRA_OIFNAME", _STR),
    19: ("FRA_L3MDEV", _U8),
    20: ("FRA_UID_RANGE", _RANGE32),
    21: ("FRA_PROTOCOL", _U8),
    22: ("FRA_IP_PROTO", _U8),
    23: ("FRA_SPORT_RANGE", _RANGE16),
    24: ("FRA_DPORT_RANGE", _RANGE16),
}
_LINK_ATTRS = {3: ("IFLA_IFNAME", _STR)}
_ADDR_ATTRS = {1: ("IFA_ADDRESS", _ADDR), 2: ("IFA_LOCAL", _ADDR)}
_ATTRS = {
    RTM_NEWROUTE: _ROUTE_ATTRS,
    RTM_DELROUTE: _ROUTE_ATTRS,
    RTM_NEWRULE: _RULE_ATTRS,
    RTM_DELRULE: _RULE_ATTRS,
    RTM_NEWLINK: _LINK_ATTRS,
    RTM_DELLINK: _LINK_ATTRS,
    RTM_NEWADDR: _ADDR_ATTRS,
}
RTA_DST, RTA_SRC = 1, 2


class NetlinkError(OSError):
    """The kernel refused a request; `code` is the errno it gave."""

    def __init__(self, code: int):
        super().__init__(code, os.strerror(code))
        self.code = code


class Message(dict):
    """One decoded rtnetlink message: header fields and "event" as items, attributes apart."""

    __slots__ = ("attrs",)

    def __init__(self, fields: dict[str, Any], attrs: dict[str, Any]):
        super().__init__(fields)
        self.attrs = attrs

    def get_attr(self, name: str) -> Any:
        return self.attrs.get(name)


def _decode_attr(kind: int, family: int, data: bytes) -> Any:
    if kind == _ADDR:
        if len(data) == 4:
            return socket.inet_ntop(socket.AF_INET, data)
        if len(data) == 16:
            return socket.inet_ntop(socket.AF_INET6, data)
        return None
    if kind == _U32:
        return struct.unpack_from("=I", data)[0] if len(data) >= 4 else None
    if kind == _U8:
        return data[0] if data else None
    if kind == _STR:
        return data.split(b"\0", 1)[0].decode("utf-8", "replace")
    if kind == _VIA:  # struct rtvia: family, then the address
        if len(data) < 2:
            return None
        via_family = struct.unpack_from("=H", data)[0]
        return {"family": via_family, "addr": _decode_attr(_ADDR, via_family, data[2:])}
    if kind == _RANGE32 and len(data) >= 8:
        start, end = struct.unpack_from("=II", data)
        return {"start": start, "end": end}
    if kind == _RANGE16 and len(data) >= 4:
        start, end = struct.unpack_from("=HH", data)
        return {"start": start, "end": end}
    return None


def decode(msg_type: int, payload: bytes) -> Message | None:
    """A message of a type this module knows; None for any other."""
    header = _HEADERS.get(msg_type)
    if header is None:
        return None
    layout, names = header
    if len(payload) < layout.size:
        return None
    fields: dict[str, Any] = dict(zip(names, layout.unpack_from(payload), strict=True))
    fields["event"] = EVENTS[msg_type]
    known = _ATTRS[msg_type]
    attrs: dict[str, Any] = {}
    pos = (layout.size + 3) & ~3
    while pos + 4 <= len(payload):
        length, number = struct.unpack_from("=HH", payload, pos)
        if length < 4 or pos + length > len(payload):
            break
        spec = known.get(number & 0x3FFF)  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
        if spec is not None:
            attrs[spec[0]] = _decode_attr(
                spec[1], fields["family"], payload[pos + 4 : pos + length]
            )
        pos += (length + 3) & ~3
    return Message(fields, attrs)


def attr(number: int, value: bytes) -> bytes:
    """One request attribute, padded to 4 bytes."""
    data = struct.pack("=HH", 4 + len(value), number) + value
    return data + bytes(-len(data) % 4)


class RtnlSocket:
    """A NETLINK_ROUTE socket: requests answered in order, or notifications of `groups`."""

    def __init__(self, groups: int = 0, *, strict_check: bool = True, rcvbuf_bytes: int = 1 << 20):
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
            if strict_check:
                # Requests are checked as iproute2's are: a malformed one is
                # refused rather than partly ignored.
                self._sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
            self._sock.bind((0, groups))
        except OSError:
            self._sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RtnlSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def request(self, msg_type: int, body: bytes, *, dump: bool = False) -> list[Message]:
        """Send one request; its answers (every part of a dump); NetlinkError if refused."""
        self._seq += 1
        seq = self._seq
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else 0)
        self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags, seq, 0) + body)
        out: list[Message] = []
        while True:
            for msg_seq, kind, msg_flags, payload in self._parts(self._sock.recv(1 << 16)):
                if msg_seq != seq:
                    continue  # a late answer to an earlier request
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise NetlinkError(code)
                    return out
                if kind == NLMSG_DONE:
                    return out
                msg = decode(kind, payload)
                if msg is not None:
                    out.append(msg)
                if not dump and not msg_flags & NLM_F_MULTI:
                    return out

    def notifications(self, timeout_s: float) -> Iterator[Message]:
        """The notifications that arrive within `timeout_s` (all queued ones, or none)."""
        ready, _, _ = select.select([self._sock], [], [], timeout_s)
        if not ready:
            return
        try:
            data = self._sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        for _, kind, _, payload in self._parts(data):
            msg = decode(kind, payload)
            if msg is not None:
                yield msg

    @staticmethod
    def _parts(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
        pos = 0
        while pos + _NLMSGHDR.size <= len(data):
            length, kind, flags, seq, _ = _NLMSGHDR.unpack_from(data, pos)
            if length < _NLMSGHDR.size or pos + length > len(data):
                return
            yield seq, kind, flags, data[pos + _NLMSGHDR.size : pos + length]
            pos += (length + 3) & ~3


def is_overrun(e: OSError) -> bool:
    """The socket's buffer overflowed: notifications were lost."""
    return e.errno == errno.ENOBUFS
