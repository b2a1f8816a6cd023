"""Is the service port open, how fast does it answer, and from how far back?

`probe_tcp` sends one SYN per (address, port) -- all targets at once -- and
times the SYN-ACK.  With CAP_NET_RAW ("raw") the SYN is hand-built, so the
reply's IP TTL is visible and gives the return hop count (a weak asymmetry
signal, DESIGN §4.4); the handshake is never completed (the kernel resets it).
Without the capability ("connect") it times non-blocking connect() calls in
parallel; the reply TTL is then unknown.  Both methods take IPv4 and IPv6
addresses (raw: the IPv6 SYN carries its flow's label, the reply's hop limit
gives the return hops as the TTL does).

Network outcomes never raise: each target gets a TcpResult with a failure
code from report.FAILURE_CODES.
"""

from __future__ import annotations

import errno
import random
import selectors
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from agent.measure import packets, rawsock
from agent.measure.packets import return_hops
from agent.report import TcpResult

Target = tuple[str, int]

# SYN retransmissions like the kernel's first ones, scaled to short timeouts.
_RETRY_FRACTIONS = (0.0, 0.34, 0.67)


def probe_tcp(
    targets: Sequence[Target], timeout_s: float, method: str = "auto"
) -> dict[Target, TcpResult]:
    """SYN every target at once; state, handshake RTT and reply TTL per target."""
    unique = list(dict.fromkeys(targets))
    if method == "auto":
        method = "raw" if rawsock.has_raw_capability() else "connect"
    if method == "raw":
        return _probe_raw(unique, timeout_s)
    if method == "connect":
        return _probe_connect(unique, timeout_s)
    raise ValueError(f"probe_tcp: method must be auto, raw or connect, not {method!r}")


# --------------------------------------------------------------------------- raw SYN


@dataclass(slots=True)
class _Pending:
    target: Target
    template: packets.Template | None
    started_s: float = 0.0
    sent: dict[int, float] | None = None  # seq -> send time
    result: TcpResult | None = None


def _probe_raw(targets: list[Target], timeout_s: float) -> dict[Target, TcpResult]:
    t0 = time.time()
    families = tuple(sorted({packets.ip_version(a) or 4 for a, _ in targets})) or (4,)
    with (
        rawsock.PortReservation() as ports,
        rawsock.ProbeSockets((packets.PROTO_TCP, packets.PROTO_ICMP), families) as socks,
    ):
        sport = ports.reserve(socket.SOCK_STREAM)
        pending: dict[Target, _Pending] = {}
        for address, port in targets:
            src = packets.source_address_for(address) if packets.ip_version(address) else None
            if src is None:
                pending[(address, port)] = _Pending(
                    (address, port), None, result=_failed(port, "error", "tcp.unreachable", 0.0)
                )
                continue
            pending[(address, port)] = _Pending(
                (address, port), packets.tcp_syn_template(src, address, sport, port), sent={}
            )
        by_tuple = {
            (packets.canonical(p.target[0]), p.target[1], sport): p
            for p in pending.values()
            if p.result is None
        }
        retries = [t0 + f * timeout_s for f in _RETRY_FRACTIONS]
        deadline = t0 + timeout_s
        while True:
            now = time.time()
            open_ = [p for p in pending.values() if p.result is None]
            if not open_ or now >= deadline:
                break
            while retries and retries[0] <= now:
                retries.pop(0)
                for p in open_:
                    _send_syn(socks, p, now)
            wake = min([deadline, *retries[:1]])
            for rx in socks.receive(wake - time.time()):
                _match_reply(rx, by_tuple, sport)
        for p in pending.values():
            if p.result is None:
                elapsed = time.time() - (p.started_s or t0)
                p.result = _failed(p.target[1], "filtered", "tcp.filtered", elapsed, "raw")
        return {t: pending[t].result for t in targets}


def _send_syn(socks: rawsock.ProbeSockets, p: _Pending, now: float) -> None:
    if p.result is not None or p.template is None or p.sent is None:
        return
    seq = random.getrandbits(32)
    try:
        at = socks.send(packets.stamp(p.template, 64, random.getrandbits(16), seq), p.target[0])
    except rawsock.SendError as err:
        state = "error"
        p.result = _failed(p.target[1], state, err.code, time.time() - (p.started_s or now), "raw")
        return
    p.started_s = p.started_s or at
    p.sent[seq] = at


def _match_reply(rx: rawsock.Received, by_tuple: dict, sport: int) -> None:
    if rx.protocol == packets.PROTO_TCP:
        seg = packets.decode_tcp(rx.data)
        if seg is None or seg.dport != sport:
            return
        p = by_tuple.get((seg.source, seg.sport, seg.dport))
        if p is None or p.result is not None or p.sent is None:
            return
        sent_at = p.sent.get((seg.ack - 1) & 0xFFFFFFFF)
        if sent_at is None:
            return  # not an answer to any SYN we sent: stray or forged
        rtt = max(rx.at_s - sent_at, 0.0)
        duration = max(rx.at_s - p.started_s, 0.0)
        flags = seg.flags & (packets.TCP_SYN | packets.TCP_ACK | packets.TCP_RST)
        if flags == packets.TCP_SYN | packets.TCP_ACK:
            state, failure = "open", None
        elif seg.flags & packets.TCP_RST:
            state, failure = "closed", "tcp.refused"
        else:
            return
        p.result = TcpResult(
            port=p.target[1],
            state=state,
            method="raw",
            connect_s=rtt,
            reply_ttl=seg.reply_ttl,
            return_hops=return_hops(seg.reply_ttl),
            duration_s=duration,
            failure=failure,
        )
        return
    err = packets.decode_icmp(rx.data)
    if not isinstance(err, packets.IcmpError) or not err.unreachable:
        return
    q = err.quote
    if q.protocol != packets.PROTO_TCP or q.sport != sport:
        return
    p = by_tuple.get((q.destination, q.dport, q.sport))
    if p is None or p.result is not None or p.sent is None or q.seq not in p.sent:
        return
    p.result = _failed(p.target[1], "filtered", "tcp.unreachable", rx.at_s - p.started_s, "raw")


def _failed(port: int, state: str, code: str, duration_s: float, method: str = "raw") -> TcpResult:
    return TcpResult(
        port=port, state=state, method=method, duration_s=max(duration_s, 0.0), failure=code
    )


# --------------------------------------------------------------------------- connect()


_REFUSED = {errno.ECONNREFUSED, errno.ECONNRESET}
_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL}


def _probe_connect(targets: list[Target], timeout_s: float) -> dict[Target, TcpResult]:
    results: dict[Target, TcpResult] = {}
    sel = selectors.DefaultSelector()
    started: dict[Target, float] = {}
    try:
        for target in targets:
            address, port = target
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setblocking(False)
            started[target] = time.perf_counter()
            code = s.connect_ex((address, port))
            if code not in (0, errno.EINPROGRESS):
                results[target] = _connect_outcome(target, code, 0.0)
                s.close()
                continue
            sel.register(s, selectors.EVENT_WRITE, target)
        deadline = time.perf_counter() + timeout_s
        while sel.get_map():
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            for key, _ in sel.select(remaining):
                s, target = key.fileobj, key.data
                elapsed = time.perf_counter() - started[target]
                code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                results[target] = _connect_outcome(target, code, elapsed)
                sel.unregister(s)
                s.close()
        for key in list(sel.get_map().values()):
            target = key.data
            results[target] = _failed(
                target[1],
                "filtered",
                "tcp.filtered",
                time.perf_counter() - started[target],
                "connect",
            )
            sel.unregister(key.fileobj)
            key.fileobj.close()
    finally:
        sel.close()
    return {t: results[t] for t in targets}


def _connect_outcome(target: Target, code: int, elapsed_s: float) -> TcpResult:
    port = target[1]
    if code == 0:
        return TcpResult(
            port=port, state="open", method="connect", connect_s=elapsed_s, duration_s=elapsed_s
        )
    if code in _REFUSED:
        return _failed(port, "closed", "tcp.refused", elapsed_s, "connect")
    if code in _UNREACHABLE:
        return _failed(port, "error", "tcp.unreachable", elapsed_s, "connect")
    return _failed(port, "error", "tcp.error", elapsed_s, "connect")
