"""Probe packets out, replies in, as bytes.

One template per flow (IP header + TCP SYN with the options a real client
sends, UDP, or ICMP echo) is packed with `struct`; `stamp` then writes TTL,
IP ID and sequence number into a copy.  Replies are decoded with `struct` at
fixed offsets too (`decode_icmp`, `decode_tcp`).  scapy is not imported at
run time: importing its inet layers costs ~0.35 s and ~33 MB, more than a
whole `probe once` of the lab may take, for three fixed headers; the tests
check every template byte for byte, and the decoders, against packets scapy
builds.

Paris traceroute (Augustin et al., IMC 2006): everything a load balancer may
hash stays constant within a flow -- addresses, protocol, ports, ICMP type,
code, identifier and checksum -- and the probe's identity travels in fields
no balancer hashes: the IP ID (all protocols), the TCP sequence number, the
ICMP echo sequence (with two payload bytes compensating it so the ICMP
checksum does not change).

IPv6 (TCP, UDP and ICMPv6 echo): the whole IPv6 header is built here too and sent
through an IPPROTO_RAW socket, which Linux treats as IPV6_HDRINCL -- so the
hop limit is written per probe like IPv4's TTL, and the flow label, which
IPv6 ECMP hashes with the addresses (Linux fib_multipath_hash_policy 0,
most routers alike), is set once per flow in the template and never
changes: Paris for IPv6.  (The socket-option way -- IPV6_FLOWINFO_SEND with
a label leased through IPV6_FLOWLABEL_MGR per destination -- needs a lease
per label and destination and a second path through the kernel for every
packet; one header built here keeps both families on one template.)
IPv6 has no IP ID: the probe's index travels only in the TCP sequence
number (low 16 bits), the echo sequence, or UDP's first payload word (the
second compensating it, so the UDP checksum stays constant), and the
decoders report it where IPv4's IP ID would be (`Quote.ip_id`), so matching
is the same for both.
IPv6 has no Record Route option.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import zlib
from dataclasses import dataclass

from agent.measure import icmpext
from agent.report import MplsLabel

PROTO_ICMP = socket.IPPROTO_ICMP
PROTO_ICMPV6 = socket.IPPROTO_ICMPV6
PROTO_TCP = socket.IPPROTO_TCP
PROTO_UDP = socket.IPPROTO_UDP
PROTOCOLS = {"tcp": PROTO_TCP, "udp": PROTO_UDP, "icmp": PROTO_ICMP}

ICMP_ECHO_REPLY = 0
ICMP_UNREACHABLE = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
ICMP_ERRORS = frozenset({ICMP_UNREACHABLE, ICMP_TIME_EXCEEDED})
# RFC 4443: the same messages, other numbers.
ICMP6_UNREACHABLE = 1
ICMP6_TIME_EXCEEDED = 3
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129
ICMP6_ERRORS = frozenset({ICMP6_UNREACHABLE, ICMP6_TIME_EXCEEDED})

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# Offsets inside a template; transport offsets count from the IP header's end.
_IP_HEADER_BYTES = 20
_IP6_HEADER_BYTES = 40
_TTL = 8
_HOP_LIMIT = 7  # IPv6
_IP_ID = 4
_TCP_SEQ = 4
_TCP_CHECKSUM = 16
_ICMP_SEQ = 6  # followed by the first payload word, which compensates it
_UDP6_INDEX = 8  # IPv6 UDP: the probe's index, then its compensation, open the payload

IPOPT_RR = 7
RR_SLOTS = 9  # all that fits in 40 bytes of IP options

# Like the SYN a Linux client sends (minus timestamps), so middleboxes treat
# the probe as the real flow would be treated.
SYN_OPTIONS = [("MSS", 1460), ("SAckOK", b""), ("NOP", None), ("WScale", 7)]
SYN_WINDOW = 64240
_PAYLOAD = b"erpath-probe"  # UDP and ICMP echo probes: 12 bytes, never changing


@dataclass(frozen=True, slots=True)
class Template:
    """A flow's probe with the per-probe fields still open."""

    protocol: int
    source: str
    destination: str
    sport: int
    dport: int
    data: bytes
    icmp_ident: int = 0

    @property
    def version(self) -> int:
        return self.data[0] >> 4

    @property
    def l4_offset(self) -> int:
        if self.version == 6:
            return _IP6_HEADER_BYTES
        return (self.data[0] & 0x0F) * 4


def _ip(source: str, destination: str, protocol: int, payload: bytes, record_route: bool) -> bytes:
    """The IP header and `payload`; with record_route, an empty RFC 791 Record Route option.

    Routers that forward the probe write their outgoing address into it and
    the destination echoes it (TCP SYN-ACK, ICMP echo reply) or quotes it
    (ICMP port unreachable): a path fingerprint that costs no router an ICMP.
    TTL 64 and IP ID 0 are placeholders `stamp` overwrites; DF is clear.
    """
    options = (
        struct.pack("!BBB", IPOPT_RR, 3 + 4 * RR_SLOTS, 4) + bytes(4 * RR_SLOTS) + b"\0"
        if record_route
        else b""
    )  # type, length 39, pointer to the first slot, 9 empty slots, end of options
    ihl = (_IP_HEADER_BYTES + len(options)) // 4
    header = (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            0,
            ihl * 4 + len(payload),
            0,
            0,
            64,
            protocol,
            0,
            socket.inet_aton(source),
            socket.inet_aton(destination),
        )
        + options
    )
    checksum = 0xFFFF - icmpext.ones_complement_sum(header)
    return header[:10] + struct.pack("!H", checksum) + header[12:] + payload


def _ip6(source: str, destination: str, next_header: int, payload: bytes, label: int) -> bytes:
    """The IPv6 header (RFC 8200) and `payload`: traffic class 0, flow `label`, hop limit 64.

    The hop limit is a placeholder `stamp` overwrites; there is no header checksum.
    """
    header = struct.pack(
        "!IHBB16s16s",
        (6 << 28) | (label & 0xFFFFF),
        len(payload),
        next_header,
        64,
        socket.inet_pton(socket.AF_INET6, source),
        socket.inet_pton(socket.AF_INET6, destination),
    )
    return header + payload


def _packet(
    source: str,
    destination: str,
    protocol: int,
    segment: bytes,
    ports: tuple[int, int],
    record_route: bool,
    label: int | None,
) -> bytes:
    """`segment` behind the IP header of the destination's family.

    IPv4 carries the Record Route option when asked; IPv6 has none, and
    carries the flow's label instead (`label`, or `flow_label` of `ports`).
    """
    if ":" not in destination:
        return _ip(source, destination, protocol, segment, record_route)
    if record_route:
        raise ValueError("IPv6 has no Record Route option")
    if label is None:
        label = flow_label(source, destination, *ports)
    return _ip6(source, destination, protocol, segment, label)


def _pseudo_header(source: str, destination: str, protocol: int, length: int) -> bytes:
    """The transport checksum's pseudo-header: RFC 793 for IPv4, RFC 8200 §8.1 for IPv6."""
    if ":" in destination:
        return (
            socket.inet_pton(socket.AF_INET6, source)
            + socket.inet_pton(socket.AF_INET6, destination)
            + struct.pack("!IxxxB", length, protocol)
        )
    return (
        socket.inet_aton(source)
        + socket.inet_aton(destination)
        + struct.pack("!BBH", 0, protocol, length)
    )


def _transport_checksum(source: str, destination: str, protocol: int, segment: bytes) -> int:
    pseudo = _pseudo_header(source, destination, protocol, len(segment))
    return 0xFFFF - icmpext.ones_complement_sum(pseudo + segment)


def flow_label(source: str, destination: str, sport: int, dport: int) -> int:
    """The IPv6 flow label of a flow: a 20-bit hash of its addresses and ports, never 0.

    Like the label Linux gives a connection (auto_flowlabels), it differs
    between flows and is constant within one, so flows spread over ECMP paths
    the way real connections do and each flow stays on one.
    """
    return zlib.crc32(f"{source}|{destination}|{sport}|{dport}".encode()) & 0xFFFFF or 1


def _with_checksum(segment: bytes, at: int, checksum: int) -> bytes:
    return segment[:at] + struct.pack("!H", checksum) + segment[at + 2 :]


def _syn_options() -> bytes:
    """SYN_OPTIONS as TCP option bytes, padded with end-of-options to 4-byte words."""
    out = b""
    for name, value in SYN_OPTIONS:
        if name == "MSS":
            out += struct.pack("!BBH", 2, 4, value)
        elif name == "SAckOK":
            out += b"\x04\x02"
        elif name == "NOP":
            out += b"\x01"
        elif name == "WScale":
            out += struct.pack("!BBB", 3, 3, value)
    return out + bytes(-len(out) % 4)


def tcp_syn_template(
    source: str,
    destination: str,
    sport: int,
    dport: int,
    *,
    record_route: bool = False,
    label: int | None = None,
) -> Template:
    """A SYN of the flow; IPv6 when the addresses are (flow label: `label`, or `flow_label`)."""
    options = _syn_options()
    segment = (
        struct.pack(
            "!HHIIBBHHH",
            sport,
            dport,
            0,  # sequence: stamped per probe
            0,
            (5 + len(options) // 4) << 4,
            TCP_SYN,
            SYN_WINDOW,
            0,
            0,
        )
        + options
    )
    segment = _with_checksum(
        segment, _TCP_CHECKSUM, _transport_checksum(source, destination, PROTO_TCP, segment)
    )
    data = _packet(source, destination, PROTO_TCP, segment, (sport, dport), record_route, label)
    return Template(PROTO_TCP, source, destination, sport, dport, data)


def udp_template(
    source: str,
    destination: str,
    sport: int,
    dport: int,
    *,
    record_route: bool = False,
    label: int | None = None,
) -> Template:
    # The payload never changes, so neither does the UDP checksum (Paris).
    # IPv6 has no IP ID: there the probe's index goes in the first payload
    # word and the second compensates it (stamp), so the checksum stays
    # constant too; ICMPv6 errors quote the whole probe (RFC 4443), payload too.
    payload = b"\x00\x00\xff\xff" + _PAYLOAD[4:] if ":" in destination else _PAYLOAD
    datagram = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    checksum = _transport_checksum(source, destination, PROTO_UDP, datagram) or 0xFFFF
    datagram = _with_checksum(datagram, 6, checksum)
    data = _packet(source, destination, PROTO_UDP, datagram, (sport, dport), record_route, label)
    return Template(PROTO_UDP, source, destination, sport, dport, data)


def icmp_echo_template(
    source: str,
    destination: str,
    ident: int,
    *,
    record_route: bool = False,
    label: int | None = None,
) -> Template:
    payload = b"\xff\xff" + _PAYLOAD[2:]
    # seq 0 with pad 0xffff (one's complement zero): stamp keeps seq + pad
    # constant, hence the checksum computed here.  ICMPv6 (RFC 4443) numbers
    # the echo request otherwise, and its checksum covers the pseudo-header too.
    v6 = ":" in destination
    protocol = PROTO_ICMPV6 if v6 else PROTO_ICMP
    message = struct.pack("!BBHHH", ICMP6_ECHO_REQUEST if v6 else ICMP_ECHO_REQUEST, 0, 0, ident, 0)
    message += payload
    if v6:
        checksum = _transport_checksum(source, destination, protocol, message)
    else:
        checksum = 0xFFFF - icmpext.ones_complement_sum(message)
    message = _with_checksum(message, 2, checksum)
    data = _packet(source, destination, protocol, message, (ident, 0), record_route, label)
    return Template(PROTO_ICMP, source, destination, 0, 0, data, icmp_ident=ident)


def stamp(template: Template, ttl: int, ip_id: int, seq: int) -> bytes:
    """The template with this probe's TTL (IPv6: hop limit), IP ID and sequence number written in.

    The kernel fills in the IP checksum of IP_HDRINCL packets; the transport
    checksum is ours.  IPv6 has no IP ID: `ip_id` is ignored there.
    """
    buf = bytearray(template.data)
    if template.version == 6:
        buf[_HOP_LIMIT] = ttl
    else:
        buf[_TTL] = ttl
        struct.pack_into("!H", buf, _IP_ID, ip_id)
    l4 = template.l4_offset
    if template.protocol == PROTO_TCP:
        struct.pack_into("!I", buf, l4 + _TCP_SEQ, seq)
        struct.pack_into("!H", buf, l4 + _TCP_CHECKSUM, 0)
        segment = bytes(buf[l4:])
        pseudo = _pseudo_header(template.source, template.destination, PROTO_TCP, len(segment))
        checksum = 0xFFFF - icmpext.ones_complement_sum(pseudo + segment)
        struct.pack_into("!H", buf, l4 + _TCP_CHECKSUM, checksum or 0xFFFF)
    elif template.protocol == PROTO_ICMP:
        seq &= 0xFFFF
        struct.pack_into("!HH", buf, l4 + _ICMP_SEQ, seq, 0xFFFF - seq)
    elif template.protocol == PROTO_UDP and template.version == 6:
        struct.pack_into("!HH", buf, l4 + _UDP6_INDEX, ip_id, 0xFFFF - ip_id)
    return bytes(buf)


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class Quote:
    """The probe headers an ICMP error quotes (RFC 792: IP header + 8 bytes; RFC 4443: more)."""

    source: str
    destination: str
    protocol: int  # PROTO_ICMP for an ICMPv6 echo too, as in Template
    ip_id: int  # IPv6 has none: the probe's index, from the TCP or echo sequence
    ttl: int
    sport: int | None = None  # TCP/UDP
    dport: int | None = None
    seq: int | None = None  # TCP sequence number, or ICMP echo sequence
    icmp_ident: int | None = None
    record_route: tuple[str, ...] = ()  # as the destination received it
    flow_label: int | None = None  # IPv6


@dataclass(frozen=True, slots=True)
class IcmpError:
    source: str
    reply_ttl: int
    icmp_type: int  # as sent: ICMPv6 numbers for IPv6 (3 is time exceeded there)
    icmp_code: int
    quote: Quote
    mpls: tuple[MplsLabel, ...] = ()
    version: int = 4

    @property
    def time_exceeded(self) -> bool:
        expired = ICMP6_TIME_EXCEEDED if self.version == 6 else ICMP_TIME_EXCEEDED
        return self.icmp_type == expired

    @property
    def unreachable(self) -> bool:
        unreachable = ICMP6_UNREACHABLE if self.version == 6 else ICMP_UNREACHABLE
        return self.icmp_type == unreachable


@dataclass(frozen=True, slots=True)
class EchoReply:
    source: str
    reply_ttl: int
    ident: int
    seq: int
    record_route: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TcpSegment:
    source: str
    destination: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    reply_ttl: int
    record_route: tuple[str, ...] = ()


def record_route(data: bytes, offset: int, ihl: int) -> tuple[str, ...]:
    """Addresses filled in so far in an IP header's Record Route option."""
    pos, end = offset + _IP_HEADER_BYTES, offset + ihl
    while pos < end:
        kind = data[pos]
        if kind == 0:  # end of options
            break
        if kind == 1:  # no-op
            pos += 1
            continue
        if pos + 1 >= end:
            break
        length = data[pos + 1]
        if length < 2 or pos + length > end:
            break
        if kind == IPOPT_RR and length >= 3:
            pointer = data[pos + 2]  # 1-based, to the next free slot
            filled = max(0, min(pointer - 4, length - 3)) // 4
            return tuple(
                socket.inet_ntoa(data[pos + 3 + 4 * i : pos + 7 + 4 * i]) for i in range(filled)
            )
        pos += length
    return ()


@dataclass(frozen=True, slots=True)
class _Header:
    """An IPv4 or IPv6 header as the decoders need it."""

    version: int
    length: int  # header bytes: where the transport starts
    ip_id: int  # IPv4 only (0 for IPv6)
    ttl: int  # IPv6: hop limit
    source: str
    destination: str
    protocol: int  # IPv6: next header
    flow_label: int = 0


def _ip_header(data: bytes, offset: int = 0) -> _Header | None:
    """The IP header at `offset`, either family, or None if there is none.

    IPv6 extension headers are not walked: our probes carry none, and the
    replies we match (ICMPv6, TCP) come without them on every path we know.
    """
    if len(data) < offset + _IP_HEADER_BYTES:
        return None
    vihl = data[offset]
    if vihl >> 4 == 6:
        if len(data) < offset + _IP6_HEADER_BYTES:
            return None
        (first,) = struct.unpack_from("!I", data, offset)
        return _Header(
            6,
            _IP6_HEADER_BYTES,
            0,
            data[offset + 7],
            socket.inet_ntop(socket.AF_INET6, data[offset + 8 : offset + 24]),
            socket.inet_ntop(socket.AF_INET6, data[offset + 24 : offset + 40]),
            data[offset + 6],
            first & 0xFFFFF,
        )
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < _IP_HEADER_BYTES or len(data) < offset + ihl:
        return None
    (ip_id,) = struct.unpack_from("!H", data, offset + 4)
    return _Header(
        4,
        ihl,
        ip_id,
        data[offset + 8],
        socket.inet_ntoa(data[offset + 12 : offset + 16]),
        socket.inet_ntoa(data[offset + 16 : offset + 20]),
        data[offset + 9],
    )


def decode_icmp(data: bytes) -> IcmpError | EchoReply | None:
    """An ICMP or ICMPv6 packet, IP header first (rawsock puts one before an ICMPv6 message)."""
    outer = _ip_header(data)
    if outer is None:
        return None
    v6 = outer.version == 6
    if outer.protocol != (PROTO_ICMPV6 if v6 else PROTO_ICMP):
        return None
    icmp = data[outer.length :]
    if len(icmp) < 8:
        return None
    icmp_type, icmp_code = icmp[0], icmp[1]
    if icmp_type == (ICMP6_ECHO_REPLY if v6 else ICMP_ECHO_REPLY):
        ident, seq = struct.unpack_from("!HH", icmp, 4)
        rr = () if v6 else record_route(data, 0, outer.length)
        return EchoReply(outer.source, outer.ttl, ident, seq, rr)
    if icmp_type not in (ICMP6_ERRORS if v6 else ICMP_ERRORS):
        return None
    payload = icmp[8:]
    inner = _ip_header(payload)
    if inner is None or inner.version != outer.version:
        return None
    l4 = payload[inner.length :]
    sport = dport = seq = ident = None
    ip_id = inner.ip_id
    proto = inner.protocol
    if proto in (PROTO_TCP, PROTO_UDP):
        if len(l4) < 4:
            return None
        sport, dport = struct.unpack_from("!HH", l4)
        if proto == PROTO_TCP and len(l4) >= 8:
            (seq,) = struct.unpack_from("!I", l4, 4)
        if v6 and proto == PROTO_TCP:
            if seq is None:
                return None  # no sequence, no identity: nothing to match
            ip_id = seq & 0xFFFF
        elif v6:
            if len(l4) < _UDP6_INDEX + 2:
                return None  # the index is in the payload: without it, no identity
            (ip_id,) = struct.unpack_from("!H", l4, _UDP6_INDEX)
    elif proto == PROTO_ICMP and not v6:
        if len(l4) < 8 or l4[0] != ICMP_ECHO_REQUEST:
            return None
        ident, seq = struct.unpack_from("!HH", l4, 4)
    elif proto == PROTO_ICMPV6 and v6:
        if len(l4) < 8 or l4[0] != ICMP6_ECHO_REQUEST:
            return None
        ident, seq = struct.unpack_from("!HH", l4, 4)
        proto, ip_id = PROTO_ICMP, seq
    else:
        return None
    quote = Quote(
        inner.source,
        inner.destination,
        proto,
        ip_id,
        inner.ttl,
        sport,
        dport,
        seq,
        ident,
        () if v6 else record_route(payload, 0, inner.length),
        inner.flow_label if v6 else None,
    )
    # RFC 4884: the original datagram's length is in the first byte of the
    # unused word in 8-byte units for ICMPv6, the second in 4-byte units for ICMP.
    if v6:
        labels = icmpext.parse_extensions(payload, icmp[4], icmpext.ICMP6_LENGTH_UNIT_BYTES)
    else:
        labels = icmpext.parse_extensions(payload, icmp[5])
    return IcmpError(outer.source, outer.ttl, icmp_type, icmp_code, quote, labels, outer.version)


def decode_tcp(data: bytes) -> TcpSegment | None:
    """A TCP segment, IP header first (rawsock puts one before a segment of a TCPv6 socket)."""
    outer = _ip_header(data)
    if outer is None or outer.protocol != PROTO_TCP:
        return None
    ihl = outer.length
    if len(data) < ihl + 14:
        return None
    sport, dport, seq, ack = struct.unpack_from("!HHII", data, ihl)
    flags = data[ihl + 13]
    rr = () if outer.version == 6 else record_route(data, 0, ihl)
    return TcpSegment(outer.source, outer.destination, sport, dport, seq, ack, flags, outer.ttl, rr)


def source_address_for(destination: str) -> str | None:
    """The address the kernel would send from towards `destination` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in destination else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((destination, 9))
            return s.getsockname()[0]
    except OSError:
        return None


def is_ipv4(address: str) -> bool:
    return ip_version(address) == 4


def canonical(address: str) -> str:
    """An IP address as the decoders write it (IPv6 compressed, lower case), so replies compare equal."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def ip_version(address: str) -> int | None:
    """4 or 6 for an IP address, None for anything else (a name, a scoped address)."""
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return None


# Hosts start their TTL at one of these; the reply's distance below the next one up is its hop count.
INITIAL_TTLS = (64, 128, 255)


def return_hops(reply_ttl: int) -> int:
    """Routers on the way back: the nearest common initial TTL above the reply's, minus it."""
    initial = next(t for t in INITIAL_TTLS if t >= reply_ttl)
    return initial - reply_ttl
