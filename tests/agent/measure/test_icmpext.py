"""RFC 4884 / RFC 4950 label stacks parsed from crafted ICMP payloads (no root)."""

from agent.measure import icmpext
from agent.report import MplsLabel
from tests.agent.measure import crafting

STACK = (MplsLabel(label=24001, tc=0, bottom=False, ttl=1), MplsLabel(16, 5, True, 254))


def _payload(quote_len: int = 128, **kw) -> tuple[bytes, int]:
    return b"\x45" + b"\0" * (quote_len - 1) + crafting.build_extensions(
        STACK, **kw
    ), quote_len // 4


def test_label_stack_from_compliant_extension():
    payload, words = _payload()
    assert icmpext.parse_extensions(payload, words) == STACK


def test_legacy_length_zero_means_offset_128():
    payload, _ = _payload()
    assert icmpext.parse_extensions(payload, 0) == STACK


def test_zero_checksum_is_accepted():
    payload, words = _payload(checksum=False)
    assert icmpext.parse_extensions(payload, words) == STACK


def test_bad_checksum_rejected():
    payload, words = _payload()
    broken = bytearray(payload)
    broken[-1] ^= 0xFF
    assert icmpext.parse_extensions(bytes(broken), words) == ()


def test_no_extension_and_short_and_malformed_inputs():
    assert icmpext.parse_extensions(b"\x45" + b"\0" * 27, 0) == ()
    assert icmpext.parse_extensions(b"\x45" + b"\0" * 127, 0) == ()
    payload, _ = _payload()
    assert icmpext.parse_extensions(payload, 8) == ()  # a length under 128 bytes is invalid
    wrong_version = bytearray(payload)
    wrong_version[128] = 0x10
    assert icmpext.parse_extensions(bytes(wrong_version), 32) == ()
    truncated = payload[: 128 + 4 + 4 + 2]
    assert icmpext.parse_extensions(truncated, 32) == ()


def test_label_fields():
    (entry,) = icmpext.parse_label_stack(bytes.fromhex("05dc1bff"))
    assert entry == MplsLabel(label=0x05DC1, tc=5, bottom=True, ttl=255)
