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

import dataclasses
import ipaddress
import math
import types
import typing
import uuid
from dataclasses import dataclass, field
from datetime import datetime
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
    "note",  # free text: evidence of reports of schema /1, and context
]
FindingKind = Literal[
    "asymmetric-nat",
    "asymmetric-circuit",
    "handshake-blackhole",
    "return-hops-mismatch",
    "nat-pool-on-internet",
    "premium-required",
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
    ce_addresses: tuple[str, ...] = ()
    advertised_prefixes: tuple[str, ...] = ()
    links: LinkMode = "active-active"


@dataclass(frozen=True, slots=True)
class InternetEdge:
    name: str
    nat_addresses: tuple[str, ...] = ()
    hop_addresses: tuple[str, ...] = ()


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


# --------------------------------------------------------------------------- measurements


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """What one resolver said about one name."""

    resolver: str
    cname_chain: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    ttl_s: int | None = None
    duration_s: float = 0.0
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class DnsResult:
    """The first resolver's answer on top, every resolver's in `answers`."""

    cname_chain: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    ttl_s: int | None = None
    duration_s: float = 0.0
    failure: str | None = None
    answers: tuple[DnsAnswer, ...] = ()
    divergent: bool = False


@dataclass(frozen=True, slots=True)
class RouteResult:
    """The kernel's route for one destination, as `ip route get` sees it."""

    interface: str | None = None
    gateway: str | None = None
    source: str | None = None
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
    address: str | None = None
    dns: DnsResult | None = None
    route: RouteResult | None = None
    tcp: TcpResult | None = None
    trace: Trace | None = None
    verdict: Verdict | None = None
    findings: tuple[Finding, ...] = ()
    failure: str | None = None
    # The target's own failover order when it differs from the site's `prefer`.
    prefer: tuple[str, ...] = ()


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


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class ReportError(ValueError):
    """A document that is not a valid report; `errors` names every bad field."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors[:5]))


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _parse(tp: Any, value: Any, path: str, fmt: str | None, errors: list[FieldError]) -> Any:
    """Parse one value against a type; append errors instead of raising."""
    origin = typing.get_origin(tp)
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            errors.append(FieldError(path, "must not be null"))
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _parse(inner, value, path, fmt, errors)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            errors.append(FieldError(path, f"must be one of {', '.join(map(str, allowed))}"))
        return value
    if origin is tuple:
        (inner, _) = typing.get_args(tp)
        if not isinstance(value, list):
            errors.append(FieldError(path, "must be an array"))
            return ()
        if len(value) > MAX_ITEMS:
            errors.append(FieldError(path, f"has {len(value)} items, at most {MAX_ITEMS}"))
            return ()
        return tuple(_parse(inner, v, f"{path}/{i}", fmt, errors) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _parse_object(tp, value, path, errors)
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(FieldError(path, "must be true or false"))
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(FieldError(path, "must be an integer"))
        elif value < 0 or value > 2**63 - 1:
            errors.append(FieldError(path, "must be a non-negative 64-bit integer"))
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append(FieldError(path, "must be a number"))
            return 0.0
        if not math.isfinite(value) or value < 0:
            errors.append(FieldError(path, "must be a finite, non-negative number"))
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            errors.append(FieldError(path, "must be a string"))
            return ""
        if len(value) > MAX_STR:
            errors.append(FieldError(path, f"is {len(value)} characters long, at most {MAX_STR}"))
        elif fmt == "ip":
            try:
                ipaddress.ip_address(value)
            except ValueError:
                errors.append(FieldError(path, f"{value!r} is not an IP address"))
        elif fmt == "uuid":
            try:
                uuid.UUID(value)
            except ValueError:
                errors.append(FieldError(path, f"{value!r} is not a UUID"))
        elif fmt == "date-time":
            try:
                stamp = datetime.fromisoformat(value)
            except ValueError:
                stamp = None
            if stamp is None or stamp.tzinfo is None:
                errors.append(FieldError(path, f"{value!r} is not an RFC 3339 time with a zone"))
        elif fmt == "prefix":
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                errors.append(FieldError(path, f"{value!r} is not an IP prefix"))
        return value
    raise TypeError(f"report model has an unsupported type {tp!r} at {path}")  # a bug


def _parse_object(cls: type, value: Any, path: str, errors: list[FieldError]) -> Any:
    if not isinstance(value, dict):
        errors.append(FieldError(path or "/", "must be an object"))
        return None
    hints = _hints(cls)
    fields = {_json_name(f): f for f in dataclasses.fields(cls)}
    for key in value:
        if key not in fields:
            errors.append(FieldError(f"{path}/{key}", "is not a known field"))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        sub = f"{path}/{name}"
        if name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                errors.append(FieldError(sub, "is required"))
            continue
        kwargs[f.name] = _parse(hints[f.name], value[name], sub, f.metadata.get("format"), errors)
    if errors:
        return None
    return cls(**kwargs)


def report_from_dict(doc: Any) -> Report:
    """Parse and validate a report document; raise ReportError naming every bad field."""
    if isinstance(doc, dict) and "schema" in doc and doc["schema"] not in SUPPORTED_SCHEMAS:
        raise ReportError(
            [
                FieldError(
                    "/schema",
                    f"unsupported schema {str(doc['schema'])[:64]!r}; "
                    f"this collector supports {', '.join(SUPPORTED_SCHEMAS)}",
                )
            ]
        )
    errors: list[FieldError] = []
    report = _parse_object(Report, doc, "", errors)
    if errors:
        raise ReportError(errors)
    return report


# --------------------------------------------------------------------------- JSON Schema


def _schema_for(tp: Any, fmt: str | None, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if _is_union(tp):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return {"anyOf": [_schema_for(inner, fmt, defs), {"type": "null"}]}
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
            required = [
                _json_name(f)
                for f in dataclasses.fields(tp)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ]
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
        return {"type": "integer", "minimum": 0}
    if tp is float:
        return {"type": "number", "minimum": 0}
    if tp is str:
        s: dict[str, Any] = {"type": "string", "maxLength": MAX_STR}
        if fmt in ("uuid", "date-time"):
            s["format"] = fmt
        if fmt == "ip":
            s["anyOf"] = [{"format": "ipv4"}, {"format": "ipv6"}]
        return s
    raise TypeError(f"no schema for {tp!r}")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of `erpath.report/1`, derived from the dataclasses above."""
    defs: dict[str, Any] = {}
    root = _schema_for(Report, None, defs)
    report = defs["Report"]
    report["properties"]["schema"] = {"const": SCHEMA}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://erpath.dev/schema/report-1.json",
        "title": "erpath report (erpath.report/1)",
        "description": "One probe cycle of one erpath agent: what it measured per target "
        "and address, the path verdict with its evidence, and local asymmetry findings.",
        **root,
        "$defs": defs,
    }


if __name__ == "__main__":  # regenerate the committed schema: python -m agent.report
    import json
    import pathlib

    out = pathlib.Path(__file__).with_name("report.schema.json")
    out.write_text(json.dumps(json_schema(), indent=2) + "\n")
    print(f"wrote {out}")
