"""What the trace engine needs from the outside world, behind one small seam.

The engine plans probes and reads replies; the clock, the raw sockets, the
kernel's choice of source address and the source-port reservations come from
an `Io`.  `REAL` is the machine (raw sockets, CAP_NET_RAW); tests pass a fake
network that answers from a path model on a simulated clock, so the planning
logic runs in milliseconds without root.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.measure import packets, rawsock


class Sockets(Protocol):
    """Send complete IP packets; receive what answers them (see rawsock.ProbeSockets)."""

    def send(self, packet: bytes, destination: str) -> float: ...

    def receive(self, timeout_s: float) -> list[rawsock.Received]: ...

    def close(self) -> None: ...


class Ports(Protocol):
    """Source ports held for the run (see rawsock.PortReservation)."""

    def reserve(self, kind: int, port: int = 0) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Io:
    now: Callable[[], float]  # wall clock, time.time() scale
    # listen on these IP protocols (named as in IPv4), in these families (4, 6)
    open_sockets: Callable[[tuple[int, ...], tuple[int, ...]], Sockets]
    source_address: Callable[[str], str | None]  # the kernel's source towards a destination
    ports: Callable[[], Ports]


REAL = Io(
    now=time.time,
    open_sockets=rawsock.ProbeSockets,
    source_address=packets.source_address_for,
    ports=rawsock.PortReservation,
)
