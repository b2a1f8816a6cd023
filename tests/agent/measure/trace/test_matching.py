"""Replies map back to probes only through what they quote; forged ones never do (no root)."""

import random

from agent.measure import packets
from agent.measure.trace.matching import ProbeTable, SentProbe
from tests.agent.measure import crafting

SRC, DST = "10.10.1.10", "198.19.16.10"


def _send(table: ProbeTable, tpl: packets.Template, ttl: int) -> tuple[SentProbe, bytes]:
    index, seq = table.next_identity()
    if tpl.protocol == packets.PROTO_ICMP:
        seq = index
    raw = packets.stamp(tpl, ttl, index, seq)
    probe = SentProbe(
        index,
        0,
        ttl,
        0,
        tpl.source,
        tpl.destination,
        tpl.protocol,
        tpl.sport,
        tpl.dport,
        seq,
        tpl.icmp_ident,
        100.0,
    )
    table.add(probe)
    return probe, raw


def _match(table: ProbeTable, raw: bytes):
    decoded = packets.decode_tcp(raw) if raw[9] == 6 else packets.decode_icmp(raw)
    return table.match(decoded, 100.002)


def test_time_exceeded_and_syn_ack_match_their_probe():
    table = ProbeTable(random.Random(1))
    tpl = packets.tcp_syn_template(SRC, DST, 47000, 443)
    p3, raw3 = _send(table, tpl, 3)
    p6, raw6 = _send(table, tpl, 6)
    m = _match(table, crafting.craft_icmp_error("10.255.1.2", raw3))
    assert m.probe == p3 and m.kind == "time-exceeded" and m.address == "10.255.1.2"
    assert abs(m.rtt_s - 0.002) < 1e-9
    m = _match(table, crafting.craft_tcp_reply(raw6, reply_ttl=59))
    assert m.probe == p6 and m.kind == "syn-ack" and m.from_destination and m.reply_ttl == 59
    assert _match(table, crafting.craft_tcp_reply(raw6, flags="RA")).kind == "rst"


def test_forged_and_stray_replies_are_rejected():
    table = ProbeTable(random.Random(2))
    tpl = packets.tcp_syn_template(SRC, DST, 47000, 443)
    _, raw = _send(table, tpl, 4)
    other = packets.tcp_syn_template(SRC, DST, 47001, 443)  # another tool's flow
    stranger = packets.stamp(other, 4, table.next_identity()[0] - 1, 5)
    bad_seq = packets.stamp(tpl, 4, table.next_identity()[0] - 1, 12345)  # right IP ID, wrong seq
    wrong_dst = packets.stamp(
        packets.tcp_syn_template(SRC, "198.19.16.11", 47000, 443),
        4,
        table.next_identity()[0] - 1,
        0,
    )
    for forged in (
        crafting.craft_icmp_error("10.9.9.9", stranger),
        crafting.craft_icmp_error("10.9.9.9", bad_seq),
        crafting.craft_icmp_error("10.9.9.9", wrong_dst),
        crafting.craft_tcp_reply(raw, ack_delta=2),  # ack is not seq + 1
        crafting.craft_tcp_reply(raw, source="198.19.16.99"),  # not from the target
        crafting.craft_tcp_reply(raw, flags="A"),  # neither SYN-ACK nor RST
        crafting.craft_tcp_reply(stranger),
    ):
        assert _match(table, forged) is None


def test_udp_and_icmp_probes():
    table = ProbeTable(random.Random(3))
    udp = packets.udp_template(SRC, DST, 47000, 443)
    p, raw = _send(table, udp, 5)
    m = _match(table, crafting.craft_icmp_error(DST, raw, icmp_type=3, icmp_code=3))
    assert m.probe == p and m.kind == "unreachable" and m.from_destination
    echo = packets.icmp_echo_template(SRC, DST, 999)
    p, raw = _send(table, echo, 2)
    assert _match(table, crafting.craft_icmp_error("10.255.0.2", raw)).probe == p
    assert _match(table, crafting.craft_echo_reply(raw)).kind == "echo-reply"
    assert _match(table, crafting.craft_echo_reply(raw, source="10.0.0.66")) is None
    wrong_ident = packets.stamp(packets.icmp_echo_template(SRC, DST, 998), 2, p.index, p.seq)
    assert _match(table, crafting.craft_icmp_error("10.255.0.2", wrong_ident)) is None


def test_quote_of_a_tcp_probe_without_its_sequence_is_no_reply():
    # RFC 792 quotes 8 bytes of TCP: a shorter quote proves nothing (issue 14.12).
    table = ProbeTable(random.Random(3))
    tpl = packets.tcp_syn_template(SRC, DST, 47000, 443)
    probe, raw = _send(table, tpl, 4)
    ihl = (raw[0] & 0x0F) * 4
    short = crafting.craft_icmp_error("10.255.1.2", raw, quote_bytes=ihl + 4)
    decoded = packets.decode_icmp(short)
    assert isinstance(decoded, packets.IcmpError) and decoded.quote.seq is None
    assert table.match(decoded, 100.002) is None
    full = crafting.craft_icmp_error("10.255.1.2", raw)
    assert table.match(packets.decode_icmp(full), 100.002).probe == probe
