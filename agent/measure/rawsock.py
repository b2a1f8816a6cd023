"""Raw IPv4 and IPv6 sockets for probing: one to send per family, one per reply protocol to listen.

Plain `socket` raw sockets instead of scapy's sr(): sending is one syscall
per probe, and replies arrive with a kernel receive timestamp (SO_TIMESTAMPNS)
so RTTs do not include our own scheduling delay.  No nftables/iptables rule
is needed: the kernel's RST to an unexpected SYN-ACK is harmless (traceroute
-T relies on the same), and a listening raw socket gets a copy of every
matching packet without taking it from anyone.

IPv6 raw sockets deliver the payload without its IPv6 header.  The
listeners ask for the hop limit and the destination (IPV6_RECVHOPLIMIT,
IPV6_RECVPKTINFO) and put a 40-byte header rebuilt from them, the sender
and the protocol in front, so the decoders read both families the same way
(IP header first).  The ICMPv6 listener filters in the kernel (ICMP6_FILTER)
to the messages that can answer a probe: destination unreachable, time
exceeded and echo reply -- not the neighbour discovery and router
advertisements every IPv6 link is full of.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from dataclasses import dataclass

_RCVBUF_BYTES = 4 * 1024 * 1024
_MAX_PACKET_BYTES = 2048
_TIMESPEC = struct.Struct("@qq")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
ICMP6_FILTER = 1  # <netinet/icmp6.h>, level IPPROTO_ICMPV6
# ICMPv6 types a probe can be answered with: unreachable, time exceeded, echo reply.
_ICMP6_PASSED = (1, 3, 129)
_IN6_PKTINFO = struct.Struct("@16si")


def icmp6_filter(passed: tuple[int, ...]) -> bytes:
    """struct icmp6_filter passing only `passed`: 256 bits, a set bit blocks that type (Linux)."""
    words = [0xFFFFFFFF] * 8
    for t in passed:
        words[t >> 5] &= ~(1 << (t & 31)) & 0xFFFFFFFF
    return struct.pack("@8I", *words)


def has_raw_capability() -> bool:
    """Whether this process may open raw sockets (CAP_NET_RAW), tested by trying (IPv4)."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
    except OSError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Received:
    protocol: int
    data: bytes
    at_s: float  # wall clock (time.time() scale), the kernel's receive time when known


class SendError(Exception):
    """A probe the local stack refused; `code` is a FAILURE_CODES value."""

    def __init__(self, code: str, err: OSError):
        self.code = code
        super().__init__(f"{code}: {err}")


_UNREACHABLE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL}


class ProbeSockets:
    """Send sockets plus listeners for `protocols` (IPPROTO_ICMP, IPPROTO_TCP) in `families`.

    `protocols` are named as in IPv4; for IPv6, IPPROTO_ICMP listens to
    ICMPv6 and `Received.protocol` says IPPROTO_ICMPV6.
    """

    def __init__(self, protocols: tuple[int, ...], families: tuple[int, ...] = (4,)):
        self._send: dict[int, socket.socket] = {}
        self._listen: dict[int, socket.socket] = {}
        self._proto: dict[int, int] = {}
        self._poll = select.poll()
        try:
            for family in families:
                af = socket.AF_INET6 if family == 6 else socket.AF_INET
                # IPPROTO_RAW means IP_HDRINCL (IPv4) and IPV6_HDRINCL (IPv6, Linux):
                # the packet goes out exactly as packets.py built it.
                self._send[family] = socket.socket(af, socket.SOCK_RAW, socket.IPPROTO_RAW)
                for proto in protocols:
                    if family == 6 and proto == socket.IPPROTO_ICMP:
                        proto = socket.IPPROTO_ICMPV6
                    self._listener(af, proto)
        except OSError:
            self.close()
            raise

    def _listener(self, af: int, proto: int) -> None:
        s = socket.socket(af, socket.SOCK_RAW, proto)
        self._listen[s.fileno()] = s
        self._proto[s.fileno()] = proto
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF_BYTES)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if af == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            if proto == socket.IPPROTO_ICMPV6:
                s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, icmp6_filter(_ICMP6_PASSED))
        self._poll.register(s.fileno(), select.POLLIN)

    def send(self, packet: bytes, destination: str) -> float:
        """Send one complete IP packet; return the send time (time.time() scale)."""
        sock = self._send.get(packet[0] >> 4) if packet else None
        if sock is None:
            raise ValueError(f"no send socket for IPv{packet[0] >> 4 if packet else '?'} packets")
        at = time.time()
        try:
            sock.sendto(packet, (destination, 0))
        except OSError as err:
            code = "tcp.unreachable" if err.errno in _UNREACHABLE_ERRNOS else "tcp.error"
            raise SendError(code, err) from err
        return at

    def receive(self, timeout_s: float) -> list[Received]:
        """Everything that arrived, waiting at most `timeout_s` for the first packet."""
        out: list[Received] = []
        ready = self._poll.poll(max(timeout_s, 0.0) * 1000.0)
        for fd, _ in ready:
            sock = self._listen.get(fd)
            if sock is None:
                continue
            proto = self._proto[fd]
            v6 = sock.family == socket.AF_INET6
            while True:
                try:
                    data, ancdata, _, sender = sock.recvmsg(_MAX_PACKET_BYTES, 256)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # e.g. an ICMP error queued on the socket itself
                at = None
                hop_limit, destination = 0, bytes(16)
                for level, kind, value in ancdata:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                        at = sec + nsec / 1e9
                    elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT:
                        (hop_limit,) = struct.unpack("@i", value[:4])
                    elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                        destination = _IN6_PKTINFO.unpack(value[: _IN6_PKTINFO.size])[0]
                if v6:
                    data = ipv6_header(sender[0], destination, proto, hop_limit, len(data)) + data
                out.append(Received(proto, data, at if at is not None else time.time()))
        return out

    def close(self) -> None:
        for s in self._listen.values():
            s.close()
        self._listen.clear()
        for s in self._send.values():
            s.close()
        self._send.clear()

    def __enter__(self) -> ProbeSockets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ipv6_header(
    source: str, destination: bytes, next_header: int, hop_limit: int, payload_bytes: int
) -> bytes:
    """The IPv6 header a raw socket took off, rebuilt (flow label and traffic class unknown: 0)."""
    src = socket.inet_pton(socket.AF_INET6, source.split("%", 1)[0])
    return struct.pack(
        "!IHBB16s16s", 6 << 28, payload_bytes, next_header, hop_limit, src, destination
    )


class PortReservation:
    """Source ports held by ordinary bound sockets so no local connection reuses them.

    A raw SYN from a port the kernel also hands to a real connection would mix
    both flows' replies; holding a bound (never listening) socket prevents it.
    One IPv4 socket holds the port for IPv6 flows too: Linux keeps one table
    of bound TCP ports for both families, and a connect() looking for a free
    port skips every port bound there.
    """

    def __init__(self) -> None:
        self._held: list[socket.socket] = []

    def reserve(self, kind: int, port: int = 0) -> int:
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            s.close()
            if port:
                return port  # asked for explicitly: use it even if someone holds it
            raise
        self._held.append(s)
        return s.getsockname()[1]

    def close(self) -> None:
        for s in self._held:
            s.close()
        self._held.clear()

    def __enter__(self) -> PortReservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
