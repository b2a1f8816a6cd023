"""Replies to our probes, built with scapy: what the decoders are checked against (tests only)."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP

from agent.measure import icmpext
from agent.measure.packets import ICMP_TIME_EXCEEDED


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
