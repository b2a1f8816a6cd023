"""MPLS label stacks from ICMP extensions (RFC 4884 structure, RFC 4950 object).

A router inside an MPLS core that expires a probe can append the label stack
the probe carried to its time-exceeded (or unreachable) message.  The stack
tells which hops are an LSP (often the only sign of a provider backbone, since
Linux routers never add it).  Pure standard library: the parser runs on every
ICMP error and must be cheap and total (bad input gives an empty stack, never
an exception).
"""

from __future__ import annotations

import struct

from agent.report import MplsLabel

# RFC 4884 §5: a non-compliant sender pads the original datagram to 128 bytes
# and leaves the length field 0; compliant ones set the length in 32-bit words
# (ICMP) or 64-bit words (ICMPv6, RFC 4884 §4.2 -- its length is the first
# byte of the unused word, ICMP's the second).
LEGACY_ORIGINAL_BYTES = 128
ICMP_LENGTH_UNIT_BYTES = 4
ICMP6_LENGTH_UNIT_BYTES = 8
EXTENSION_VERSION = 2
MPLS_CLASS = 1  # RFC 4950: class-num 1 (MPLS label stack), c-type 1 (incoming stack)
MPLS_CTYPE = 1
_OBJECT_HEADER_BYTES = 4
_EXTENSION_HEADER_BYTES = 4


def ones_complement_sum(data: bytes) -> int:
    """The 16-bit one's complement sum of `data` (odd lengths padded with a zero byte)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def extension_offset(
    icmp_payload: bytes, length_words: int, unit_bytes: int = ICMP_LENGTH_UNIT_BYTES
) -> int | None:
    """Where the extension structure starts inside the ICMP payload, or None.

    `icmp_payload` is everything after the 8-byte ICMP header; `length_words`
    is the RFC 4884 length field in `unit_bytes` (4 for ICMP, 8 for ICMPv6).
    """
    if length_words:
        offset = length_words * unit_bytes
        # RFC 4884 §4.1: the original datagram is then at least 128 bytes.
        if offset < LEGACY_ORIGINAL_BYTES:
            return None
    else:
        offset = LEGACY_ORIGINAL_BYTES
    if len(icmp_payload) < offset + _EXTENSION_HEADER_BYTES:
        return None
    return offset


def parse_extensions(
    icmp_payload: bytes, length_words: int, unit_bytes: int = ICMP_LENGTH_UNIT_BYTES
) -> tuple[MplsLabel, ...]:
    """The MPLS label stack carried in the ICMP (or ICMPv6) extension structure, if any."""
    offset = extension_offset(icmp_payload, length_words, unit_bytes)
    if offset is None:
        return ()
    ext = icmp_payload[offset:]
    version = ext[0] >> 4
    if version != EXTENSION_VERSION:
        return ()
    (checksum,) = struct.unpack_from("!H", ext, 2)
    # A zero checksum means "not computed" (RFC 4884 §7); otherwise it must
    # verify, which also rejects an original datagram that merely happened to
    # be longer than 128 bytes in a legacy (length 0) message.
    if checksum and ones_complement_sum(ext) != 0xFFFF:
        return ()
    labels: list[MplsLabel] = []
    pos = _EXTENSION_HEADER_BYTES
    while pos + _OBJECT_HEADER_BYTES <= len(ext):
        length, class_num, c_type = struct.unpack_from("!HBB", ext, pos)
        if length < _OBJECT_HEADER_BYTES or pos + length > len(ext):
            break  # malformed: keep what was parsed so far
        if class_num == MPLS_CLASS and c_type == MPLS_CTYPE:
            labels.extend(parse_label_stack(ext[pos + _OBJECT_HEADER_BYTES : pos + length]))
        pos += length
    return tuple(labels)


def parse_label_stack(data: bytes) -> tuple[MplsLabel, ...]:
    """RFC 4950 label stack entries: label(20) TC(3) S(1) TTL(8), top first."""
    entries = []
    for (word,) in struct.iter_unpack("!I", data[: len(data) // 4 * 4]):
        entries.append(
            MplsLabel(
                label=word >> 12,
                tc=(word >> 9) & 0x7,
                bottom=bool((word >> 8) & 0x1),
                ttl=word & 0xFF,
            )
        )
    return tuple(entries)
