"""Raw IPv4 sockets for probing: one to send, one per reply protocol to listen.

Plain `socket` raw sockets instead of scapy's sr(): sending is one syscall
per probe, and replies arrive with a kernel receive timestamp (SO_TIMESTAMPNS)
so RTTs do not include our own scheduling delay.  No nftables/iptables rule
is needed: the kernel's RST to an unexpected SYN-ACK is harmless (traceroute
-T relies on the same), and a listening raw socket gets a copy of every
matching packet without taking it from anyone.
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


def has_raw_capability() -> bool:
    """Whether this process may open raw sockets (CAP_NET_RAW), tested by trying."""
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
    """The send socket plus listeners for `protocols` (IPPROTO_ICMP, IPPROTO_TCP)."""

    def __init__(self, protocols: tuple[int, ...]):
        self._send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self._listen: dict[int, socket.socket] = {}
        self._poll = select.poll()
        try:
            for proto in protocols:
                s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
                s.setblocking(False)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF_BYTES)
                s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self._listen[s.fileno()] = s
                self._poll.register(s.fileno(), select.POLLIN)
        except OSError:
            self.close()
            raise
        self._proto = {fd: s.proto for fd, s in self._listen.items()}

    def send(self, packet: bytes, destination: str) -> float:
        """Send one complete IP packet; return the send time (time.time() scale)."""
        at = time.time()
        try:
            self._send.sendto(packet, (destination, 0))
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
            while True:
                try:
                    data, ancdata, _, _ = sock.recvmsg(_MAX_PACKET_BYTES, 64)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # e.g. an ICMP error queued on the socket itself
                at = None
                for level, kind, value in ancdata:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                        at = sec + nsec / 1e9
                out.append(Received(proto, data, at if at is not None else time.time()))
        return out

    def close(self) -> None:
        for s in self._listen.values():
            s.close()
        self._listen.clear()
        self._send.close()

    def __enter__(self) -> ProbeSockets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PortReservation:
    """Source ports held by ordinary bound sockets so no local connection reuses them.

    A raw SYN from a port the kernel also hands to a real connection would mix
    both flows' replies; holding a bound (never listening) socket prevents it.
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
