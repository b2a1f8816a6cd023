"""The report: the one neutral record that crosses every boundary.

An agent builds one `Report` per probe cycle; the collector parses the same
types back.  Everything here is a frozen dataclass; this module is the only
place that turns them into JSON-ready dicts and back (`to_dict`,
`report_from_dict`) and the only source of the JSON Schema
(`json_schema()`, committed as `agent/report.schema.json`).

It imports nothing beyond the standard library, so the collector can use it
without pulling in scapy, pyroute2 or dnspython.
"""

from __future__ import annotations

import calendar
import dataclasses
import functools
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA = "erpath.report/2"
# The collector accepts the previous version for one release: agents are
# upgraded site by site.  Until /2 ships, new fields are added to /2 as
# optional fields (defaults), so /2 documents stay valid as it grows.
SUPPORTED_SCHEMAS = ("erpath.report/1", SCHEMA)

# Bounds that keep one report (and one hostile request) small.  They are far
# above what a real agent sends: 256 targets x 2 addresses, 64 hops, 16
# replies per hop.
MAX_STR = 1024
MAX_ITEMS = 1024

PathClass = Literal["expressroute", "internet", "cdn", "unknown"]
Link = Literal["primary", "secondary"]
Severity = Literal["info", "warning", "critical"]
TcpState = Literal["open", "closed", "filtered", "error"]
ReplyKind = Literal["time-exceeded", "unreachable", "syn-ack", "rst", "echo-reply"]
AgentRole = Literal["branch", "datacenter", "azure-side"]
# The address family of a probed address (derived from the address).
Family = Literal["ipv4", "ipv6"]
# How the circuit's two links carry traffic by design: both load-sharing per
# flow (Microsoft's recommendation), or the secondary only on failure.
LinkMode = Literal["active-active", "active-standby"]
# What a fact in a verdict's or finding's evidence is about.  Rules read these
# fields; `Evidence.text` is rendered from them for people and never parsed.
EvidenceKind = Literal[
    "msee-hop",  # a hop inside a circuit's peering subnet: circuit, link, ttl, address
    "ce-hop",  # a hop at a circuit's CE: circuit, ttl, address
    "route",  # the local route: address (gateway), name (interface), circuit or egress
    "cname",  # the CNAME chain ends in a CDN / Front Door / Traffic Manager name: name
    "service-tag",  # the address is in a service tag: tag, prefix
    "hop-asn",  # a hop in a Microsoft ASN: ttl, address, asn
    "hop-ptr",  # a hop whose name is Microsoft's: ttl, address, name
    "edge-hop",  # a configured internet-edge hop: egress, ttl, address
    "nat",  # a NAT address of an internet edge: egress, address
    "advertised",  # a prefix advertised over a circuit: circuit, prefix, address
    "tcp",  # the TCP handshake's outcome: name (state)
    "trace",  # what the trace reached: ttl, address
    "geography",  # geopolitical regions: name, circuit
    "unknown",  # a fact that could not be established this time: name (what), why in text
    "untagged",  # the address is in no service tag that ExpressRoute carries: address
    "path",  # the measured path a finding is about: name (class), circuit, link, egress
    "return-path",  # where replies to an address come back: circuit or egress, address
    "expectation",  # the class expected and why: name (class), circuit, prefix, address, tag
    # a BGP community of Microsoft peering and a circuit's route filter:
    # circuit, community, service, region, prefix (the community's), address
    "route-filter",
    # which family the host's users reach the target over and why (RFC 6724 order,
    # RFC 8305 fallback): name (the family users use), address (the address tried)
    "family",
    # the path taken from another result of the same cycle whose trace saw the hops this
    # one missed: name (its target), address (its address), prefix and tag (the known
    # prefix both are in), ttl (a hop copied), circuit or egress (the path)
    "shared-path",
    "note",  # free text: evidence of reports of schema /1, and context
]
# The finding kinds of erpath.report/1; kinds added since are not /1 findings.
FindingKind1 = Literal[
    "asymmetric-nat",
    "asymmetric-circuit",
    "handshake-blackhole",
    "return-hops-mismatch",
    "nat-pool-on-internet",
    "premium-required",
]
FindingKind = Literal[
    FindingKind1,
    "route-filter-excludes",
    "advertised-but-internet",
    "community-not-authorized",
    "ipv6-blackhole",
]
# Findings whose replies come back another way than the requests left.
ASYMMETRY_FINDINGS: frozenset[str] = frozenset({"asymmetric-nat", "asymmetric-circuit"})

# The closed set of network outcome codes.  A result or phase that failed
# carries exactly one of these; anything else is a bug.
FAILURE_CODES = frozenset(
    {
        "dns.nxdomain",
        "dns.servfail",
        "dns.timeout",
        "dns.no-answer",
        "dns.cname-loop",
        "dns.refused",
        "dns.error",
        "route.none",
        "route.error",
        "tcp.refused",
        "tcp.filtered",
        "tcp.unreachable",
        "tcp.error",
        "trace.unreachable",
        "trace.no-capability",
        "trace.error",
    }
)


def _ip(**kw: Any) -> Any:
    """A field that must hold an IP address (validated on parse)."""
    return field(metadata={"format": "ip"}, **kw)


def _prefix(**kw: Any) -> Any:
    return field(metadata={"format": "prefix"}, **kw)


# --------------------------------------------------------------------------- agent and site


@dataclass(frozen=True, slots=True)
class AgentInfo:
    id: str
    site: str
    role: AgentRole
    version: str
    hostname: str
    # Random per state directory: a new epoch (a reinstalled agent) restarts
    # the collector's ordering by seq.
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class Circuit:
    """An ExpressRoute circuit as the site configures it (Microsoft peering)."""

    name: str
    location: str
    sku: Literal["standard", "premium"]
    primary_subnet: str = _prefix()
    secondary_subnet: str = _prefix()
    ce_addresses: tuple[str, ...] = _ip(default=())
    advertised_prefixes: tuple[str, ...] = _prefix(default=())
    links: LinkMode = "active-active"
    # The customer's ASN on Microsoft peering.
    peer_asn: int | None = None
    # The route filter on Microsoft peering and the BGP communities it allows
    # (e.g. "12076:51002"): Microsoft advertises only those over the circuit.
    # None: no route filter known (every Microsoft prefix assumed advertised).
    route_filter: str | None = None
    route_filter_communities: tuple[str, ...] = ()
    # A dual-stack circuit's IPv6 peering /126s (MSEE = second address) beside
    # the IPv4 /30s above.  An IPv6-only circuit writes its /126s in
    # primary_subnet / secondary_subnet (one family per key pair).
    primary_subnet_v6: str | None = _prefix(default=None)
    secondary_subnet_v6: str | None = _prefix(default=None)

    def link_subnets(self) -> tuple[tuple[Link, str], ...]:
        """Every peering subnet of the circuit with its link, IPv4 and IPv6."""
        pairs: tuple[tuple[Link, str | None], ...] = (
            ("primary", self.primary_subnet),
            ("secondary", self.secondary_subnet),
            ("primary", self.primary_subnet_v6),
            ("secondary", self.secondary_subnet_v6),
        )
        return tuple((link, s) for link, s in pairs if s)


@dataclass(frozen=True, slots=True)
class InternetEdge:
    name: str
    nat_addresses: tuple[str, ...] = _ip(default=())
    hop_addresses: tuple[str, ...] = _ip(default=())
    # IPv6 leaves un-NATed: the prefixes the site's hosts take their source
    # addresses from when they leave through this edge.
    source_prefixes_v6: tuple[str, ...] = _prefix(default=())


@dataclass(frozen=True, slots=True)
class SiteFacts:
    circuits: tuple[Circuit, ...] = ()
    internet_edges: tuple[InternetEdge, ...] = ()
    # Failover order of preference: circuit names, then "internet".
    prefer: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Health:
    """Agent health, carried in each report for agents nobody can scrape."""

    cycle_s: float | None = None
    spool_reports: int = 0
    dropped_reports_total: int = 0
    # The service tags file the verdicts used: its changeNumber, and how long ago it was
    # installed (the file's mtime: `service-tags update` writes a new file) when the cycle ran.
    service_tags_change_number: int | None = None
    service_tags_age_s: float | None = None


# --------------------------------------------------------------------------- measurements


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """What one resolver said about one name."""

    resolver: str
    cname_chain: tuple[str, ...] = ()
    addresses: tuple[str, ...] = _ip(default=())
    ttl_s: int | None = None
    duration_s: float = 0.0
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class DnsResult:
    """The first resolver's answer on top, every resolver's in `answers`."""

    cname_chain: tuple[str, ...] = ()
    addresses: tuple[str, ...] = _ip(default=())
    ttl_s: int | None = None
    duration_s: float = 0.0
    failure: str | None = None
    answers: tuple[DnsAnswer, ...] = ()
    divergent: bool = False


@dataclass(frozen=True, slots=True)
class RouteResult:
    """The kernel's route for one destination, as `ip route get` sees it."""

    interface: str | None = None
    gateway: str | None = _ip(default=None)
    source: str | None = _ip(default=None)
    table: int | None = None
    protocol: str | None = None
    rule: str | None = None
    duration_s: float = 0.0
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class TcpResult:
    port: int
    state: TcpState
    method: Literal["raw", "connect"]
    connect_s: float | None = None
    reply_ttl: int | None = None
    return_hops: int | None = None
    duration_s: float = 0.0
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class MplsLabel:
    """One RFC 4950 label stack entry."""

    label: int
    tc: int
    bottom: bool
    ttl: int


@dataclass(frozen=True, slots=True)
class Reply:
    address: str = _ip()
    rtt_s: float = 0.0
    kind: ReplyKind = "time-exceeded"
    icmp_type: int | None = None
    icmp_code: int | None = None
    mpls: tuple[MplsLabel, ...] = ()
    ptr: str | None = None
    asn: int | None = None
    # The flow identifier of the probe this reply answered (Paris: constant
    # within a flow), so a hop where flows diverge keeps who went where.
    flow: int | None = None


@dataclass(frozen=True, slots=True)
class Hop:
    ttl: int
    replies: tuple[Reply, ...] = ()
    # True when this hop was not asked again for this target but copied from
    # another target's trace through the same routers (Doubletree stop set,
    # Record Route): routers rate-limit ICMP, so asking once is the honest way.
    # A hop not shared holds only replies asked for this target.  At the MSEE
    # hop (a reply from inside a circuit's peering /30) a target is asked with
    # up to 6 flows: the links its flows took are the distinct Reply.flow per
    # /30 of that unshared hop.
    shared: bool = False

    @property
    def addresses(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for r in self.replies:
            seen.setdefault(r.address, None)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class Trace:
    protocol: Literal["tcp", "udp", "icmp"]
    flow: int
    reached: bool = False
    hops: tuple[Hop, ...] = ()
    duration_s: float = 0.0
    failure: str | None = None
    # The family the probes were sent in (None in reports of older agents).
    family: Family | None = None

    @property
    def hop_count(self) -> int:
        """TTL of the last hop that answered (the destination when reached)."""
        answered = [h.ttl for h in self.hops if h.replies]
        return max(answered, default=0)


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True, slots=True)
class Evidence:
    """One fact behind a verdict or a finding, as fields; `text` is rendered from them."""

    kind: EvidenceKind
    text: str
    circuit: str | None = None
    link: Link | None = None
    egress: str | None = None
    ttl: int | None = None
    address: str | None = _ip(default=None)
    prefix: str | None = _prefix(default=None)
    tag: str | None = None
    name: str | None = None
    asn: int | None = None
    # A BGP community of Microsoft peering ("12076:51002"), the service it
    # carries ("Azure West Europe") and its Azure region ("westeurope").
    community: str | None = None
    service: str | None = None
    region: str | None = None
    # The fact points the other way than the verdict (shown, never hidden):
    # its circuit or link is not the verdict's.
    conflicting: bool = False


@dataclass(frozen=True, slots=True)
class LinkSeen:
    """A link of the circuit and how many of the target's flows crossed it."""

    link: Link
    flows: int


@dataclass(frozen=True, slots=True)
class Verdict:
    path_class: PathClass = field(metadata={"json": "class"})
    confidence: float = 0.0
    evidence: tuple[Evidence, ...] = ()
    circuit: str | None = None
    link: Link | None = None
    egress: str | None = None
    expected: PathClass | None = None
    matches_expected: bool | None = None
    # Links of `circuit` that this target's flows crossed, counting only flows
    # whose MSEE hop was asked for this target (not copied from another trace).
    links_seen: tuple[LinkSeen, ...] = ()
    # Flows sent through the MSEE hop for this target: enough to see a second
    # link when there is one (MDA-lite's rule), or fewer.
    msee_flows: int = 0


@dataclass(frozen=True, slots=True)
class Finding:
    """A local asymmetry (or misconfiguration) finding with what to change."""

    kind: FindingKind
    severity: Severity
    evidence: tuple[Evidence, ...] = ()
    fix: str | None = None
    circuit: str | None = None
    # Predicted from site facts but contradicted by the measurement (e.g. the
    # handshake succeeded, so replies came back the way requests left).
    predicted_only: bool = False

    @property
    def asymmetry(self) -> bool:
        return self.kind in ASYMMETRY_FINDINGS


@dataclass(frozen=True, slots=True)
class MseeProbe:
    """A direct probe this cycle of one link's MSEE peering address: is that circuit available?"""

    circuit: str
    link: Link
    address: str = _ip()
    answered: bool = False
    rtt_s: float | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """One (target, address) measured by one agent in one cycle."""

    target: str
    role: str
    port: int
    address: str | None = _ip(default=None)
    dns: DnsResult | None = None
    route: RouteResult | None = None
    tcp: TcpResult | None = None
    trace: Trace | None = None
    verdict: Verdict | None = None
    findings: tuple[Finding, ...] = ()
    failure: str | None = None
    # The target's own failover order when it differs from the site's `prefer`.
    prefer: tuple[str, ...] = ()
    # The address's family (None without an address, and in reports of older agents:
    # `address_family` derives it).
    family: Family | None = None

    @property
    def address_family(self) -> Family | None:
        if self.family is not None or not self.address:
            return self.family
        return "ipv6" if ":" in self.address else "ipv4"


@dataclass(frozen=True, slots=True)
class Report:
    id: str = field(metadata={"format": "uuid"})
    seq: int = field()
    agent: AgentInfo = field()
    started_at: str = field(metadata={"format": "date-time"})
    duration_s: float
    schema: str = SCHEMA
    interval_s: float | None = None
    site: SiteFacts = SiteFacts()
    health: Health | None = None
    results: tuple[Result, ...] = ()
    msee_probes: tuple[MseeProbe, ...] = ()


# --------------------------------------------------------------------------- serialisation


def _json_name(f: dataclasses.Field) -> str:
    return f.metadata.get("json", f.name)


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain JSON-ready data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {_json_name(f): to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_dict(v) for v in obj]
    return obj


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _bare(tp: Any) -> Any:
    """`tp` without its `| None` (the model's only unions; `_compile` refuses others)."""
    if _is_union(tp):
        (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
    return tp


# --------------------------------------------------------------------------- string formats

# Each string format is one pattern, used by the decoder and written into the
# JSON Schema, so the two cannot disagree.  Patterns end in `$(?!\n)` because
# Python's `$` (so jsonschema's `pattern`) also matches before a final newline.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_HEXTET = r"[0-9A-Fa-f]{1,4}"


def _ipv6() -> str:
    """RFC 4291 text forms: 8 hextets, or fewer around one '::', optionally ending in IPv4."""
    forms = [rf"(?:{_HEXTET}:){{7}}{_HEXTET}", rf"(?:{_HEXTET}:){{6}}{_IPV4}"]
    for before in range(8):  # hextets before the '::', which stands for at least one
        head = rf"(?:{_HEXTET}:){{{before}}}:" if before else "::"
        after = 7 - before - 1
        tail = rf"(?:{_HEXTET}(?::{_HEXTET}){{0,{after}}})?" if after >= 0 else ""
        forms.append(head + tail)
        if before <= 5:
            forms.append(rf"{head}(?:{_HEXTET}:){{0,{5 - before}}}{_IPV4}")
    return "(?:" + "|".join(forms) + ")"


_IPV6 = _ipv6()
_END = r"$(?!\n)"
PATTERNS: dict[str, str] = {
    "ip": rf"^(?:{_IPV4}|{_IPV6}){_END}",
    "prefix": rf"^(?:{_IPV4}/(?:3[0-2]|[12]?[0-9])|{_IPV6}/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9])){_END}",
    "uuid": rf"^[0-9A-Fa-f]{{8}}-(?:[0-9A-Fa-f]{{4}}-){{3}}[0-9A-Fa-f]{{12}}{_END}",
    # RFC 3339 section 5.6 with an upper-case T and a zone (Z or an offset);
    # no leap second (Python's datetime has none).  The day is checked below.
    "date-time": (
        r"^([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
        r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
        rf"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]){_END}"
    ),
}
# The JSON Schema `format` that says the same, where there is one.
_FORMATS: dict[str, list[str]] = {
    "ip": ["ipv4", "ipv6"],
    "uuid": ["uuid"],
    "date-time": ["date-time"],
}
_FORMAT_HELP = {
    "ip": "is not an IP address (e.g. 192.0.2.1 or 2001:db8::1, no zone index)",
    "prefix": "is not an IP prefix (address/length, e.g. 192.0.2.0/24 or 2001:db8::/32)",
    "uuid": "is not a UUID (8-4-4-4-12 hex digits)",
    "date-time": "is not an RFC 3339 time with a zone (e.g. 2026-11-27T10:00:00Z)",
}
_MATCH = {name: re.compile(p).match for name, p in PATTERNS.items()}


def _real_date(value: str) -> bool:
    """The pattern bounds months and days; this rejects year 0 and days like 30 February."""
    match = _MATCH["date-time"](value)
    if match is None:
        return False
    year, month, day = int(match[1]), int(match[2]), int(match[3])
    return year > 0 and day <= calendar.monthrange(year, month)[1]


# Hop and target addresses repeat across a fleet's reports (the same routers):
# valid ones are remembered, so the object decoder accepts them without a
# call.  Bounded (emptied when full), so junk cannot grow it.
_VALID_ADDRESSES: dict[str, None] = {}
_VALID_ADDRESSES_MAX = 16384


def _address(value: str) -> bool:
    if value in _VALID_ADDRESSES:
        return True
    if _MATCH["ip"](value) is None:
        return False
    if len(_VALID_ADDRESSES) >= _VALID_ADDRESSES_MAX:
        _VALID_ADDRESSES.clear()
    _VALID_ADDRESSES[value] = None
    return True


_CHECKS: dict[str, Callable[[str], bool]] = {
    "ip": _address,
    "prefix": functools.lru_cache(maxsize=4096)(lambda s: _MATCH["prefix"](s) is not None),
    "uuid": lambda s: _MATCH["uuid"](s) is not None,
    "date-time": _real_date,
}


# --------------------------------------------------------------------------- decoding

MAX_INT = 2**63 - 1
MAX_FLOAT = sys.float_info.max  # larger (1e400) is infinity once parsed


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class ReportError(ValueError):
    """A document that is not a valid report; `errors` names every bad field."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors[:5]))


# A decoder of one type: (value, parent's JSON pointer, "/key" of the value,
# errors to append to) -> the value as the model holds it.  Decoders are built
# once per type from the dataclasses, so checking costs no introspection; the
# pointer is joined only where an error is reported or an object or array is
# entered, which keeps a valid report cheap.
Decoder = Callable[[Any, str, str, list[FieldError]], Any]
_INDEX = tuple(f"/{i}" for i in range(MAX_ITEMS))


def _pointer_key(key: Any) -> str:
    return "/" + str(key).replace("~", "~0").replace("/", "~1")  # RFC 6901


def _compile(tp: Any, fmt: str | None, legacy: bool, cache: dict[Any, Decoder]) -> Decoder:
    key = (tp, fmt)
    if key in cache:
        return cache[key]
    origin = typing.get_origin(tp)
    decode: Decoder
    if _is_union(tp):
        args = typing.get_args(tp)
        if type(None) not in args or len(args) != 2:
            raise TypeError(f"report model has an unsupported union {tp!r}")  # a bug
        inner = _compile(_bare(tp), fmt, legacy, cache)

        def decode(v: Any, parent: str, key: str, errors: list[FieldError]) -> Any:
            return None if v is None else inner(v, parent, key, errors)

    elif origin is Literal:
        allowed = typing.get_args(tp)
        message = f"must be one of {', '.join(map(str, allowed))}"

        def decode(v: Any, parent: str, key: str, errors: list[FieldError]) -> Any:
            if v not in allowed:
                errors.append(FieldError(parent + key, message))
            return v

    elif origin is tuple:
        (inner_tp, _) = typing.get_args(tp)
        inner = _compile(inner_tp, fmt, legacy, cache)

        def decode(v: Any, parent: str, key: str, errors: list[FieldError]) -> Any:
            if not isinstance(v, list):
                errors.append(FieldError(parent + key, "must be an array"))
                return ()
            if len(v) > MAX_ITEMS:
                errors.append(FieldError(parent + key, f"has {len(v)} items, at most {MAX_ITEMS}"))
                return ()
            path = parent + key
            return tuple([inner(x, path, _INDEX[i], errors) for i, x in enumerate(v)])

    elif legacy and tp is Evidence:
        # erpath.report/1 carried evidence as sentences: keep each as a note.
        text = _compile(str, None, legacy, cache)

        def decode(v: Any, parent: str, key: str, errors: list[FieldError]) -> Any:
            return Evidence(kind="note", text=text(v, parent, key, errors))

    elif dataclasses.is_dataclass(tp):
        decode = _compile_object(tp, legacy, cache)
    elif tp is bool:

        def decode(v: Any, parent: str, key: str, errors: list[FieldError]) -> Any:
            if v is not True and v is not False:
                errors.append(FieldError(parent + key, "must be true or false"))
            return v

    elif tp is int:

        def decode(v: Any, parent: str, key: str, errors: list[FieldError]) -> Any:
            if type(v) is int and 0 <= v <= MAX_INT:
                return v
            # JSON has one number type: 7.0 is the integer 7 (as in JSON Schema).
            integral = type(v) is int or (type(v) is float and v.is_integer())
            if integral and 0 <= v <= MAX_INT:
                return int(v)
            if not integral:
                errors.append(FieldError(parent + key, "must be an integer"))
            else:
                errors.append(FieldError(parent + key, "must be a non-negative 64-bit integer"))
            return v

    elif tp is float:

        def decode(v: Any, parent: str, key: str, errors: list[FieldError]) -> Any:
            if (type(v) is float or type(v) is int) and 0 <= v <= MAX_FLOAT:
                return float(v)
            if isinstance(v, bool) or not isinstance(v, int | float):
                errors.append(FieldError(parent + key, "must be a number"))
            else:
                errors.append(FieldError(parent + key, "must be a finite, non-negative number"))
            return 0.0

    elif tp is str:
        check = _CHECKS[fmt] if fmt is not None else None
        help_ = _FORMAT_HELP.get(fmt or "", "")

        def decode(v: Any, parent: str, key: str, errors: list[FieldError]) -> Any:
            if type(v) is str and len(v) <= MAX_STR and (check is None or check(v)):
                return v
            if not isinstance(v, str):
                errors.append(FieldError(parent + key, "must be a string"))
            elif len(v) > MAX_STR:
                errors.append(
                    FieldError(parent + key, f"is {len(v)} characters long, at most {MAX_STR}")
                )
            else:
                errors.append(FieldError(parent + key, f"{v[:64]!r} {help_}"))
            return v

    else:
        raise TypeError(f"report model has an unsupported type {tp!r}")  # a bug
    cache[key] = decode
    return decode


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


# Leaf values a valid report holds by the thousand, accepted inline by the
# object decoder without a call; anything else goes to the field's decoder,
# which holds the rule and names the problem.  (Accepting here is a subset of
# what the decoder accepts: same type, same bounds.)
_PLAIN_STR, _PLAIN_INT, _PLAIN_FLOAT, _PLAIN_ADDRESS = 1, 2, 3, 4
_PLAIN = {str: _PLAIN_STR, int: _PLAIN_INT, float: _PLAIN_FLOAT}


def _plain(tp: Any, fmt: str | None) -> tuple[int, bool]:
    """(inline check, null allowed) of a field's type: 0 when it has no inline check."""
    nullable = _is_union(tp)
    tp = _bare(tp)
    if fmt is None:
        return _PLAIN.get(tp, 0), nullable
    return (_PLAIN_ADDRESS if (tp, fmt) == (str, "ip") else 0), nullable


def _compile_object(cls: type, legacy: bool, cache: dict[Any, Decoder]) -> Decoder:
    # json name -> (attribute, "/name", decoder, inline check, null allowed);
    # walking the document's keys, not the model's, skips absent fields for free.
    table: dict[str, tuple[int, str, Decoder, int, bool]] = {}
    if any(
        not f.init or f.kw_only or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(cls)
    ):
        raise TypeError(f"{cls.__name__}: the decoder builds records positionally")  # a bug
    # Values in field order, absent ones at their defaults: built positionally.
    defaults = [None if _required(f) else f.default for f in dataclasses.fields(cls)]
    required = [_json_name(f) for f in dataclasses.fields(cls) if _required(f)]
    required_set = frozenset(required)

    def decode(v: Any, parent: str, key: str, errors: list[FieldError]) -> Any:
        if not isinstance(v, dict):
            errors.append(FieldError(parent + key or "/", "must be an object"))
            return None
        path = parent + key
        values = defaults.copy()
        for name, value in v.items():
            entry = table.get(name)
            if entry is None:
                errors.append(FieldError(path + _pointer_key(name), "is not a known field"))
                continue
            at, sub, field_decode, plain, nullable = entry
            if value is None:
                if nullable:
                    values[at] = None
                    continue
            elif plain == _PLAIN_STR:
                if type(value) is str and len(value) <= MAX_STR:
                    values[at] = value
                    continue
            elif plain == _PLAIN_ADDRESS:
                if type(value) is str and value in _VALID_ADDRESSES:
                    values[at] = value
                    continue
            elif plain == _PLAIN_FLOAT:
                if type(value) is float and 0 <= value <= MAX_FLOAT:
                    values[at] = value
                    continue
            elif plain == _PLAIN_INT and type(value) is int and 0 <= value <= MAX_INT:
                values[at] = value
                continue
            values[at] = field_decode(value, path, sub, errors)
        if not required_set.issubset(v):
            for name in required:
                if name not in v:
                    errors.append(FieldError(path + _pointer_key(name), "is required"))
        return None if errors else cls(*values)

    cache[(cls, None)] = decode  # before the fields: guards recursive types
    hints = _hints(cls)
    for at, f in enumerate(dataclasses.fields(cls)):
        name, tp, fmt = _json_name(f), hints[f.name], f.metadata.get("format")
        if legacy:
            tp = _REPORT_1_TYPES.get((cls, f.name), tp)
        field_decode = _compile(tp, fmt, legacy, cache)
        table[name] = (at, _pointer_key(name), field_decode, *_plain(tp, fmt))
    return decode


# Where erpath.report/1 allowed less than the current model.
_REPORT_1_TYPES: dict[tuple[type, str], Any] = {(Finding, "kind"): FindingKind1}

# One decoder per schema version; both build the current model.
_DECODERS: dict[str, Decoder] = {
    "erpath.report/1": _compile(Report, None, True, {}),
    SCHEMA: _compile(Report, None, False, {}),
}
assert tuple(_DECODERS) == SUPPORTED_SCHEMAS, "a supported schema has no decoder"


def report_from_dict(doc: Any) -> Report:
    """Decode and validate a report document; raise ReportError naming every bad field.

    The one decoder of reports: the agent, the collector and the tests use it.
    It accepts exactly what `json_schema()` accepts (tested property-wise
    against jsonschema) and, for `erpath.report/1`, decodes into the current
    model: evidence sentences become `Evidence(kind="note")`.
    """
    if not isinstance(doc, dict):
        raise ReportError([FieldError("/", "must be an object")])
    version = doc.get("schema", SCHEMA)
    decode = _DECODERS.get(version) if isinstance(version, str) else None
    if decode is None:
        raise ReportError(
            [
                FieldError(
                    "/schema",
                    f"unsupported schema {str(version)[:64]!r}; "
                    f"this collector supports {', '.join(SUPPORTED_SCHEMAS)}",
                )
            ]
        )
    errors: list[FieldError] = []
    report = decode(doc, "", "", errors)
    if errors:
        raise ReportError(errors)
    if report.schema != SCHEMA:
        report = dataclasses.replace(report, schema=SCHEMA)  # it is a current report now
    return report


# --------------------------------------------------------------------------- JSON Schema


def _schema_for(tp: Any, fmt: str | None, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if _is_union(tp):
        return {"anyOf": [_schema_for(_bare(tp), fmt, defs), {"type": "null"}]}
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin is tuple:
        (inner, _) = typing.get_args(tp)
        return {"type": "array", "maxItems": MAX_ITEMS, "items": _schema_for(inner, fmt, defs)}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # reserve first: guards recursion
            hints = _hints(tp)
            props = {
                _json_name(f): _schema_for(hints[f.name], f.metadata.get("format"), defs)
                for f in dataclasses.fields(tp)
            }
            required = [_json_name(f) for f in dataclasses.fields(tp) if _required(f)]
            defs[name] = {
                "type": "object",
                "additionalProperties": False,
                "properties": props,
                "required": required,
            }
        return {"$ref": f"#/$defs/{name}"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer", "minimum": 0, "maximum": MAX_INT}
    if tp is float:
        return {"type": "number", "minimum": 0, "maximum": MAX_FLOAT}
    if tp is str:
        s: dict[str, Any] = {"type": "string", "maxLength": MAX_STR}
        if fmt is not None:
            s["pattern"] = PATTERNS[fmt]
            formats = _FORMATS.get(fmt, [])
            if len(formats) == 1:
                s["format"] = formats[0]
            elif formats:
                s["anyOf"] = [{"format": f} for f in formats]
        return s
    raise TypeError(f"no schema for {tp!r}")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the current report version, derived from the dataclasses above."""
    defs: dict[str, Any] = {}
    root = _schema_for(Report, None, defs)
    report = defs["Report"]
    report["properties"]["schema"] = {"const": SCHEMA}
    version = SCHEMA.rsplit("/", 1)[1]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://erpath.dev/schema/report-{version}.json",
        "title": f"erpath report ({SCHEMA})",
        "description": "One probe cycle of one erpath agent: what it measured per target "
        "and address, the path verdict with its evidence, and local asymmetry findings.  "
        "Formats are also patterns, so validators that treat `format` as an annotation "
        "check them too.",
        **root,
        "$defs": defs,
    }


if __name__ == "__main__":  # regenerate the committed schema: python -m agent.report
    import json
    import pathlib

    out = pathlib.Path(__file__).with_name("report.schema.json")
    out.write_text(json.dumps(json_schema(), indent=2) + "\n")
    print(f"wrote {out}")
