"""Replies to our probes, built with scapy: what the decoders are checked against (tests only)."""

from __future__ import annotations

import struct

from scapy.layers.inet import ICMP, IP, TCP

from agent.measure import icmpext
from agent.measure.packets import ICMP_TIME_EXCEEDED
from agent.report import MplsLabel


def craft_icmp_error(
    router: str,
    probe: bytes,
    *,
    icmp_type: int = ICMP_TIME_EXCEEDED,
    icmp_code: int = 0,
    quote_bytes: int = 28,
    extensions: bytes = b"",
    reply_ttl: int = 64,
) -> bytes:
    """An ICMP error from `router` quoting `probe`, as a raw socket would deliver it.

    With `extensions`, the quote is padded to 128 bytes and the RFC 4884
    length field set, like a router adding an MPLS label stack.
    """
    sent = IP(probe)
    quoted = bytes(probe)[:quote_bytes]
    length_words = 0
    if extensions:
        quoted = quoted.ljust(icmpext.LEGACY_ORIGINAL_BYTES, b"\0")
        length_words = len(quoted) // 4
    icmp = ICMP(type=icmp_type, code=icmp_code, length=length_words)
    pkt = IP(src=router, dst=sent.src, ttl=reply_ttl) / icmp / (quoted + extensions)
    return bytes(pkt)


def craft_tcp_reply(
    probe: bytes, *, flags: str = "SA", ack_delta: int = 1, reply_ttl: int = 64, source: str = ""
) -> bytes:
    """The destination's answer (SYN-ACK or RST) to a SYN probe."""
    sent = IP(probe)
    syn = sent[TCP]
    pkt = IP(src=source or sent.dst, dst=sent.src, ttl=reply_ttl) / TCP(
        sport=syn.dport,
        dport=syn.sport,
        flags=flags,
        seq=12345,
        ack=(syn.seq + ack_delta) & 0xFFFFFFFF,
    )
    return bytes(pkt)


def craft_echo_reply(probe: bytes, *, reply_ttl: int = 64, source: str = "") -> bytes:
    sent = IP(probe)
    echo = sent[ICMP]
    pkt = (
        IP(src=source or sent.dst, dst=sent.src, ttl=reply_ttl)
        / ICMP(type=0, id=echo.id, seq=echo.seq)
        / bytes(echo.payload)
    )
    return bytes(pkt)


def build_extensions(labels: tuple[MplsLabel, ...], *, checksum: bool = True) -> bytes:
    """An RFC 4884 extension structure with one RFC 4950 object (an MPLS router's reply)."""
    body = b"".join(
        struct.pack("!I", (m.label << 12) | (m.tc << 9) | (int(m.bottom) << 8) | m.ttl)
        for m in labels
    )
    header_bytes = 4  # an object header: length, class, c-type
    obj = (
        struct.pack("!HBB", header_bytes + len(body), icmpext.MPLS_CLASS, icmpext.MPLS_CTYPE) + body
    )
    header = struct.pack("!BBH", icmpext.EXTENSION_VERSION << 4, 0, 0)
    if not checksum:
        return header + obj
    value = 0xFFFF - icmpext.ones_complement_sum(header + obj)
    return struct.pack("!BBH", icmpext.EXTENSION_VERSION << 4, 0, value) + obj
