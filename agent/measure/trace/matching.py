"""Which probe a reply answers -- or that it answers none of ours.

Every probe carries its table index in the IP ID (and, for TCP, in the low
16 bits of the sequence number next to a per-run random tag; for ICMP echo,
in the sequence number).  IPv6 has no IP ID: the decoder hands over the
index from the quoted sequence instead, so both families match alike.  A reply is accepted only if everything it quotes
or echoes is exactly what that probe carried: for an ICMP error the quoted
source, destination, protocol, IP ID, ports and TCP sequence (or ICMP
identifier and sequence); for a SYN-ACK or RST the 4-tuple and ack = seq + 1;
for an echo reply the sender, identifier and sequence.  So stray and forged
packets, and replies to other tools' probes, never enter a result.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agent.measure import packets
from agent.report import MplsLabel, Reply, ReplyKind

_ID_SPACE = 1 << 16


@dataclass(frozen=True, slots=True)
class SentProbe:
    index: int  # IP ID; also the probe's key in the table
    trace: int  # the caller's trace number
    ttl: int
    attempt: int
    source: str
    destination: str
    protocol: int
    sport: int
    dport: int
    seq: int  # TCP sequence or ICMP echo sequence
    icmp_ident: int
    sent_s: float


@dataclass(frozen=True, slots=True)
class Match:
    probe: SentProbe
    address: str
    kind: ReplyKind
    rtt_s: float
    icmp_type: int | None = None
    icmp_code: int | None = None
    mpls: tuple[MplsLabel, ...] = ()
    reply_ttl: int = 0
    record_route: tuple[str, ...] = ()  # forward path fingerprint, when the probe asked for it

    @property
    def from_destination(self) -> bool:
        return self.address == self.probe.destination

    def reply(self) -> Reply:
        """As the report keeps it, with the flow (source port, ICMP id) of the probe it answered."""
        p = self.probe
        return Reply(
            address=self.address,
            rtt_s=self.rtt_s,
            kind=self.kind,
            icmp_type=self.icmp_type,
            icmp_code=self.icmp_code,
            mpls=self.mpls,
            flow=p.icmp_ident if p.protocol == packets.PROTO_ICMP else p.sport,
        )


class ProbeTable:
    """Probe identities for one run; an index is reused only after 65536 probes."""

    def __init__(self, rng: random.Random | None = None):
        rng = rng or random.Random()
        self._next = rng.randrange(_ID_SPACE)
        self.tcp_tag = rng.randrange(_ID_SPACE)
        self._probes: dict[int, SentProbe] = {}

    def next_identity(self) -> tuple[int, int]:
        """(IP ID, TCP sequence) for the next probe."""
        index = self._next
        self._next = (self._next + 1) % _ID_SPACE
        return index, (self.tcp_tag << 16) | index

    def add(self, probe: SentProbe) -> None:
        self._probes[probe.index] = probe

    def match(self, decoded: object, received_s: float) -> Match | None:
        if isinstance(decoded, packets.IcmpError):
            return self._match_error(decoded, received_s)
        if isinstance(decoded, packets.TcpSegment):
            return self._match_tcp(decoded, received_s)
        if isinstance(decoded, packets.EchoReply):
            return self._match_echo(decoded, received_s)
        return None

    def _match_error(self, err: packets.IcmpError, at: float) -> Match | None:
        q = err.quote
        p = self._probes.get(q.ip_id)
        if (
            p is None
            or q.protocol != p.protocol
            or q.destination != p.destination
            or q.source != p.source
        ):
            return None
        if p.protocol in (packets.PROTO_TCP, packets.PROTO_UDP):
            if (q.sport, q.dport) != (p.sport, p.dport):
                return None
            # RFC 792 quotes 8 bytes of TCP, so the sequence number is always
            # there; a quote without it proves nothing and is not ours.
            if p.protocol == packets.PROTO_TCP and q.seq != p.seq:
                return None
        elif (q.icmp_ident, q.seq) != (p.icmp_ident, p.seq):
            return None
        kind: ReplyKind = "time-exceeded" if err.time_exceeded else "unreachable"
        return Match(
            p,
            err.source,
            kind,
            max(at - p.sent_s, 0.0),
            err.icmp_type,
            err.icmp_code,
            err.mpls,
            err.reply_ttl,
            q.record_route,
        )

    def _match_tcp(self, seg: packets.TcpSegment, at: float) -> Match | None:
        acked = (seg.ack - 1) & 0xFFFFFFFF
        if acked >> 16 != self.tcp_tag:
            return None
        p = self._probes.get(acked & 0xFFFF)
        if (
            p is None
            or p.protocol != packets.PROTO_TCP
            or p.seq != acked
            or (seg.source, seg.sport, seg.destination, seg.dport)
            != (p.destination, p.dport, p.source, p.sport)
        ):
            return None
        syn_ack = packets.TCP_SYN | packets.TCP_ACK
        if seg.flags & (syn_ack | packets.TCP_RST) == syn_ack:
            kind: ReplyKind = "syn-ack"
        elif seg.flags & packets.TCP_RST:
            kind = "rst"
        else:
            return None
        return Match(
            p,
            seg.source,
            kind,
            max(at - p.sent_s, 0.0),
            reply_ttl=seg.reply_ttl,
            record_route=seg.record_route,
        )

    def _match_echo(self, echo: packets.EchoReply, at: float) -> Match | None:
        p = self._probes.get(echo.seq)
        if (
            p is None
            or p.protocol != packets.PROTO_ICMP
            or echo.source != p.destination
            or (echo.ident, echo.seq) != (p.icmp_ident, p.seq)
        ):
            return None
        return Match(
            p,
            echo.source,
            "echo-reply",
            max(at - p.sent_s, 0.0),
            packets.ICMP6_ECHO_REPLY if ":" in echo.source else packets.ICMP_ECHO_REPLY,
            0,
            reply_ttl=echo.reply_ttl,
            record_route=echo.record_route,
        )
