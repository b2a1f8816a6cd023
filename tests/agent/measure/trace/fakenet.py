"""A fake network for the trace engine: probes answered from a path model on a simulated clock.

It plugs into the engine's seam (`agent.measure.trace.io.Io`): `send` reads
the probe's TTL and flow from the packet bytes, walks the path the model
gives for (destination, flow) -- so a per-flow ECMP hash is just a model
that looks at the flow -- and schedules the answer: a time-exceeded from the
router at that TTL, a SYN-ACK or RST (echo reply, port unreachable) from the
destination, or nothing for a silent router or a lost return.  Every router
keeps Linux's ICMP token bucket per source (a burst of 6, then one per
second: net/ipv4/icmp.c, XRLIM_BURST_FACTOR).  `receive` moves the clock to
the next answer or to the end of the wait, so a trace that would take
seconds runs in milliseconds and never needs root.

Answers are built with struct, like the ones the kernel would deliver to a
raw socket (IP header first; for IPv6 as rawsock rebuilds it in front of
the ICMPv6 message or TCP segment); the engine's decoders read them
unchanged.  IPv6 probes get ICMPv6 answers (time exceeded is type 3,
unreachable type 1, the whole probe quoted as RFC 4443 asks) from the
routers' IPv6 addresses, which keep their own token buckets: a dual-stack
router's ICMPv6 budget is separate from its ICMP one (net.ipv6.icmp.ratelimit).
"""

from __future__ import annotations

import heapq
import itertools
import socket
import struct
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.measure import rawsock, trace
from agent.measure.trace import TraceOptions, TraceRequest
from agent.measure.trace.io import Io

SOURCE = "10.10.1.10"
SOURCE6 = "2001:db8:10::10"
BURST = 6  # Linux XRLIM_BURST_FACTOR
REFILL_S = 1.0  # net.ipv4.icmp_ratelimit = 1000 ms
# net.ipv6.icmp.ratelimit = 1000 ms: a budget apart from ICMP's, one message
# per second after the burst (measured on Linux 6.18 in namespaces).
REFILL6_S = 1.0

TCP, UDP, ICMP = socket.IPPROTO_TCP, socket.IPPROTO_UDP, socket.IPPROTO_ICMP
ICMPV6 = socket.IPPROTO_ICMPV6


@dataclass(frozen=True, slots=True)
class Path:
    """What a flow meets: the router answering at each TTL (None: silent), then the destination.

    answer: "syn-ack" or "rst" (the service answers), "none" (filtered, or
    its answer is lost on the way back -- a blackhole).  `lost` routers
    answer, but the answer never comes back (an asymmetric return dropped
    by a firewall).  `unreachable_at`: the router at that TTL has no route:
    it answers "network unreachable" at that TTL and every one past it, and
    forwards nothing; like Linux (ip_error, then icmp_send) it charges each
    answer twice to its tokens, and a question that passes the first
    limiter but not the second spends a token and gets nothing.
    """

    hops: tuple[str | None, ...]
    answer: str = "syn-ack"
    lost: frozenset[str] = frozenset()
    unreachable_at: int | None = None
    return_hops: int | None = None  # routers on the way back (default: as many as forward)


Model = Callable[[str, int], Path]  # (destination, flow id) -> the path that flow takes


def ecmp(flow: int, destination: str, choices: tuple[str, ...]) -> str:
    """A per-flow hash like a router's: the same flow always picks the same member."""
    return choices[zlib.crc32(f"{destination}/{flow}".encode()) % len(choices)]


@dataclass(slots=True)
class _Bucket:
    tokens_s: float
    last_s: float


@dataclass
class FakeNetwork:
    model: Model
    rate_limit: bool = True
    hop_rtt_s: float = 0.0005  # each router adds this much round trip
    start_s: float = 1000.0
    source: str = SOURCE
    source6: str = SOURCE6
    now_s: float = field(init=False)
    sent: list[tuple[float, int, str, int]] = field(default_factory=list)  # (at, ttl, dst, flow)
    asked: Counter[str] = field(default_factory=Counter)  # questions reaching each router
    answered: Counter[str] = field(default_factory=Counter)  # time-exceeded each router sent
    _queue: list[tuple[float, int, rawsock.Received]] = field(default_factory=list)
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _order: itertools.count = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.now_s = self.start_s

    # -- the seam

    def io(self) -> Io:
        return Io(
            now=lambda: self.now_s,
            open_sockets=lambda _protocols, _families: self,
            source_address=lambda d: self.source6 if ":" in d else self.source,
            ports=_Ports,
        )

    def send(self, packet: bytes, destination: str) -> float:
        if packet[0] >> 4 == 6:
            ihl, ttl, proto = 40, packet[7], packet[6]
        else:
            ihl = (packet[0] & 0x0F) * 4
            ttl, proto = packet[8], packet[9]
        l4 = packet[ihl:]
        flow = struct.unpack_from("!H", l4, 4 if proto in (ICMP, ICMPV6) else 0)[0]
        self.sent.append((self.now_s, ttl, destination, flow))
        path = self.model(destination, flow)
        depth = len(path.hops)
        if path.unreachable_at is not None and ttl >= path.unreachable_at:
            router = path.hops[path.unreachable_at - 1]
            assert router is not None
            if self._route_error_allow(router):
                self._router_answers(router, packet, path.unreachable_at, "unreachable", path)
            else:
                self.asked[router] += 1
        elif ttl <= depth:
            router = path.hops[ttl - 1]
            if router is not None:
                self._router_answers(router, packet, ttl, "time-exceeded", path)
        elif path.answer != "none":
            back = path.return_hops if path.return_hops is not None else depth
            # Record Route (when the probe asks for it): every router forwarding
            # the probe writes an address, silent ones too; the answer echoes it.
            rr = _record_route(path) if packet[0] >> 4 == 4 and ihl > 20 else b""
            self._destination_answers(packet, destination, proto, depth + 1, 64 - back, path, rr)
        return self.now_s

    def receive(self, timeout_s: float) -> list[rawsock.Received]:
        # The real clock always moves on while we poll; a float at this
        # magnitude must too, or a wait of a few nanoseconds would never end.
        until = self.now_s + (max(timeout_s, 1e-6) if timeout_s > 0 else 0.0)
        if not self._queue or self._queue[0][0] > until:
            self.now_s = until
            return []
        self.now_s = max(self.now_s, self._queue[0][0])
        out = []
        while self._queue and self._queue[0][0] <= self.now_s:
            out.append(heapq.heappop(self._queue)[2])
        return out

    def close(self) -> None:
        pass

    # -- routers and destinations

    def _allow(self, router: str) -> bool:
        """Linux's icmpv4_xrlim_allow: a bucket of 6 x 1 s, one second per message.

        An IPv6 address is the router's ICMPv6 side: icmpv6_xrlim_allow, the
        same bucket with REFILL6_S per message.
        """
        if not self.rate_limit:
            return True
        refill = REFILL6_S if ":" in router else REFILL_S
        b = self._buckets.get(router)
        if b is None:
            b = self._buckets[router] = _Bucket(BURST * refill, self.now_s)
        b.tokens_s = min(BURST * refill, b.tokens_s + self.now_s - b.last_s)
        b.last_s = self.now_s
        if b.tokens_s >= refill:
            b.tokens_s -= refill
            return True
        return False

    def _route_error_allow(self, router: str) -> bool:
        """net/ipv4/route.c ip_error: burst 5 x 1 s on the same tokens icmp_send then checks."""
        if not self.rate_limit:
            return True
        b = self._buckets.get(router)
        if b is None:
            b = self._buckets[router] = _Bucket(BURST * REFILL_S, self.now_s)
        b.tokens_s = min(5 * REFILL_S, b.tokens_s + self.now_s - b.last_s)
        b.last_s = self.now_s
        if b.tokens_s >= REFILL_S:
            b.tokens_s -= REFILL_S
            return True
        return False

    def no_route_answer(self, router: str) -> None:
        """Another probe (the agent's SYN) met `router`'s missing route: its tokens are charged."""
        if self._route_error_allow(router):
            self._allow(router)

    def drain(self, router: str) -> None:
        """Empty a router's bucket, as if another tool had just asked it six times."""
        self._buckets[router] = _Bucket(0.0, self.now_s)

    def _router_answers(self, router: str, probe: bytes, ttl: int, kind: str, path: Path) -> None:
        self.asked[router] += 1
        if not self._allow(router):
            return
        self.answered[router] += 1
        if router in path.lost:
            return
        if probe[0] >> 4 == 6:
            # RFC 4443: as much of the probe as fits; time exceeded 3/0,
            # unreachable 1/0 (no route to destination).
            icmp_type = 3 if kind == "time-exceeded" else 1
            icmp = struct.pack("!BBHI", icmp_type, 0, 0, 0) + probe
            src = _source6(probe)
            self._deliver(ICMPV6, _ip6(router, src, ICMPV6, 64 - ttl + 1, icmp), ttl)
            return
        icmp_type, code = (11, 0) if kind == "time-exceeded" else (3, 0)
        ihl = (probe[0] & 0x0F) * 4
        quote = probe[: ihl + 8]
        if ihl > 20:  # Record Route, as the routers before this one filled it in
            quote = quote[:20] + _record_route(path, ttl - 1) + quote[60:]
        icmp = struct.pack("!BBHI", icmp_type, code, 0, 0) + quote
        reply = _ip(router, self.source, ICMP, 64 - ttl + 1, icmp)
        self._deliver(ICMP, reply, ttl)

    def _destination_answers(
        self,
        probe: bytes,
        destination: str,
        proto: int,
        ttl: int,
        reply_ttl: int,
        path: Path,
        rr: bytes,
    ) -> None:
        if probe[0] >> 4 == 6:
            self._destination6_answers(probe, destination, ttl, reply_ttl, path)
            return
        ihl = (probe[0] & 0x0F) * 4
        l4 = probe[ihl:]
        if proto == TCP:
            sport, dport, seq = struct.unpack_from("!HHI", l4)
            flags = 0x12 if path.answer == "syn-ack" else 0x14
            tcp = struct.pack(
                "!HHIIBBHHH", dport, sport, 777, (seq + 1) & 0xFFFFFFFF, 5 << 4, flags, 0, 0, 0
            )
            self._deliver(TCP, _ip(destination, self.source, TCP, reply_ttl, tcp, rr), ttl)
        elif proto == ICMP:
            ident, seq = struct.unpack_from("!HH", l4, 4)
            echo = struct.pack("!BBHHH", 0, 0, 0, ident, seq) + l4[8:]
            self._deliver(ICMP, _ip(destination, self.source, ICMP, reply_ttl, echo, rr), ttl)
        else:  # UDP: the port is closed, the destination says so
            icmp = struct.pack("!BBHI", 3, 3, 0, 0) + probe[: ihl + 8]
            self._deliver(ICMP, _ip(destination, self.source, ICMP, reply_ttl, icmp), ttl)

    def _destination6_answers(
        self, probe: bytes, destination: str, ttl: int, reply_ttl: int, path: Path
    ) -> None:
        l4, src, proto = probe[40:], _source6(probe), probe[6]
        if proto == TCP:
            sport, dport, seq = struct.unpack_from("!HHI", l4)
            flags = 0x12 if path.answer == "syn-ack" else 0x14
            tcp = struct.pack(
                "!HHIIBBHHH", dport, sport, 777, (seq + 1) & 0xFFFFFFFF, 5 << 4, flags, 0, 0, 0
            )
            self._deliver(TCP, _ip6(destination, src, TCP, reply_ttl, tcp), ttl)
        elif proto == ICMPV6:
            echo = struct.pack("!BBH", 129, 0, 0) + l4[4:]
            self._deliver(ICMPV6, _ip6(destination, src, ICMPV6, reply_ttl, echo), ttl)
        else:  # UDP: the port is closed, the destination says so (unreachable, code 4)
            icmp = struct.pack("!BBHI", 1, 4, 0, 0) + probe
            self._deliver(ICMPV6, _ip6(destination, src, ICMPV6, reply_ttl, icmp), ttl)

    def _deliver(self, proto: int, data: bytes, ttl: int) -> None:
        at = self.now_s + self.hop_rtt_s * ttl
        heapq.heappush(self._queue, (at, next(self._order), rawsock.Received(proto, data, at)))

    # -- what the engine did

    def flows_at(self, destination: str, ttl: int) -> set[int]:
        return {f for _, t, d, f in self.sent if d == destination and t == ttl}

    def probes_to(self, destination: str) -> int:
        return sum(1 for _, _, d, _ in self.sent if d == destination)


def _record_route(path: Path, routers: int | None = None) -> bytes:
    """The RR option after the first `routers` routers (all: as the destination got it)."""
    hops = path.hops if routers is None else path.hops[:routers]
    entries = [a or f"10.99.0.{ttl}" for ttl, a in enumerate(hops, start=1)][:9]
    data = b"".join(socket.inet_aton(a) for a in entries).ljust(36, b"\0")
    return struct.pack("!BBB", 7, 39, 4 + 4 * len(entries)) + data + b"\0"


def _ip(
    source: str, destination: str, proto: int, ttl: int, payload: bytes, options: bytes = b""
) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45 + len(options) // 4,
        0,
        20 + len(options) + len(payload),
        0,
        0,
        ttl,
        proto,
        0,
        socket.inet_aton(source),
        socket.inet_aton(destination),
    )
    return header + options + payload


def _source6(probe: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, probe[8:24])


def _ip6(source: str, destination: str, proto: int, hop_limit: int, payload: bytes) -> bytes:
    """What rawsock hands over for IPv6: the header it rebuilds (flow label 0), then the payload."""
    return (
        struct.pack("!IHBB", 6 << 28, len(payload), proto, hop_limit)
        + socket.inet_pton(socket.AF_INET6, source)
        + socket.inet_pton(socket.AF_INET6, destination)
        + payload
    )


class _Ports:
    """Port reservations without sockets: every port asked for is free; 0 picks the next."""

    def __init__(self) -> None:
        self._next = 40000

    def reserve(self, kind: int, port: int = 0) -> int:
        del kind
        if port:
            return port
        self._next += 1
        return self._next

    def close(self) -> None:
        pass


def lab_model(scenario: str, node: str = "branch") -> Model:
    """The lab's plan as a model: pathsim's forwarding from `node`, a per-flow hash at each ECMP fork.

    pathsim knows routes, NAT, the firewall and the silent hop; this adds
    what it lacks for the engine: which member of an ECMP group each flow
    takes (the kernel hashes per flow; here a stable hash of flow and fork),
    and routers whose answer is lost still spending a token.
    """
    from tests.lab import pathsim

    cache: dict[tuple[str, int], Path] = {}

    def model(destination: str, flow: int) -> Path:
        key = (destination, flow)
        if key not in cache:

            def choose(at: str, _prev: str | None, _src: str, via) -> tuple[str, ...]:
                return (ecmp(flow, f"{destination}@{at}", tuple(via)),)

            t = pathsim.traces(scenario, node, destination, choose=choose)[0]
            hops: list[str | None] = []
            lost: set[str] = set()
            answer = "none"
            for h in t.hops:
                if h.address == destination:
                    answer = "syn-ack" if h.answered else "none"
                    break
                if h.why == "silent":
                    hops.append(None)
                    continue
                hops.append(h.address)
                if not h.answered:
                    lost.add(h.address)
            cache[key] = Path(tuple(hops), answer, lost=frozenset(lost))
        return cache[key]

    return model


# ------------------------------------------------------------ the engine on it

SPORT = 47000  # the first source port, so the first flow's id, in the engine tests


def run(model: Model, targets, *, rate_limit: bool = True, **kw) -> tuple[dict, FakeNetwork]:
    """Trace `targets` (port 443) through a fresh FakeNetwork of `model`: traces by address, the net."""
    net = FakeNetwork(model, rate_limit=rate_limit)
    opts = TraceOptions(source_port=SPORT, **kw)
    got = trace.trace_many([TraceRequest(a, 443) for a in targets], opts, io=net.io())
    return {k[0]: t for k, t in got.items()}, net


def hop_map(t) -> dict[int, set[str]]:
    """The addresses that answered at each TTL of a trace (TTLs without replies left out)."""
    return {h.ttl: set(h.addresses) for h in t.hops if h.replies}


def truth(model: Model, destination: str, flow: int = SPORT) -> dict[int, set[str]]:
    """What hop_map must be for that flow: every router whose answer comes back, then the destination."""
    path = model(destination, flow)
    hops = {i: {a} for i, a in enumerate(path.hops, start=1) if a and a not in path.lost}
    if path.answer != "none":
        hops[len(path.hops) + 1] = {destination}
    return hops
