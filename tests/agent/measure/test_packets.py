"""Probe templates, stamping and the struct decoders, checked against scapy (no root)."""

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR

from agent.measure import packets
from agent.report import MplsLabel
from tests.agent.measure import crafting

SRC, DST = "10.10.1.10", "198.19.16.10"


def _checksums_ok(raw: bytes, layer) -> bool:
    pkt = IP(raw)
    got = pkt[layer].chksum
    del pkt[layer].chksum
    return IP(bytes(pkt))[layer].chksum == got


@pytest.mark.parametrize("record_route", [False, True])
@pytest.mark.parametrize(
    ("src", "dst", "sport", "dport"),
    [
        (SRC, DST, 47000, 443),
        ("192.0.2.1", "255.255.255.254", 1, 65535),
        ("0.0.0.1", "0.0.0.2", 65535, 1),
    ],
)
def test_templates_are_byte_for_byte_what_scapy_builds(src, dst, sport, dport, record_route):
    """The struct-packed templates (no scapy at run time) equal scapy's, checksums included."""
    rr = [IPOption_RR(routers=["0.0.0.0"] * packets.RR_SLOTS)] if record_route else []

    def ip():
        return IP(src=src, dst=dst, ttl=64, id=0, options=rr)

    syn = TCP(sport=sport, dport=dport, flags="S", seq=0, window=packets.SYN_WINDOW)
    syn.options = packets.SYN_OPTIONS
    echo_payload = b"\xff\xff" + packets._PAYLOAD[2:]
    cases = [
        (packets.tcp_syn_template(src, dst, sport, dport, record_route=record_route), ip() / syn),
        (
            packets.udp_template(src, dst, sport, dport, record_route=record_route),
            ip() / UDP(sport=sport, dport=dport) / packets._PAYLOAD,
        ),
        (
            packets.icmp_echo_template(src, dst, sport, record_route=record_route),
            ip() / ICMP(type=8, id=sport, seq=0) / echo_payload,
        ),
    ]
    for template, built in cases:
        assert template.data == bytes(built), type(built.payload).__name__


def test_tcp_stamp_sets_fields_and_checksum():
    for rr in (False, True):
        tpl = packets.tcp_syn_template(SRC, DST, 47000, 443, record_route=rr)
        raw = packets.stamp(tpl, 7, 0x1234, 0xDEADBEEF)
        pkt = IP(raw)
        assert (pkt.ttl, pkt.id, pkt[TCP].seq, pkt[TCP].flags) == (7, 0x1234, 0xDEADBEEF, "S")
        assert (pkt[TCP].sport, pkt[TCP].dport) == (47000, 443)
        assert _checksums_ok(raw, TCP)


def test_udp_checksum_constant_across_probes():
    tpl = packets.udp_template(SRC, DST, 47000, 443)
    a, b = packets.stamp(tpl, 1, 1, 0), packets.stamp(tpl, 9, 999, 0)
    assert IP(a)[UDP].chksum == IP(b)[UDP].chksum
    assert _checksums_ok(b, UDP)


def test_icmp_checksum_and_id_constant_sequence_varies():
    tpl = packets.icmp_echo_template(SRC, DST, 4242)
    probes = [IP(packets.stamp(tpl, ttl, seq, seq)) for ttl, seq in ((1, 0), (2, 77), (3, 65535))]
    assert len({p[ICMP].chksum for p in probes}) == 1
    assert {p[ICMP].id for p in probes} == {4242}
    assert [p[ICMP].seq for p in probes] == [0, 77, 65535]
    assert all(_checksums_ok(bytes(p), ICMP) for p in probes)


def test_decode_time_exceeded_with_mpls():
    probe = packets.stamp(packets.tcp_syn_template(SRC, DST, 47000, 443), 3, 555, 9)
    stack = (MplsLabel(100, 0, True, 1),)
    raw = crafting.craft_icmp_error("192.0.2.2", probe, extensions=crafting.build_extensions(stack))
    err = packets.decode_icmp(raw)
    assert isinstance(err, packets.IcmpError)
    assert (err.source, err.icmp_type, err.icmp_code, err.mpls) == ("192.0.2.2", 11, 0, stack)
    q = err.quote
    assert (q.source, q.destination, q.protocol, q.ip_id, q.sport, q.dport, q.seq) == (
        SRC,
        DST,
        6,
        555,
        47000,
        443,
        9,
    )


def test_decode_tcp_and_echo_and_record_route():
    probe = packets.stamp(
        packets.tcp_syn_template(SRC, DST, 47000, 443, record_route=True), 30, 1, 41
    )
    syn_ack = IP(src=DST, dst=SRC, ttl=59, options=IP(probe).options) / TCP(
        sport=443, dport=47000, flags="SA", ack=42
    )
    rr = bytearray(bytes(syn_ack))
    # fill two Record Route slots as two routers would have
    rr[20 + 3 : 20 + 11] = bytes([10, 255, 0, 1, 10, 255, 1, 1])
    rr[20 + 2] = 12
    seg = packets.decode_tcp(bytes(rr))
    assert seg is not None
    assert (seg.source, seg.sport, seg.dport, seg.ack, seg.reply_ttl) == (DST, 443, 47000, 42, 59)
    assert seg.record_route == ("10.255.0.1", "10.255.1.1")
    echo = packets.stamp(packets.icmp_echo_template(SRC, DST, 7), 30, 5, 5)
    reply = packets.decode_icmp(crafting.craft_echo_reply(echo))
    assert reply == packets.EchoReply(DST, 64, 7, 5)


def test_decoders_reject_garbage():
    assert packets.decode_icmp(b"") is None
    assert packets.decode_icmp(b"\x45" + b"\0" * 10) is None
    assert packets.decode_tcp(bytes(IP(src=DST, dst=SRC) / UDP())) is None
    # an ICMP error quoting too little to identify the probe
    probe = packets.stamp(packets.tcp_syn_template(SRC, DST, 1, 2), 1, 1, 1)
    assert packets.decode_icmp(crafting.craft_icmp_error("10.0.0.1", probe, quote_bytes=22)) is None
