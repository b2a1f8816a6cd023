"""agent.measure.dns against real DNS servers on loopback (UDP and TCP), no mocks.

`AuthServer` is a small dnspython-based authoritative server started per test
module on 127.0.0.1 (or ::1) on a free port.  Its zone has a CDN chain through
Traffic Manager to `*.azureedge.net`, and names that misbehave on purpose:
SERVFAIL, REFUSED, silence, garbage, a CNAME loop, a 100-long chain, forced
truncation, oversized answers.  A second instance answers some names
differently, as an internal split-horizon resolver would.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from agent.measure import dns as agent_dns
from agent.report import FAILURE_CODES, DnsResult

ZONE_SOA = "ns1.erpath.test. hostmaster.erpath.test. 1 3600 600 86400 60"

# Behaviours by query name (lower case, absolute).
SILENT, SERVFAIL, REFUSED, GARBAGE, WRONG_ID, NOTIMP = (
    "silent",
    "servfail",
    "refused",
    "garbage",
    "wrong-id",
    "notimp",
)
TC_UDP = "tc-udp"  # always truncated over UDP, whatever the size
FAT_UDP = "fat-udp"  # ignores the client's EDNS payload size over UDP
STOP = "stop"  # answers with the CNAME only, like a server outside the target's zone


Records = dict[tuple[str, str], tuple[int, list[str]]]


def _reverse(address: str) -> str:
    return dns.reversename.from_address(address).to_text()


def _cdn_zone() -> Records:
    records: Records = {
        ("cdn.erpath.test.", "CNAME"): (300, ["erpath-cdn.trafficmanager.net."]),
        ("erpath-cdn.trafficmanager.net.", "CNAME"): (60, ["erpath.azureedge.net."]),
        ("erpath.azureedge.net.", "CNAME"): (120, ["erpath.afd.azureedge.net."]),
        ("erpath.afd.azureedge.net.", "A"): (30, ["198.18.10.1", "198.18.10.2"]),
        ("erpath.afd.azureedge.net.", "AAAA"): (40, ["2001:db8:10::1"]),
        ("api.erpath.test.", "A"): (600, ["198.18.20.1"]),
        ("nodata.erpath.test.", "TXT"): (600, ['"no addresses here"']),
        ("dangling.erpath.test.", "CNAME"): (90, ["gone.erpath.test."]),
        ("loop-a.erpath.test.", "CNAME"): (60, ["loop-b.erpath.test."]),
        ("loop-b.erpath.test.", "CNAME"): (60, ["loop-a.erpath.test."]),
        ("self.erpath.test.", "CNAME"): (60, ["self.erpath.test."]),
        ("tc.erpath.test.", "A"): (60, ["198.18.30.1"]),
        ("huge.erpath.test.", "A"): (60, [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(300)]),
        ("fat.erpath.test.", "A"): (60, [f"198.19.0.{i + 1}" for i in range(100)]),
        ("hop.erpath.test.", "CNAME"): (300, ["far.example.net."]),
        ("far.example.net.", "A"): (45, ["198.18.40.1"]),
        # Hop names: PTR, an RFC 2317 classless delegation, Cymru origin TXT.
        ("1.10.18.198.in-addr.arpa.", "PTR"): (3600, ["ae1-0.ams-96cbe-1b.ntwk.msn.net."]),
        ("1.10.18.198.origin.asn.cymru.com.", "TXT"): (
            3600,
            [
                '"8075 | 198.18.0.0/15 | US | arin | 1997-03-05"',
                '"12076 | 198.18.10.0/24 | US | arin | 2011-01-01"',
            ],
        ),
        ("2.10.18.198.in-addr.arpa.", "CNAME"): (3600, ["2.0-25.10.18.198.in-addr.arpa."]),
        ("2.0-25.10.18.198.in-addr.arpa.", "PTR"): (3600, ["edge-2.erpath.test."]),
        (_reverse("2001:db8:10::1"), "PTR"): (3600, ["be-10.lon-1.ntwk.msn.net."]),
        (_reverse("2001:db8:10::1").replace(".ip6.arpa.", ".origin6.asn.cymru.com."), "TXT"): (
            3600,
            ['"8075 | 2001:db8::/32 | US | arin | 2011-01-01"'],
        ),
    }
    chain = ["long.erpath.test."] + [f"l{i}.erpath.test." for i in range(1, 101)]
    for here, there in zip(chain, chain[1:], strict=False):
        records[(here, "CNAME")] = (60, [there])
    records[(chain[-1], "A")] = (60, ["198.18.50.1"])
    for i in range(30):
        records[(f"n{i}.erpath.test.", "A")] = (60, [f"198.18.60.{i + 1}"])
    return records


CDN_BEHAVIOURS = {
    "silent.erpath.test.": SILENT,
    "broken.erpath.test.": SERVFAIL,
    "denied.erpath.test.": REFUSED,
    "garbage.erpath.test.": GARBAGE,
    "wrong-id.erpath.test.": WRONG_ID,
    "notimp.erpath.test.": NOTIMP,
    "tc.erpath.test.": TC_UDP,
    "fat.erpath.test.": FAT_UDP,
    "hop.erpath.test.": STOP,
    "4.10.18.198.in-addr.arpa.": SILENT,
    "4.10.18.198.origin.asn.cymru.com.": SILENT,
}


class AuthServer:
    """An authoritative DNS server on one address and port, UDP and TCP."""

    def __init__(
        self,
        records: Records,
        behaviours: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        delay_s: float = 0.0,
        refuse_all: bool = False,
    ):
        self.records = {
            (name.lower(), dns.rdatatype.from_text(t)): (ttl, values)
            for (name, t), (ttl, values) in records.items()
        }
        self.names = {name for name, _ in self.records}
        self.behaviours = behaviours or {}
        self.delay_s = delay_s
        self.refuse_all = refuse_all
        self.log: list[tuple[str, str, str]] = []  # (qname, rdtype, transport)
        self._stop = threading.Event()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.udp, self.tcp = _bind_pair(family, host, port)
        self.host, self.port = host, self.udp.getsockname()[1]
        self.address = (
            f"[{host}]:{self.port}" if family == socket.AF_INET6 else f"{host}:{self.port}"
        )
        self._threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.udp.close()
        self.tcp.close()

    def transports(self, qname: str) -> set[str]:
        return {tr for name, _, tr in self.log if name == qname}

    # ----------------------------------------------------------------- serving

    def _serve_udp(self) -> None:
        self.udp.settimeout(0.1)
        while not self._stop.is_set():
            try:
                wire, peer = self.udp.recvfrom(65535)
            except TimeoutError:
                continue
            threading.Thread(target=self._udp_reply, args=(wire, peer), daemon=True).start()

    def _udp_reply(self, wire: bytes, peer: tuple) -> None:
        reply = self._reply(wire, "udp")
        if reply is not None and not self._stop.is_set():
            self.udp.sendto(reply, peer)

    def _serve_tcp(self) -> None:
        self.tcp.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._tcp_session, args=(conn,), daemon=True).start()

    def _tcp_session(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            while True:
                head = _recv_exactly(conn, 2)
                if head is None:
                    return
                wire = _recv_exactly(conn, struct.unpack("!H", head)[0])
                if wire is None:
                    return
                reply = self._reply(wire, "tcp")
                if reply is None:
                    return
                conn.sendall(struct.pack("!H", len(reply)) + reply)

    def _reply(self, wire: bytes, transport: str) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        qname = question.name.to_text().lower()
        self.log.append((qname, dns.rdatatype.to_text(question.rdtype), transport))
        if self.delay_s:
            time.sleep(self.delay_s)
        behaviour = self.behaviours.get(qname)
        if behaviour == SILENT:
            return None
        if behaviour == GARBAGE:
            return random.Random(qname).randbytes(40)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if self.refuse_all or behaviour == REFUSED:
            response.set_rcode(dns.rcode.REFUSED)
        elif behaviour == SERVFAIL:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif behaviour == NOTIMP:
            response.set_rcode(dns.rcode.NOTIMP)
        else:
            self._answer(response, question.name, question.rdtype, behaviour == STOP)
        if behaviour == WRONG_ID:
            response.id = (query.id + 1) % 65536
        if transport == "udp":
            limit = query.payload if query.edns >= 0 else 512
            out = response.to_wire(max_size=65535)
            if behaviour == TC_UDP or (len(out) > limit and behaviour != FAT_UDP):
                truncated = dns.message.make_response(query)
                truncated.flags |= dns.flags.AA | dns.flags.TC
                return truncated.to_wire()
            return out
        return response.to_wire(max_size=65535)

    def _answer(
        self, response: dns.message.Message, qname: dns.name.Name, rdtype: int, stop: bool
    ) -> None:
        current, emitted = qname, set()
        while current not in emitted:
            emitted.add(current)
            key = current.to_text().lower()
            if (key, rdtype) in self.records:
                response.answer.append(self._rrset(current, rdtype))
                return
            if (key, dns.rdatatype.CNAME) in self.records:
                cname = self._rrset(current, dns.rdatatype.CNAME)
                response.answer.append(cname)
                if stop:
                    return
                current = cname[0].target
                continue
            if key not in self.names:
                response.set_rcode(dns.rcode.NXDOMAIN)
            break
        else:
            return  # a loop: the chain as far as it goes, as BIND does
        response.authority.append(dns.rrset.from_text("erpath.test.", 60, "IN", "SOA", ZONE_SOA))

    def _rrset(self, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset:
        ttl, values = self.records[(name.to_text().lower(), rdtype)]
        return dns.rrset.from_text_list(name, ttl, dns.rdataclass.IN, rdtype, values)


def _bind_pair(family: int, host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same free port."""
    for _ in range(50):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.bind((host, port))
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((host, udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            if port:
                raise
            continue
        tcp.listen(64)
        return udp, tcp
    raise RuntimeError("no free port for both UDP and TCP")


def _recv_exactly(conn: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        try:
            chunk = conn.recv(count - len(data))
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


@pytest.fixture(scope="module")
def server() -> Iterator[AuthServer]:
    s = AuthServer(_cdn_zone(), CDN_BEHAVIOURS)
    yield s
    s.close()


@pytest.fixture(scope="module")
def internal() -> Iterator[AuthServer]:
    """The site's internal resolver: a private endpoint for the CDN name."""
    records = _cdn_zone()
    records[("cdn.erpath.test.", "CNAME")] = (300, ["erpath.privatelink.erpath.test."])
    records[("erpath.privatelink.erpath.test.", "A")] = (10, ["10.20.0.5"])
    s = AuthServer(records, {**CDN_BEHAVIOURS, "api.erpath.test.": SILENT})
    yield s
    s.close()


def resolve(server: AuthServer, name: str, timeout_s: float = 2.0) -> DnsResult:
    return agent_dns.resolve_many([name], [server.address], timeout_s)[name]


# --------------------------------------------------------------------------- answers


def test_cdn_chain_is_followed_with_minimum_ttl(server: AuthServer) -> None:
    r = resolve(server, "cdn.erpath.test")
    assert r.failure is None
    assert r.cname_chain == (
        "erpath-cdn.trafficmanager.net",
        "erpath.azureedge.net",
        "erpath.afd.azureedge.net",
    )
    assert r.addresses == ("198.18.10.1", "198.18.10.2", "2001:db8:10::1")
    assert r.ttl_s == 30
    assert 0 < r.duration_s < 1
    assert [a.resolver for a in r.answers] == [server.address]
    assert r.answers[0].addresses == r.addresses
    assert not r.divergent


def test_ipv4_only_name_and_want_ipv6_false(server: AuthServer) -> None:
    r = resolve(server, "api.erpath.test")
    assert (r.addresses, r.cname_chain, r.ttl_s, r.failure) == (("198.18.20.1",), (), 600, None)
    before = len(server.log)
    only_v4 = agent_dns.resolve_many(["cdn.erpath.test"], [server.address], 2.0, want_ipv6=False)
    assert only_v4["cdn.erpath.test"].addresses == ("198.18.10.1", "198.18.10.2")
    assert all(t == "A" for _, t, _ in server.log[before:])


def test_chain_leaving_the_zone_is_asked_again(server: AuthServer) -> None:
    r = resolve(server, "hop.erpath.test")
    assert r.failure is None
    assert r.cname_chain == ("far.example.net",)
    assert r.addresses == ("198.18.40.1",)
    assert r.ttl_s == 45
    assert ("far.example.net.", "A", "udp") in server.log


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("name", "code", "chain"),
    [
        ("missing.erpath.test", "dns.nxdomain", ()),
        ("dangling.erpath.test", "dns.nxdomain", ("gone.erpath.test",)),
        ("broken.erpath.test", "dns.servfail", ()),
        ("denied.erpath.test", "dns.refused", ()),
        ("nodata.erpath.test", "dns.no-answer", ()),
        ("garbage.erpath.test", "dns.error", ()),
        ("wrong-id.erpath.test", "dns.error", ()),
        ("notimp.erpath.test", "dns.error", ()),
        ("loop-a.erpath.test", "dns.cname-loop", ("loop-b.erpath.test",)),
        ("self.erpath.test", "dns.cname-loop", ()),
    ],
)
def test_failure_codes(server: AuthServer, name: str, code: str, chain: tuple[str, ...]) -> None:
    r = resolve(server, name)
    assert code in FAILURE_CODES
    assert (r.failure, r.cname_chain, r.addresses) == (code, chain, ())
    assert r.answers[0].failure == code


def test_hundred_long_chain_is_capped(server: AuthServer) -> None:
    r = resolve(server, "long.erpath.test")
    assert r.failure == "dns.cname-loop"
    assert len(r.cname_chain) == agent_dns.MAX_CHAIN
    assert r.cname_chain[:2] == ("l1.erpath.test", "l2.erpath.test")
    # The 100 CNAMEs do not fit 1232 bytes: the server truncated, TCP carried them.
    assert "tcp" in server.transports("long.erpath.test.")


def test_silence_times_out_within_budget(server: AuthServer) -> None:
    started = time.monotonic()
    r = resolve(server, "silent.erpath.test", timeout_s=0.6)
    elapsed = time.monotonic() - started
    assert r.failure == "dns.timeout"
    assert 0.5 < r.duration_s < 0.9
    assert elapsed < 1.0
    # One retransmit per record type inside the budget.
    assert server.log.count(("silent.erpath.test.", "A", "udp")) >= 2


def test_truncated_udp_is_retried_over_tcp(server: AuthServer) -> None:
    r = resolve(server, "tc.erpath.test")
    assert (r.addresses, r.failure) == (("198.18.30.1",), None)
    assert server.transports("tc.erpath.test.") == {"udp", "tcp"}


def test_oversized_answer_over_tcp_is_capped(server: AuthServer) -> None:
    r = resolve(server, "huge.erpath.test")
    assert r.failure is None
    assert len(r.addresses) == agent_dns.MAX_ADDRESSES
    assert r.addresses[0] == "198.18.0.1"
    assert "tcp" in server.transports("huge.erpath.test.")


def test_oversized_udp_datagram_is_accepted(server: AuthServer) -> None:
    r = resolve(server, "fat.erpath.test")
    assert r.failure is None
    assert len(r.addresses) == agent_dns.MAX_ADDRESSES
    assert server.transports("fat.erpath.test.") == {"udp"}


# --------------------------------------------------------------------------- resolvers


def test_divergent_resolvers_split_horizon(server: AuthServer, internal: AuthServer) -> None:
    results = agent_dns.resolve_many(
        ["cdn.erpath.test", "missing.erpath.test", "api.erpath.test"],
        [server.address, internal.address],
        timeout_s=0.8,
    )
    cdn = results["cdn.erpath.test"]
    assert cdn.divergent
    assert cdn.addresses == ("198.18.10.1", "198.18.10.2", "2001:db8:10::1")
    public, private = cdn.answers
    assert (public.resolver, private.resolver) == (server.address, internal.address)
    assert private.cname_chain == ("erpath.privatelink.erpath.test",)
    assert private.addresses == ("10.20.0.5",)
    assert private.ttl_s == 10
    # Both say "no such name": they agree.
    assert not results["missing.erpath.test"].divergent
    # A resolver that times out is unwell, not a different view of the zone.
    api = results["api.erpath.test"]
    assert [a.failure for a in api.answers] == [None, "dns.timeout"]
    assert not api.divergent


def test_many_names_take_one_round_trip() -> None:
    slow = [AuthServer(_cdn_zone(), delay_s=0.3) for _ in range(2)]
    try:
        names = [f"n{i}.erpath.test" for i in range(30)]
        started = time.monotonic()
        results = agent_dns.resolve_many(names, [s.address for s in slow], timeout_s=3)
        elapsed = time.monotonic() - started
    finally:
        for s in slow:
            s.close()
    assert [results[n].addresses for n in names] == [(f"198.18.60.{i + 1}",) for i in range(30)]
    assert all(len(r.answers) == 2 and not r.divergent for r in results.values())
    # 120 queries at 0.3 s each: 36 s one after another.
    assert elapsed < 1.5


def test_ipv6_resolver_with_port() -> None:
    s = AuthServer(_cdn_zone(), host="::1")
    try:
        assert s.address.startswith("[::1]:")
        r = resolve(s, "cdn.erpath.test")
    finally:
        s.close()
    assert r.failure is None and r.answers[0].resolver == s.address


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("192.0.2.53", agent_dns.Server("192.0.2.53", 53)),
        ("192.0.2.53:5353", agent_dns.Server("192.0.2.53", 5353)),
        ("2001:db8::53", agent_dns.Server("2001:db8::53", 53)),
        ("[2001:db8::53]", agent_dns.Server("2001:db8::53", 53)),
        ("[2001:db8::53]:5353", agent_dns.Server("2001:db8::53", 5353)),
    ],
)
def test_parse_resolver(spec: str, expected: agent_dns.Server) -> None:
    assert agent_dns.parse_resolver(spec) == agent_dns.Resolver(spec, (expected,))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("dns.google", "not 'system' nor an IP address"),
        ("192.0.2.53:0", "port '0' must be a number from 1 to 65535"),
        ("192.0.2.53:dns", "port 'dns' must be a number from 1 to 65535"),
        ("[2001:db8::53", r"has '\[' without '\]'; write IP, IP:port or \[IPv6\]:port"),
    ],
)
def test_parse_resolver_rejects(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        agent_dns.parse_resolver(spec)


def test_bad_configuration_raises(tmp_path) -> None:
    empty = tmp_path / "resolv.conf"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no usable nameserver in .*resolv.conf"):
        agent_dns.resolve_many(["a.erpath.test"], ["system"], 1, resolv_conf=str(empty))
    with pytest.raises(ValueError, match="at least one resolver"):
        agent_dns.resolve_many(["a.erpath.test"], [], 1)
    with pytest.raises(ValueError, match="not a valid DNS name"):
        agent_dns.resolve_many(["a" * 64 + ".erpath.test"], ["127.0.0.1"], 1)
    assert agent_dns.resolve_many([], ["127.0.0.1"], 1) == {}


def _port53_server(**kwargs) -> AuthServer:
    """A server on port 53 of a random 127/8 address: resolv.conf has no ports."""
    rng = random.Random()
    for _ in range(20):
        host = str(ipaddress.IPv4Address("127.53.0.0") + rng.randrange(1, 65535))
        try:
            return AuthServer(_cdn_zone(), host=host, port=53, **kwargs)
        except OSError:
            continue
    raise RuntimeError("no free port 53 on 127.53.0.0/16")


def _system_resolve(tmp_path, servers: list[AuthServer], timeout_s: float):
    """cdn.erpath.test through the "system" resolver, a resolv.conf listing `servers` in order
    (closed afterwards)."""
    conf = tmp_path / "resolv.conf"
    conf.write_text("".join(f"nameserver {server.host}\n" for server in servers))
    try:
        results = agent_dns.resolve_many(
            ["cdn.erpath.test"], ["system"], timeout_s, resolv_conf=str(conf)
        )
    finally:
        for server in servers:
            server.close()
    return results["cdn.erpath.test"]


@pytest.mark.root
def test_system_resolver_reads_resolv_conf_and_fails_over(tmp_path) -> None:
    refusing, answering = _port53_server(refuse_all=True), _port53_server()
    r = _system_resolve(tmp_path, [refusing, answering], 2)
    assert r.answers[0].resolver == "system"
    assert r.failure is None and r.cname_chain[-1] == "erpath.afd.azureedge.net"
    assert refusing.log and answering.log


@pytest.mark.root
def test_system_resolver_reports_last_failure(tmp_path) -> None:
    r = _system_resolve(tmp_path, [_port53_server(refuse_all=True)], 1)
    assert r.failure == "dns.refused"


# --------------------------------------------------------------------------- hop names


def test_hop_namer_ptr_and_most_specific_asn(server: AuthServer) -> None:
    namer = agent_dns.HopNamer([server.address], 1)
    assert namer("198.18.10.1") == ("ae1-0.ams-96cbe-1b.ntwk.msn.net", 12076)
    assert namer("2001:db8:10::1") == ("be-10.lon-1.ntwk.msn.net", 8075)
    # RFC 2317 classless delegation: the PTR sits behind a CNAME; no ASN record.
    assert namer("198.18.10.2") == ("edge-2.erpath.test", None)
    assert namer("198.18.10.3") == (None, None)
    assert namer("not-an-address") == (None, None)


def test_hop_namer_prefetch_is_concurrent_and_cached() -> None:
    slow = AuthServer(_cdn_zone(), CDN_BEHAVIOURS, delay_s=0.3)
    try:
        namer = agent_dns.HopNamer(slow.address, 1.5, budget_s=1.5)
        hops = ["198.18.10.1", "198.18.10.2", "198.18.10.3", "2001:db8:10::1", "198.18.10.4"]
        started = time.monotonic()
        namer.prefetch(hops)
        elapsed = time.monotonic() - started
        queries = len(slow.log)
        assert namer("198.18.10.1") == ("ae1-0.ams-96cbe-1b.ntwk.msn.net", 12076)
        assert namer("198.18.10.4") == (None, None)  # silent: timed out, cached briefly
        namer.prefetch(hops)
        assert len(slow.log) == queries  # every answer, failures too, came from the cache
    finally:
        slow.close()
    # Ten lookups (PTR + TXT, one CNAME hop) at 0.3 s each, the silent pair
    # waiting out 1.5 s: concurrently that is the timeout, not their sum.
    assert elapsed < 2.0


def test_hop_namer_cache_is_bounded(server: AuthServer) -> None:
    namer = agent_dns.HopNamer(server.address, timeout_s=1, max_entries=2)
    namer.prefetch(["198.18.10.1", "198.18.10.2", "198.18.10.3"])
    assert len(namer) == 2
    before = len(server.log)
    assert namer("198.18.10.3") == (None, None)
    assert len(server.log) == before  # the newest entry stayed
    namer("198.18.10.1")
    assert len(server.log) > before  # the oldest was evicted and asked again


def test_hop_namer_with_dead_resolver_gives_none() -> None:
    # A bound UDP socket that never answers: silence, without touching any real address.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        namer = agent_dns.HopNamer(f"127.0.0.1:{sink.getsockname()[1]}", timeout_s=0.3)
        assert namer("198.18.10.1") == (None, None)


def test_hop_namer_falls_back_to_the_next_resolver(server: AuthServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sink.getsockname()[1]}"
        namer = agent_dns.HopNamer((dead, server.address), 1.0)
        assert namer("198.18.10.1") == ("ae1-0.ams-96cbe-1b.ntwk.msn.net", 12076)
    with pytest.raises(ValueError, match="at least one resolver"):
        agent_dns.HopNamer(())


# Forty hops, as a trace of the lab's targets names (PTR + origin-ASN each).
MANY_HOPS = [f"198.18.{i // 20}.{i % 20 + 1}" for i in range(40)]


def _prefetched(
    ptr: str, delay_s: float, budget_s: float | None = None
) -> tuple[agent_dns.HopNamer, set[str]]:
    """A HopNamer (timeout 5 s) after prefetching MANY_HOPS from a server that names every hop
    `ptr`, `delay_s` late; and the names the server was asked."""
    records = _cdn_zone()
    for hop in MANY_HOPS:
        records[(_reverse(hop), "PTR")] = (300, [ptr])
    server = AuthServer(records, delay_s=delay_s)
    try:
        namer = agent_dns.HopNamer(server.address, timeout_s=5.0, budget_s=budget_s)
        namer.prefetch(MANY_HOPS)
        return namer, {name for name, _, _ in server.log}
    finally:
        server.close()


def test_hop_naming_shares_one_short_deadline_whatever_the_timeout() -> None:
    """A resolver that answers everything, 0.6 s late: the hops stay unnamed.

    The namer's timeout is 5 s, yet nothing waited for the answers: one
    deadline of HopNamer.BUDGET_S (0.3 s) covered every lookup.
    """
    namer, asked = _prefetched("late.ntwk.msn.net.", delay_s=0.6)
    assert all(namer(h) == (None, None) for h in MANY_HOPS)
    assert _reverse(MANY_HOPS[0]) in asked  # the server was asked, and answered too late


def test_hop_naming_within_the_budget_names_hops() -> None:
    # A budget a loaded machine cannot outrun: answers inside it name the hops
    # (the default budget's 0.3 s is the test above, with answers too late for it).
    namer, _ = _prefetched("be-1.ams.ntwk.msn.net.", delay_s=0.02, budget_s=4.0)
    assert [namer(h)[0] for h in MANY_HOPS] == ["be-1.ams.ntwk.msn.net"] * len(MANY_HOPS)


def test_resolver_that_never_answers_is_asked_once_per_hop() -> None:
    """A real server on loopback that stays silent for every hop: unnamed, and cached."""
    behaviours = {}
    for hop in MANY_HOPS:
        behaviours[_reverse(hop)] = SILENT
        octets = ".".join(reversed(hop.split(".")))
        behaviours[f"{octets}.origin.asn.cymru.com."] = SILENT
    mute = AuthServer(_cdn_zone(), behaviours)
    try:
        namer = agent_dns.HopNamer(mute.address, timeout_s=2.0)
        namer.prefetch(MANY_HOPS)
        queries = len(mute.log)
        assert all(namer(h) == (None, None) for h in MANY_HOPS)
        namer.prefetch(MANY_HOPS)
        assert len(mute.log) == queries  # the silence is remembered (FAILED_TTL_S)
    finally:
        mute.close()
    assert {name for name, _, _ in mute.log} == set(behaviours)


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="budget_s must be positive"):
        agent_dns.HopNamer("127.0.0.1", budget_s=0)
