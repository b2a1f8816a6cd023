"""Name resolution: A/AAAA with the full CNAME chain, per resolver, concurrently.

The only module that imports dnspython.  Two entry points:

- `resolve_many(names, resolvers, timeout_s)` asks every resolver for every
  name (A and AAAA), follows and records the CNAME chain (a chain ending in
  `*.azureedge.net` is how a CDN path is recognised) and says whether the
  resolvers disagree (split horizon, private endpoints).
- `HopNamer` names traceroute hops: PTR (`*.ntwk.msn.net`) and origin ASN via
  Team Cymru's DNS interface (8075, 12076), cached.

Queries are sent by this module itself (UDP, retried over TCP when truncated)
rather than through `dns.resolver.Resolver.resolve`, so every resolver, the
system one included, gives the same failure codes, the same chain handling and
runs on one event loop: 30 names x 2 resolvers take one round trip, not 120.
Network outcomes never raise; they come back as `failure` codes.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import threading
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename

from agent.report import DnsAnswer, DnsResult
from agent.settings import is_ip, split_host_port

T = TypeVar("T")

SYSTEM = "system"
RESOLV_CONF = "/etc/resolv.conf"

# RFC 1034 resolvers cap chains too; 16 is dnspython's own limit and far above
# real Power Platform chains (3-5 names through Traffic Manager and a CDN).
MAX_CHAIN = 16
# Addresses kept per name: each one is later route-looked-up, probed and
# traced, and a report is bounded (report.MAX_ITEMS).
MAX_ADDRESSES = 64
# DNS Flag Day 2020 payload: avoids IP fragmentation, larger answers come
# back truncated and are retried over TCP.
EDNS_PAYLOAD_BYTES = 1232
# A lost UDP datagram should not look like a dead resolver: one retransmit.
UDP_TRIES = 2
# Open sockets at once; well under the default 1024 file descriptors.
MAX_IN_FLIGHT = 128

# What a malformed, mismatched or cut-off reply raises inside dnspython.
_BAD_REPLY = (dns.exception.DNSException, EOFError, ValueError, OSError)


@dataclass(frozen=True, slots=True)
class Server:
    """One DNS server to send queries to."""

    address: str
    port: int = 53


@dataclass(frozen=True, slots=True)
class Resolver:
    """A configured resolver: its label in reports and the servers behind it."""

    label: str
    servers: tuple[Server, ...]


def parse_resolver(spec: str, resolv_conf: str = RESOLV_CONF) -> Resolver:
    """`system`, `IP`, `IP:port` or `[IPv6]:port`; raise ValueError naming the fix."""
    if spec == SYSTEM:
        try:
            conf = dns.resolver.Resolver(filename=resolv_conf)
        except dns.resolver.NoResolverConfiguration as e:
            raise ValueError(
                f"resolver 'system': no usable nameserver in {resolv_conf}; "
                "add a 'nameserver' line there or configure resolver IPs"
            ) from e
        servers = tuple(Server(str(ns), conf.port) for ns in conf.nameservers)
        return Resolver(spec, servers)
    try:
        host, port = split_host_port(spec)
    except ValueError as e:
        raise ValueError(f"resolver {spec!r}: {e}; write IP, IP:port or [IPv6]:port") from None
    if not is_ip(host):
        raise ValueError(
            f"resolver {spec!r}: not 'system' nor an IP address (optionally IP:port, [v6]:port)"
        )
    return Resolver(spec, (Server(host, port or 53),))


# --------------------------------------------------------------------------- one lookup


@dataclass(frozen=True, slots=True)
class Lookup:
    """One name and record type through one resolver, CNAMEs followed."""

    chain: tuple[dns.name.Name, ...] = ()
    records: tuple[Any, ...] = ()  # dnspython rdata of the asked type
    ttl_s: int | None = None
    failure: str | None = None


class _Failed(Exception):
    """A query that got no usable response; carries the failure code."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


class _Engine:
    """Sends queries for one event loop; bounds the sockets open at once."""

    def __init__(self) -> None:
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def ask(
        self, resolver: Resolver, qname: dns.name.Name, rdtype: int, deadline: float
    ) -> dns.message.Message:
        """A response with a usable rcode (NOERROR, NXDOMAIN) or _Failed.

        Like the libc stub resolver, any failure moves on to the next server
        (only the system resolver has several); the last failure is reported.
        """
        failure = "dns.timeout"
        servers = resolver.servers
        for i, server in enumerate(servers):
            # Share what is left of the budget among the servers not yet tried.
            left = deadline - time.monotonic()
            if left <= 0:
                break
            server_deadline = time.monotonic() + left / (len(servers) - i)
            try:
                response = await self._exchange(server, qname, rdtype, server_deadline)
            except _Failed as e:
                failure = e.code
                continue
            rcode = response.rcode()
            if rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                return response
            failure = {
                dns.rcode.SERVFAIL: "dns.servfail",
                dns.rcode.REFUSED: "dns.refused",
            }.get(rcode, "dns.error")
        raise _Failed(failure)

    async def _exchange(
        self, server: Server, qname: dns.name.Name, rdtype: int, deadline: float
    ) -> dns.message.Message:
        query = dns.message.make_query(qname, rdtype, use_edns=0, payload=EDNS_PAYLOAD_BYTES)
        async with self._slots:
            for attempt in range(UDP_TRIES):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    return await dns.asyncquery.udp(
                        query,
                        server.address,
                        timeout=left / (UDP_TRIES - attempt),
                        port=server.port,
                        # Datagrams from elsewhere are spoofing or noise, not the answer.
                        ignore_unexpected=True,
                        raise_on_truncation=True,
                    )
                except dns.exception.Timeout:
                    continue
                except dns.message.Truncated:
                    return await self._tcp(query, server, deadline)
                except _BAD_REPLY as e:
                    raise _Failed("dns.error") from e
            raise _Failed("dns.timeout")

    @staticmethod
    async def _tcp(
        query: dns.message.Message, server: Server, deadline: float
    ) -> dns.message.Message:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Failed("dns.timeout")
        try:
            return await dns.asyncquery.tcp(query, server.address, timeout=left, port=server.port)
        except dns.exception.Timeout as e:
            raise _Failed("dns.timeout") from e
        except _BAD_REPLY as e:
            raise _Failed("dns.error") from e

    async def lookup(
        self, resolver: Resolver, name: dns.name.Name, rdtype: int, deadline: float
    ) -> Lookup:
        """Follow the CNAME chain from `name` to records of `rdtype`."""
        chain: list[dns.name.Name] = []
        ttls: list[int] = []
        seen = {name}
        current = name
        # Each pass is one query; the chain cap bounds the passes.
        for _ in range(MAX_CHAIN + 1):
            try:
                response = await self.ask(resolver, current, rdtype, deadline)
            except _Failed as e:
                return _lookup(chain, (), ttls, e.code)
            followed = False
            while True:
                rrset = response.get_rrset(response.answer, current, dns.rdataclass.IN, rdtype)
                if rrset:
                    ttls.append(rrset.ttl)
                    return _lookup(chain, tuple(rrset), ttls, None)
                cname = response.get_rrset(
                    response.answer, current, dns.rdataclass.IN, dns.rdatatype.CNAME
                )
                if not cname:
                    break
                ttls.append(cname.ttl)
                target = cname[0].target
                if target in seen or len(chain) >= MAX_CHAIN:
                    return _lookup(chain, (), ttls, "dns.cname-loop")
                seen.add(target)
                chain.append(target)
                current = target
                followed = True
            if response.rcode() == dns.rcode.NXDOMAIN:
                return _lookup(chain, (), ttls, "dns.nxdomain")
            has_soa = any(r.rdtype == dns.rdatatype.SOA for r in response.authority)
            if not followed or has_soa:
                return _lookup(chain, (), ttls, "dns.no-answer")
            # The chain left the server's zones without an answer or an SOA
            # for the target (an authoritative server, not a recursive
            # resolver): ask again for the target, as a resolver would.
        return _lookup(chain, (), ttls, "dns.cname-loop")


def _lookup(
    chain: list[dns.name.Name], records: tuple[Any, ...], ttls: list[int], failure: str | None
) -> Lookup:
    return Lookup(tuple(chain), records, min(ttls, default=None), failure)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run on a private event loop: callers are plain worker threads."""
    return asyncio.run(coro)


# --------------------------------------------------------------------------- resolve_many


def resolve_many(
    names: Sequence[str],
    resolvers: Sequence[str],
    timeout_s: float,
    want_ipv6: bool = True,
    *,
    resolv_conf: str = RESOLV_CONF,
) -> dict[str, DnsResult]:
    """Resolve every name through every resolver, all queries at once.

    `timeout_s` bounds each (name, resolver) resolution, CNAME re-queries and
    TCP retries included, so the whole call takes at most about `timeout_s`.
    """
    if not resolvers:
        raise ValueError("resolve_many: configure at least one resolver")
    if timeout_s <= 0:
        raise ValueError(f"resolve_many: timeout_s must be positive, not {timeout_s}")
    parsed = [parse_resolver(r, resolv_conf) for r in resolvers]
    qnames = {n: _qname(n) for n in names}
    if not qnames:
        return {}

    async def main() -> dict[str, DnsResult]:
        engine = _Engine()
        deadline = time.monotonic() + timeout_s
        per_name = [
            asyncio.gather(*(_answer(engine, r, q, want_ipv6, deadline) for r in parsed))
            for q in qnames.values()
        ]
        answers = await asyncio.gather(*per_name)
        return {n: _result(tuple(a)) for n, a in zip(qnames, answers, strict=True)}

    return _run(main())


def _qname(name: str) -> dns.name.Name:
    try:
        # Targets are fully qualified: no search domains, as for any FQDN.
        return dns.name.from_text(name.rstrip(".") + ".")
    except dns.exception.DNSException as e:
        raise ValueError(f"target name {name!r} is not a valid DNS name: {e}") from e


async def _answer(
    engine: _Engine, resolver: Resolver, qname: dns.name.Name, want_ipv6: bool, deadline: float
) -> DnsAnswer:
    started = time.monotonic()
    rdtypes = [dns.rdatatype.A, dns.rdatatype.AAAA] if want_ipv6 else [dns.rdatatype.A]
    lookups = await asyncio.gather(*(engine.lookup(resolver, qname, t, deadline) for t in rdtypes))
    duration_s = time.monotonic() - started
    addresses = sorted(
        {ipaddress.ip_address(r.address) for lk in lookups for r in lk.records},
        key=lambda a: (a.version, a),
    )
    # Both lookups walk the same chain; the longer one saw more of it.
    chain = max((lk.chain for lk in lookups), key=len)
    ttls = [lk.ttl_s for lk in lookups if lk.ttl_s is not None]
    failure = None
    if not addresses:
        # AAAA-only trouble is less telling than A's; "no-answer" least of all.
        codes = [lk.failure for lk in lookups if lk.failure]
        failure = next((c for c in codes if c != "dns.no-answer"), codes[0])
    return DnsAnswer(
        resolver=resolver.label,
        cname_chain=tuple(_text(n) for n in chain),
        addresses=tuple(str(a) for a in addresses[:MAX_ADDRESSES]),
        ttl_s=min(ttls, default=None),
        duration_s=duration_s,
        failure=failure,
    )


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


# Outcomes that say what a zone contains; timeouts and errors say only that a
# resolver is unwell, which is not a disagreement about the name.
_CONTENT_OUTCOMES = (None, "dns.nxdomain", "dns.no-answer")


def _result(answers: tuple[DnsAnswer, ...]) -> DnsResult:
    views = {
        (frozenset(a.addresses), _chain_end(a).lower(), a.failure)
        for a in answers
        if a.failure in _CONTENT_OUTCOMES
    }
    first = answers[0]
    return DnsResult(
        cname_chain=first.cname_chain,
        addresses=first.addresses,
        ttl_s=first.ttl_s,
        duration_s=first.duration_s,
        failure=first.failure,
        answers=answers,
        divergent=len(views) > 1,
    )


def _chain_end(answer: DnsAnswer) -> str:
    return answer.cname_chain[-1] if answer.cname_chain else ""


# --------------------------------------------------------------------------- hop names


@dataclass(frozen=True, slots=True)
class HopName:
    """A hop's reverse name and origin ASN, and until when they are believed."""

    ptr: str | None
    asn: int | None
    expires_at: float


class HopNamer:
    """Cached PTR and origin-ASN lookups for traceroute hops.

    `HopNamer(resolvers, timeout_s)` takes the agent's configured resolvers
    (one spec or several, tried in order).  `namer(address)` answers from the
    cache or looks up (blocking); `namer.prefetch(addresses)` looks up every
    uncached address concurrently, so a whole trace is named in one round
    trip.  Keep one namer for the agent's lifetime: the cache is the point.

    Names are a nicety on top of a measurement that is already done, so
    every PTR and origin-ASN lookup of one call shares one deadline,
    `budget_s` (at most BUDGET_S = 0.3 s, whatever the resolvers' timeout):
    a dead or slow resolver costs a probe cycle that much, not a DNS timeout
    per hop.  A hop not named in time is reported unnamed (None); failures
    and negative answers are cached like answers, failures briefly; nothing
    here raises for a network outcome.
    """

    # What hop naming may add to a probe cycle; a resolver on the site's
    # network answers PTR and TXT queries in milliseconds.
    BUDGET_S = 0.3

    # Cache bounds on DNS TTLs: hops are renamed rarely, and a short TTL must
    # not turn every trace into a fresh burst of queries.
    MIN_TTL_S = 300
    MAX_TTL_S = 86_400
    # A resolver timeout is retried sooner than a definite "no such name".
    FAILED_TTL_S = 60

    def __init__(
        self,
        resolvers: str | Sequence[str] = SYSTEM,
        timeout_s: float = 2.0,
        *,
        max_entries: int = 4096,
        asn_zone: str = "origin.asn.cymru.com",
        asn6_zone: str = "origin6.asn.cymru.com",
        resolv_conf: str = RESOLV_CONF,
        budget_s: float | None = None,
    ):
        if timeout_s <= 0 or max_entries <= 0 or (budget_s is not None and budget_s <= 0):
            raise ValueError("HopNamer: timeout_s, max_entries and budget_s must be positive")
        specs = [resolvers] if isinstance(resolvers, str) else list(resolvers)
        if not specs:
            raise ValueError("HopNamer: configure at least one resolver")
        # Hop names are public data: every configured resolver's servers, in
        # order, are fallbacks for the first.
        parsed = [parse_resolver(r, resolv_conf) for r in specs]
        self._resolver = Resolver(
            ",".join(specs), tuple(dict.fromkeys(s for r in parsed for s in r.servers))
        )
        self._budget_s = budget_s if budget_s is not None else min(timeout_s, self.BUDGET_S)
        self._max_entries = max_entries
        self._asn_zone = dns.name.from_text(asn_zone)
        self._asn6_zone = dns.name.from_text(asn6_zone)
        self._cache: collections.OrderedDict[str, HopName] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, address: str) -> tuple[str | None, int | None]:
        entry = self._cached(address)
        if entry is None:
            self.prefetch([address])
            entry = self._cached(address)
        return (entry.ptr, entry.asn) if entry else (None, None)

    def __len__(self) -> int:
        return len(self._cache)

    def prefetch(self, addresses: Iterable[str]) -> None:
        """Look up every address not in the cache, all at once."""
        todo = []
        for a in dict.fromkeys(addresses):
            ip = _ip_or_none(a)
            if ip is not None and self._cached(a) is None:
                todo.append((a, ip))
        if not todo:
            return

        async def main() -> list[HopName]:
            engine = _Engine()
            deadline = time.monotonic() + self._budget_s  # one deadline for every lookup
            return await asyncio.gather(*(self._name(engine, ip, deadline) for _, ip in todo))

        for (address, _), entry in zip(todo, _run(main()), strict=True):
            self._store(address, entry)

    async def _name(
        self, engine: _Engine, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, deadline: float
    ) -> HopName:
        reverse = dns.reversename.from_address(str(ip))
        if ip.version == 4:
            origin = reverse.relativize(dns.reversename.ipv4_reverse_domain).derelativize(
                self._asn_zone
            )
        else:
            origin = reverse.relativize(dns.reversename.ipv6_reverse_domain).derelativize(
                self._asn6_zone
            )
        ptr_lookup, asn_lookup = await asyncio.gather(
            engine.lookup(self._resolver, reverse, dns.rdatatype.PTR, deadline),
            engine.lookup(self._resolver, origin, dns.rdatatype.TXT, deadline),
        )
        ptr = _text(ptr_lookup.records[0].target) if ptr_lookup.records else None
        asn = _origin_asn(asn_lookup.records)
        return HopName(ptr, asn, time.monotonic() + self._ttl(ptr_lookup, asn_lookup))

    def _ttl(self, *lookups: Lookup) -> float:
        if any(lk.failure not in _CONTENT_OUTCOMES for lk in lookups):
            return self.FAILED_TTL_S
        ttl = min((lk.ttl_s for lk in lookups if lk.ttl_s is not None), default=self.MIN_TTL_S)
        return min(max(ttl, self.MIN_TTL_S), self.MAX_TTL_S)

    def _cached(self, address: str) -> HopName | None:
        with self._lock:
            entry = self._cache.get(address)
            if entry is None:
                return None
            if entry.expires_at <= time.monotonic():
                del self._cache[address]
                return None
            self._cache.move_to_end(address)
            return entry

    def _store(self, address: str, entry: HopName) -> None:
        with self._lock:
            self._cache[address] = entry
            self._cache.move_to_end(address)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)


def _ip_or_none(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def _origin_asn(records: Sequence[Any]) -> int | None:
    """The ASN from Cymru TXT records, "ASN [ASN...] | prefix | CC | registry | date".

    Several records mean several covering prefixes: the most specific one is
    the route actually used.  Several ASNs on one record (multi-origin) are
    listed by Cymru in no meaningful order; the first is kept.
    """
    best: tuple[int, int] | None = None  # (prefix length, asn)
    for rdata in records:
        text = b"".join(rdata.strings).decode("ascii", "replace")
        fields = [f.strip() for f in text.split("|")]
        if len(fields) < 2 or not fields[0]:
            continue
        first = fields[0].split()[0]
        try:
            asn = int(first)
            length = ipaddress.ip_network(fields[1], strict=False).prefixlen
        except ValueError:
            continue
        if best is None or length > best[0]:
            best = (length, asn)
    return best[1] if best else None
