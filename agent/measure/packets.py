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
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

from agent.measure import icmpext
from agent.report import MplsLabel

PROTO_ICMP = socket.IPPROTO_ICMP
PROTO_TCP = socket.IPPROTO_TCP
PROTO_UDP = socket.IPPROTO_UDP
PROTOCOLS = {"tcp": PROTO_TCP, "udp": PROTO_UDP, "icmp": PROTO_ICMP}

ICMP_ECHO_REPLY = 0
ICMP_UNREACHABLE = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
ICMP_ERRORS = frozenset({ICMP_UNREACHABLE, ICMP_TIME_EXCEEDED})

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# Offsets inside a template; transport offsets count from the IP header's end.
_IP_HEADER_BYTES = 20
_TTL = 8
_IP_ID = 4
_TCP_SEQ = 4
_TCP_CHECKSUM = 16
_ICMP_SEQ = 6  # followed by the first payload word, which compensates it

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
    def l4_offset(self) -> int:
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


def _transport_checksum(source: str, destination: str, protocol: int, segment: bytes) -> int:
    pseudo = (
        socket.inet_aton(source)
        + socket.inet_aton(destination)
        + struct.pack("!BBH", 0, protocol, len(segment))
    )
    return 0xFFFF - icmpext.ones_complement_sum(pseudo + segment)


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
    source: str, destination: str, sport: int, dport: int, *, record_route: bool = False
) -> Template:
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
    data = _ip(source, destination, PROTO_TCP, segment, record_route)
    return Template(PROTO_TCP, source, destination, sport, dport, data)


def udp_template(
    source: str,
    destination: str,
    sport: int,
    dport: int,
    *,
    record_route: bool = False,
) -> Template:
    # The payload never changes, so neither does the UDP checksum (Paris).
    datagram = struct.pack("!HHHH", sport, dport, 8 + len(_PAYLOAD), 0) + _PAYLOAD
    checksum = _transport_checksum(source, destination, PROTO_UDP, datagram) or 0xFFFF
    datagram = _with_checksum(datagram, 6, checksum)
    data = _ip(source, destination, PROTO_UDP, datagram, record_route)
    return Template(PROTO_UDP, source, destination, sport, dport, data)


def icmp_echo_template(
    source: str,
    destination: str,
    ident: int,
    *,
    record_route: bool = False,
) -> Template:
    payload = b"\xff\xff" + _PAYLOAD[2:]
    # seq 0 with pad 0xffff (one's complement zero): stamp keeps seq + pad
    # constant, hence the checksum computed here.
    message = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, 0) + payload
    message = _with_checksum(message, 2, 0xFFFF - icmpext.ones_complement_sum(message))
    data = _ip(source, destination, PROTO_ICMP, message, record_route)
    return Template(PROTO_ICMP, source, destination, 0, 0, data, icmp_ident=ident)


def stamp(template: Template, ttl: int, ip_id: int, seq: int) -> bytes:
    """The template with this probe's TTL, IP ID and sequence number written in.

    The kernel fills in the IP checksum of IP_HDRINCL packets; the transport
    checksum is ours.
    """
    buf = bytearray(template.data)
    buf[_TTL] = ttl
    struct.pack_into("!H", buf, _IP_ID, ip_id)
    l4 = template.l4_offset
    if template.protocol == PROTO_TCP:
        struct.pack_into("!I", buf, l4 + _TCP_SEQ, seq)
        struct.pack_into("!H", buf, l4 + _TCP_CHECKSUM, 0)
        segment = bytes(buf[l4:])
        pseudo = (
            socket.inet_aton(template.source)
            + socket.inet_aton(template.destination)
            + struct.pack("!BBH", 0, PROTO_TCP, len(segment))
        )
        checksum = 0xFFFF - icmpext.ones_complement_sum(pseudo + segment)
        struct.pack_into("!H", buf, l4 + _TCP_CHECKSUM, checksum or 0xFFFF)
    elif template.protocol == PROTO_ICMP:
        seq &= 0xFFFF
        struct.pack_into("!HH", buf, l4 + _ICMP_SEQ, seq, 0xFFFF - seq)
    return bytes(buf)


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class Quote:
    """The probe headers an ICMP error quotes (RFC 792: IP header + 8 bytes)."""

    source: str
    destination: str
    protocol: int
    ip_id: int
    ttl: int
    sport: int | None = None  # TCP/UDP
    dport: int | None = None
    seq: int | None = None  # TCP sequence number, or ICMP echo sequence
    icmp_ident: int | None = None
    record_route: tuple[str, ...] = ()  # as the destination received it


@dataclass(frozen=True, slots=True)
class IcmpError:
    source: str
    reply_ttl: int
    icmp_type: int
    icmp_code: int
    quote: Quote
    mpls: tuple[MplsLabel, ...] = ()


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


def _ip_header(data: bytes, offset: int = 0) -> tuple[int, int, int, str, str, int] | None:
    """(header length, ip id, ttl, source, destination, protocol) or None."""
    if len(data) < offset + _IP_HEADER_BYTES:
        return None
    vihl = data[offset]
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < _IP_HEADER_BYTES or len(data) < offset + ihl:
        return None
    (ip_id,) = struct.unpack_from("!H", data, offset + 4)
    ttl, proto = data[offset + 8], data[offset + 9]
    src = socket.inet_ntoa(data[offset + 12 : offset + 16])
    dst = socket.inet_ntoa(data[offset + 16 : offset + 20])
    return ihl, ip_id, ttl, src, dst, proto


def decode_icmp(data: bytes) -> IcmpError | EchoReply | None:
    """An ICMP packet as a raw IPPROTO_ICMP socket delivers it (IP header first)."""
    outer = _ip_header(data)
    if outer is None or outer[5] != PROTO_ICMP:
        return None
    ihl, _, reply_ttl, source, _, _ = outer
    icmp = data[ihl:]
    if len(icmp) < 8:
        return None
    icmp_type, icmp_code = icmp[0], icmp[1]
    if icmp_type == ICMP_ECHO_REPLY:
        ident, seq = struct.unpack_from("!HH", icmp, 4)
        return EchoReply(source, reply_ttl, ident, seq, record_route(data, 0, ihl))
    if icmp_type not in ICMP_ERRORS:
        return None
    payload = icmp[8:]
    inner = _ip_header(payload)
    if inner is None:
        return None
    q_ihl, q_id, q_ttl, q_src, q_dst, q_proto = inner
    l4 = payload[q_ihl:]
    sport = dport = seq = ident = None
    if q_proto in (PROTO_TCP, PROTO_UDP):
        if len(l4) < 4:
            return None
        sport, dport = struct.unpack_from("!HH", l4)
        if q_proto == PROTO_TCP and len(l4) >= 8:
            (seq,) = struct.unpack_from("!I", l4, 4)
    elif q_proto == PROTO_ICMP:
        if len(l4) < 8 or l4[0] != ICMP_ECHO_REQUEST:
            return None
        ident, seq = struct.unpack_from("!HH", l4, 4)
    else:
        return None
    quote = Quote(
        q_src,
        q_dst,
        q_proto,
        q_id,
        q_ttl,
        sport,
        dport,
        seq,
        ident,
        record_route(payload, 0, q_ihl),
    )
    labels = icmpext.parse_extensions(payload, icmp[5])
    return IcmpError(source, reply_ttl, icmp_type, icmp_code, quote, labels)


def decode_tcp(data: bytes) -> TcpSegment | None:
    """A TCP segment as a raw IPPROTO_TCP socket delivers it (IP header first)."""
    outer = _ip_header(data)
    if outer is None or outer[5] != PROTO_TCP:
        return None
    ihl, _, reply_ttl, source, destination, _ = outer
    if len(data) < ihl + 14:
        return None
    sport, dport, seq, ack = struct.unpack_from("!HHII", data, ihl)
    flags = data[ihl + 13]
    rr = record_route(data, 0, ihl)
    return TcpSegment(source, destination, sport, dport, seq, ack, flags, reply_ttl, rr)


def source_address_for(destination: str) -> str | None:
    """The address the kernel would send from towards `destination` (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((destination, 9))
            return s.getsockname()[0]
    except OSError:
        return None


def is_ipv4(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False


# Hosts start their TTL at one of these; the reply's distance below the next one up is its hop count.
INITIAL_TTLS = (64, 128, 255)


def return_hops(reply_ttl: int) -> int:
    """Routers on the way back: the nearest common initial TTL above the reply's, minus it."""
    initial = next(t for t in INITIAL_TTLS if t >= reply_ttl)
    return initial - reply_ttl
