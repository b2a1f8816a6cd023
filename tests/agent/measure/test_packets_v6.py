"""IPv6 probe templates, stamping and the ICMPv6 / TCPv6 decoders, checked against scapy (no root)."""

import struct

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6TimeExceeded,
    IPv6,
)

from agent.measure import icmpext, packets, rawsock
from agent.measure.trace.matching import ProbeTable, SentProbe
from agent.report import MplsLabel
from tests.agent.measure import crafting

SRC, DST = "2001:db8:10::10", "2001:db8:1916::a"
ROUTER = "2001:db8:ff::2"


def _checksum_ok(raw: bytes, layer) -> bool:
    field = "chksum" if layer in (TCP, UDP) else "cksum"
    pkt = IPv6(raw)
    got = getattr(pkt[layer], field)
    delattr(pkt[layer], field)
    return getattr(IPv6(bytes(pkt))[layer], field) == got


@pytest.mark.parametrize(
    ("src", "dst", "sport", "dport"),
    [(SRC, DST, 47000, 443), ("::1", "ffff::fffe", 1, 65535), ("fe80::1", "2001:db8::", 65535, 1)],
)
def test_ipv6_templates_are_byte_for_byte_what_scapy_builds(src, dst, sport, dport):
    label = packets.flow_label(src, dst, sport, dport)
    syn = TCP(sport=sport, dport=dport, flags="S", seq=0, window=packets.SYN_WINDOW)
    syn.options = packets.SYN_OPTIONS
    built = IPv6(src=src, dst=dst, hlim=64, fl=label) / syn
    assert packets.tcp_syn_template(src, dst, sport, dport).data == bytes(built)
    echo_payload = b"\xff\xff" + packets._PAYLOAD[2:]
    echo_label = packets.flow_label(src, dst, sport, 0)
    echo = IPv6(src=src, dst=dst, hlim=64, fl=echo_label) / ICMPv6EchoRequest(
        id=sport, seq=0, data=echo_payload
    )
    assert packets.icmp_echo_template(src, dst, sport).data == bytes(echo)


def test_ipv6_udp_template_and_its_index_in_the_payload():
    label = packets.flow_label(SRC, DST, 47000, 33434)
    payload = b"\x00\x00\xff\xff" + packets._PAYLOAD[4:]
    built = IPv6(src=SRC, dst=DST, hlim=64, fl=label) / UDP(sport=47000, dport=33434) / payload
    tpl = packets.udp_template(SRC, DST, 47000, 33434)
    assert tpl.data == bytes(built)
    probes = [IPv6(packets.stamp(tpl, ttl, index, 0)) for ttl, index in ((1, 0), (5, 4242))]
    assert len({p[UDP].chksum for p in probes}) == 1  # Paris: constant checksum
    assert all(_checksum_ok(bytes(p), UDP) for p in probes)
    err = packets.decode_icmp(_icmp6_error(ICMPv6TimeExceeded(), bytes(probes[1])))
    assert isinstance(err, packets.IcmpError)
    assert (err.quote.protocol, err.quote.ip_id, err.quote.sport) == (
        packets.PROTO_UDP,
        4242,
        47000,
    )
    # a quote cut before the index identifies nothing
    assert (
        packets.decode_icmp(_icmp6_error(ICMPv6TimeExceeded(), bytes(probes[1]), quote=48)) is None
    )


def test_flow_label_is_constant_within_a_flow_and_differs_between_flows():
    labels = {packets.flow_label(SRC, DST, sport, 443) for sport in range(47000, 47016)}
    assert len(labels) == 16 and all(0 < fl < 1 << 20 for fl in labels)
    tpl = packets.tcp_syn_template(SRC, DST, 47000, 443)
    probes = [IPv6(packets.stamp(tpl, ttl, 0, seq)) for ttl, seq in ((1, 5), (9, 77), (30, 1))]
    assert {p.fl for p in probes} == {packets.flow_label(SRC, DST, 47000, 443)}
    assert [p.hlim for p in probes] == [1, 9, 30]
    assert [p[TCP].seq for p in probes] == [5, 77, 1]
    assert all(_checksum_ok(bytes(p), TCP) for p in probes)
    assert packets.tcp_syn_template(SRC, DST, 1, 2, label=12345).data[1:4] == b"\x00\x30\x39"


def test_icmpv6_echo_checksum_constant_sequence_varies():
    tpl = packets.icmp_echo_template(SRC, DST, 4242)
    probes = [IPv6(packets.stamp(tpl, ttl, 0, seq)) for ttl, seq in ((1, 0), (2, 77), (3, 65535))]
    assert len({p[ICMPv6EchoRequest].cksum for p in probes}) == 1
    assert [p[ICMPv6EchoRequest].seq for p in probes] == [0, 77, 65535]
    assert all(_checksum_ok(bytes(p), ICMPv6EchoRequest) for p in probes)


def test_record_route_is_refused_for_ipv6():
    with pytest.raises(ValueError, match="IPv6 has no Record Route"):
        packets.tcp_syn_template(SRC, DST, 1, 2, record_route=True)


def _icmp6_error(kind, probe: bytes, *, quote: int | None = None, hlim: int = 62) -> bytes:
    return bytes(IPv6(src=ROUTER, dst=SRC, hlim=hlim) / kind / probe[:quote])


def test_decode_icmpv6_time_exceeded_quotes_the_probe():
    probe = packets.stamp(packets.tcp_syn_template(SRC, DST, 47000, 443), 3, 0, 0xABCD0102)
    err = packets.decode_icmp(_icmp6_error(ICMPv6TimeExceeded(), probe))
    assert isinstance(err, packets.IcmpError)
    assert (err.source, err.reply_ttl, err.icmp_type, err.icmp_code, err.version) == (
        ROUTER,
        62,
        3,
        0,
        6,
    )
    assert err.time_exceeded and not err.unreachable
    q = err.quote
    assert (q.source, q.destination, q.protocol, q.sport, q.dport, q.seq, q.ttl) == (
        SRC,
        DST,
        packets.PROTO_TCP,
        47000,
        443,
        0xABCD0102,
        3,
    )
    assert q.ip_id == 0x0102  # the probe's index: IPv6 has no IP ID
    assert q.flow_label == packets.flow_label(SRC, DST, 47000, 443)


def test_decode_icmpv6_unreachable_and_a_quote_without_the_sequence():
    probe = packets.stamp(packets.tcp_syn_template(SRC, DST, 47000, 443), 3, 0, 7)
    err = packets.decode_icmp(_icmp6_error(ICMPv6DestUnreach(code=0), probe))
    assert isinstance(err, packets.IcmpError) and err.unreachable and err.icmp_type == 1
    # 40 bytes of IPv6 and 4 of TCP: ports but no sequence number -- no identity
    assert packets.decode_icmp(_icmp6_error(ICMPv6TimeExceeded(), probe, quote=44)) is None


def test_decode_icmpv6_extension_with_mpls_length_in_8_byte_units():
    probe = packets.stamp(packets.tcp_syn_template(SRC, DST, 47000, 443), 3, 0, 9)
    stack = (MplsLabel(24001, 0, True, 1),)
    original = probe.ljust(icmpext.LEGACY_ORIGINAL_BYTES, b"\0")
    # RFC 4884 §4.2 for ICMPv6: length (8-byte units) in the first unused byte
    icmp = struct.pack("!BBHBxxx", 3, 0, 0, len(original) // 8) + original
    raw = bytes(IPv6(src=ROUTER, dst=SRC, nh=58, hlim=61)) + icmp
    raw = raw[:4] + struct.pack("!H", len(icmp) + len(crafting.build_extensions(stack))) + raw[6:]
    err = packets.decode_icmp(raw + crafting.build_extensions(stack))
    assert isinstance(err, packets.IcmpError) and err.mpls == stack
    # the same length read in ICMP's 4-byte units would point inside the quote
    assert icmpext.extension_offset(original + b"\0" * 8, len(original) // 8) is None


def test_decode_tcpv6_and_echo_reply():
    probe = packets.stamp(packets.tcp_syn_template(SRC, DST, 47000, 443), 30, 0, 41)
    syn_ack = IPv6(src=DST, dst=SRC, hlim=59) / TCP(sport=443, dport=47000, flags="SA", ack=42)
    seg = packets.decode_tcp(bytes(syn_ack))
    assert seg is not None
    assert (seg.source, seg.destination, seg.sport, seg.dport, seg.ack, seg.reply_ttl) == (
        DST,
        SRC,
        443,
        47000,
        42,
        59,
    )
    assert seg.record_route == ()
    del probe
    reply = IPv6(src=DST, dst=SRC, hlim=60) / ICMPv6EchoReply(id=7, seq=5, data=b"x")
    assert packets.decode_icmp(bytes(reply)) == packets.EchoReply(DST, 60, 7, 5)


def test_matching_an_ipv6_reply_needs_everything_the_probe_carried():
    table = ProbeTable()
    index, seq = table.next_identity()
    tpl = packets.tcp_syn_template(SRC, DST, 47000, 443)
    table.add(SentProbe(index, 0, 3, 0, SRC, DST, packets.PROTO_TCP, 47000, 443, seq, 0, 100.0))
    probe = packets.stamp(tpl, 3, index, seq)
    m = table.match(packets.decode_icmp(_icmp6_error(ICMPv6TimeExceeded(), probe)), 100.01)
    assert m is not None and (m.address, m.kind, m.icmp_type) == (ROUTER, "time-exceeded", 3)
    other = packets.stamp(tpl, 3, index, seq ^ 0x10000)  # same index, another run's tag
    assert table.match(packets.decode_icmp(_icmp6_error(ICMPv6TimeExceeded(), other)), 1) is None
    syn_ack = IPv6(src=DST, dst=SRC, hlim=59) / TCP(
        sport=443, dport=47000, flags="SA", ack=(seq + 1) & 0xFFFFFFFF
    )
    m = table.match(packets.decode_tcp(bytes(syn_ack)), 100.02)
    assert m is not None and m.kind == "syn-ack" and m.from_destination


def test_rawsock_rebuilds_the_ipv6_header_it_was_handed_without():
    payload = bytes(ICMPv6TimeExceeded())
    dst = bytes(IPv6(dst=SRC))[24:40]
    rebuilt = rawsock.ipv6_header(ROUTER, dst, 58, 61, len(payload)) + payload
    pkt = IPv6(rebuilt)
    assert (pkt.src, pkt.dst, pkt.nh, pkt.hlim, pkt.plen) == (ROUTER, SRC, 58, 61, len(payload))


def test_icmp6_filter_passes_only_answers_to_probes():
    words = struct.unpack("@8I", rawsock.icmp6_filter((1, 3, 129)))
    passed = {t for t in range(256) if not words[t >> 5] & (1 << (t & 31))}
    assert passed == {1, 3, 129}
