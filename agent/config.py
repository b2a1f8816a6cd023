"""The agent's configuration: one TOML file, validated at load into a frozen tree.

`load(path)` reads and checks the whole file and raises one `ConfigError`
that lists every problem, one per line, each naming the file, the key and
the fix.  `load(None)` is the zero-config agent: system resolver, the
built-in catalog of Power Platform endpoints, no circuits.

The site's facts (circuits, internet edges) are kept as the report's own
`Circuit` and `InternetEdge` records, so what the agent was configured with
is exactly what every report carries.  Keys and defaults are documented in
docs/agent-config.md; the names there are the names here.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import socket
import threading
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from agent import catalog
from agent.catalog import EXPECTS, TARGET_ROLES, CatalogEntry, Expect, TargetRole
from agent.report import AgentRole, Circuit, InternetEdge, SiteFacts
from agent.verdict.servicetags import ServiceTags, ServiceTagsError

AGENT_ROLES: tuple[str, ...] = ("branch", "datacenter", "azure-side")
SKUS: tuple[str, ...] = ("standard", "premium")
TRACE_PROTOCOLS: tuple[str, ...] = ("tcp", "udp", "icmp")
ADDRESS_MODES: tuple[str, ...] = ("first", "all")

# Probing more often than this buys nothing (paths do not flip faster than
# BGP converges) and eats routers' ICMP rate limit (about one time-exceeded
# per second per source), which makes hops vanish from every trace.
MIN_INTERVAL_S = 10.0
# Matches the report's bounds: at most 64 hops and 16 replies per hop.
MAX_TTL_LIMIT = 64
MAX_PROBES_PER_HOP = 16

SYSTEM_RESOLVER = "system"
COMMAND_LINE = "command line"


class ConfigError(ValueError):
    """A configuration that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: Sequence[str]):
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class AgentSection:
    id: str
    site: str = "default"
    role: AgentRole = "branch"


@dataclass(frozen=True, slots=True)
class DnsConfig:
    # "system", or an address with an optional port: "192.0.2.53",
    # "192.0.2.53:5353", "2001:db8::53", "[2001:db8::53]:5353".
    resolvers: tuple[str, ...] = (SYSTEM_RESOLVER,)
    timeout_s: float = 2.0


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    port: int = 443
    trace_protocol: Literal["tcp", "udp", "icmp"] = "tcp"
    max_ttl: int = 30
    probes_per_hop: int = 3
    # Traces share what they learn and pace each router to its ICMP budget,
    # so the global cap only guards the local link and firewall.
    pps: float = 2000.0
    timeout_s: float = 2.0  # per TCP probe
    trace_timeout_s: float = 10.0  # the whole trace phase, all targets together
    addresses: Literal["first", "all"] = "first"
    builtin_targets: bool = True
    interval_s: float = 60.0
    jitter_s: float = 5.0
    concurrency: int = 64  # endpoints probed and traced together in one batch


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    url: str | None = None  # None: no collector; reports are only printed or spooled
    token_file: Path | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    # http:// sends the bearer token in clear: refused unless the admin says so.
    allow_plaintext: bool = False


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    dir: Path | None = None  # None: "spool" in the agent's state directory
    max_mb: float = 64.0
    max_age_h: float = 24.0


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: str | None = None  # "host:port"; None: no metrics endpoint

    @property
    def host(self) -> str | None:
        return None if self.listen is None else split_host_port(self.listen)[0]

    @property
    def port(self) -> int | None:
        return None if self.listen is None else split_host_port(self.listen)[1]


@dataclass(frozen=True, slots=True)
class ServiceTagsConfig:
    file: Path | None = None


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One thing to probe: a host name to resolve, or a fixed address.

    `port` None means "the [probe] port"; `AgentConfig.targets()` fills it in.
    `expect` None leaves the expectation to the classifier's default rule.
    `site` names the other site whose NAT address a "reverse" target is.
    """

    name: str
    address: str | None = None
    port: int | None = None
    role: TargetRole = "service"
    expect: Expect | None = None
    site: str | None = None


@dataclass(frozen=True, slots=True)
class AgentConfig:
    agent: AgentSection
    dns: DnsConfig = DnsConfig()
    probe: ProbeConfig = ProbeConfig()
    collector: CollectorConfig = CollectorConfig()
    spool: SpoolConfig = SpoolConfig()
    metrics: MetricsConfig = MetricsConfig()
    circuits: tuple[Circuit, ...] = ()
    internet_edges: tuple[InternetEdge, ...] = ()
    service_tags: ServiceTagsConfig = ServiceTagsConfig()
    configured_targets: tuple[TargetSpec, ...] = ()
    path: Path | None = field(default=None, compare=False)

    def site_facts(self) -> SiteFacts:
        return SiteFacts(circuits=self.circuits, internet_edges=self.internet_edges)

    def targets(self) -> tuple[TargetSpec, ...]:
        """What a cycle probes: the catalog's concrete entries (when builtin_targets),
        each replaced by a [[target]] of the same name, then the other [[target]]s."""
        own = {t.name: t for t in self.configured_targets}
        out: list[TargetSpec] = []
        if self.probe.builtin_targets:
            for entry in catalog.concrete_entries():
                out.append(
                    own.pop(entry.name, None)
                    or TargetSpec(entry.name, None, None, entry.role, entry.expect)
                )
        out.extend(t for t in self.configured_targets if t.name in own)
        return tuple(replace(t, port=t.port or self.probe.port) for t in out)

    def load_service_tags(self) -> ServiceTags | None:
        """The [service_tags] file, indexed (cached while the file is unchanged); None if unset."""
        file = self.service_tags.file
        if file is None:
            return None
        try:
            return _load_tags(file)
        except (OSError, ServiceTagsError) as e:
            source = os.fspath(self.path) if self.path else "<config>"
            raise ConfigError(
                [f"{source}: [service_tags] file = {_show(os.fspath(file))}: {_tags_problem(e)}"]
            ) from None

    def unprobed_catalog(self) -> tuple[CatalogEntry, ...]:
        """Wildcard catalog entries no [[target]] names a host for (say so in check output)."""
        if not self.probe.builtin_targets:
            return ()
        return tuple(
            e
            for e in catalog.wildcard_entries()
            if not any(e.matches(t.name) for t in self.configured_targets)
        )


def default_config() -> AgentConfig:
    """The zero-config agent: system resolver, built-in catalog, no site facts."""
    return AgentConfig(agent=AgentSection(id=socket.gethostname()))


# --------------------------------------------------------------------------- small parsers (shared with the CLI)


def split_host_port(text: str) -> tuple[str, int | None]:
    """'host', 'host:port', '[v6]', '[v6]:port' or a bare IPv6 address -> (host, port).

    Raises ValueError with a user-facing reason.
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError("has '[' without ']'")
        if rest and not rest.startswith(":"):
            raise ValueError("has text after ']' that is not ':port'")
        return host, _port_number(rest[1:]) if rest else None
    if text.count(":") > 1:  # a bare IPv6 address carries no port
        return text, None
    host, sep, port = text.partition(":")
    return host, _port_number(port) if sep else None


def _port_number(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"port {text!r} must be a number from 1 to 65535")
    return int(text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")


def _host_name_problem(name: str) -> str | None:
    if "*" in name:
        return f'is a wildcard, which cannot be probed; name one real host it covers, e.g. "{catalog.example_host(name)}"'
    labels = name.rstrip(".").split(".")
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        return (
            "is neither a host name nor an IP address; write e.g. make.powerapps.com or 192.0.2.10"
        )
    return None


# --------------------------------------------------------------------------- validation machinery


class _Invalid(Exception):
    """One bad value; the message says what is wrong and how to fix it."""


def _show(value: Any) -> str:
    """A value as the user wrote it in TOML (shortened)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, list):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{...}"
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


class _Problems:
    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []

    def add(self, subject: str, message: str) -> None:
        self.lines.append(f"{self.source}: {subject}: {message}")


class _Table:
    """One TOML table being read: reports unknown keys once, then bad values per key."""

    def __init__(self, problems: _Problems, where: str, data: dict[str, Any], known: Iterable[str]):
        self.problems, self.where, self.data = problems, where, data
        known = tuple(known)
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f'did you mean "{close[0]}"?' if close else f"known keys: {', '.join(known)}"
                problems.add(f"{where} {key}", f"unknown key; {hint}")

    def get(self, key: str, parse: Callable[[Any], Any], default: Any = None) -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        try:
            return parse(value)
        except _Invalid as e:
            self.problems.add(f"{self.where} {key} = {_show(value)}", str(e))
            return None

    def require(self, key: str, parse: Callable[[Any], Any], example: str) -> Any:
        if key not in self.data:
            self.problems.add(self.where, f"missing {key}; add {key} = {example}")
            return None
        return self.get(key, parse)

    def get_list(self, key: str, item: Callable[[Any], Any], default: tuple = ()) -> tuple | None:
        """A list whose items are checked one by one, so each bad item is named."""
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, list):
            self.problems.add(
                f"{self.where} {key} = {_show(value)}",
                f"must be an array, e.g. {key} = [{_show(value)}]",
            )
            return None
        out, ok = [], True
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except _Invalid as e:
                self.problems.add(f"{self.where} {key}[{i}] = {_show(v)}", str(e))
                ok = False
        if ok and len(set(out)) != len(out):
            dup = next(x for x in out if out.count(x) > 1)
            self.problems.add(
                f"{self.where} {key} = {_show(value)}", f"lists {_show(dup)} twice; keep one"
            )
            ok = False
        return tuple(out) if ok else None


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, not {_type_name(value)}; put it in double quotes")
    if not value.strip():
        raise _Invalid("must not be empty")
    return value


def _name(value: Any) -> str:
    value = _string(value)
    if not _NAME.match(value):
        raise _Invalid(
            "must start with a letter or digit and use only letters, digits and . _ - : @ / "
            "(at most 128 characters)"
        )
    return value


def _enum(allowed: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        value = _string(value)
        if value not in allowed:
            choices = ", ".join(f'"{a}"' for a in allowed)
            close = [a for a in allowed if a == value.lower()]  # values are lower case
            close = close or difflib.get_close_matches(value, allowed, n=1, cutoff=0.5)
            hint = f'; did you mean "{close[0]}"?' if close else ""
            raise _Invalid(f"must be one of {choices}{hint}")
        return value

    return parse


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false (no quotes), not {_type_name(value)}")
    return value


def _int(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"must be an integer (no quotes), not {_type_name(value)}")
        if not lo <= value <= hi:
            raise _Invalid(f"must be from {lo} to {hi}")
        return value

    return parse


def _number(
    lo: float, hi: float, *, lo_open: bool = False, why: str = ""
) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(f"must be a number (no quotes), not {_type_name(value)}")
        if value != value or (value <= lo if lo_open else value < lo):
            raise _Invalid(f"must be {'more than' if lo_open else 'at least'} {lo:g}{why}")
        if value > hi:
            raise _Invalid(f"must be at most {hi:g}")
        return float(value)

    return parse


def _ip(value: Any) -> str:
    value = _string(value)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if "/" in value:
        raise _Invalid("is a prefix; write a single address, e.g. 192.0.2.10")
    raise _Invalid("is not an IP address; write one such as 192.0.2.10 or 2001:db8::10")


def _prefix(value: Any) -> str:
    value = _string(value)
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        pass
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise _Invalid("is not an IP prefix; write one such as 198.51.100.0/24") from None
    raise _Invalid(f"has host bits set; write {net}")


def _peering_subnet(value: Any) -> str:
    text = _prefix(value)
    net = ipaddress.ip_network(text)
    if net.prefixlen != (30 if net.version == 4 else 126):
        raise _Invalid(
            "must be a /30 (IPv4) or /126 (IPv6) peering subnet; the MSEE is the second usable address"
        )
    return text


def normalize_resolver(text: str) -> str:
    """A resolver as the config writes it ("system", "ip", "ip:port", "[v6]:port"); ValueError if bad."""
    try:
        return _resolver(text)
    except _Invalid as e:
        raise ValueError(f"resolver {_show(text)}: {e}") from None


def _resolver(value: Any) -> str:
    value = _string(value)
    if value == SYSTEM_RESOLVER:
        return value
    try:
        host, port = split_host_port(value)
    except ValueError as e:
        raise _Invalid(f'{e}; write "system", an address, or address:port') from None
    if not _is_ip(host):
        raise _Invalid(
            'must be "system" or a resolver\'s IP address (optionally :port), '
            'e.g. "192.0.2.53" or "[2001:db8::53]:5353"'
        )
    addr = str(ipaddress.ip_address(host))
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _path(base_dir: Path) -> Callable[[Any], Path]:
    def parse(value: Any) -> Path:
        # Relative to the config file, not the working directory: systemd and
        # cron start the agent from "/".
        return base_dir / Path(_string(value)).expanduser()

    return parse


def _url(value: Any) -> str:
    value = _string(value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid(
            "must be an http:// or https:// URL, e.g. https://collector.example.net:8443"
        )
    return value


def _listen(value: Any) -> str:
    value = _string(value)
    try:
        host, port = split_host_port(value)
    except ValueError as e:
        raise _Invalid(f'{e}; write host:port, e.g. "127.0.0.1:9430"') from None
    if port is None:
        raise _Invalid(
            'needs a port; write host:port, e.g. "127.0.0.1:9430" or ":9430" (all addresses)'
        )
    if host and host != "localhost" and not _is_ip(host):
        raise _Invalid('host must be an IP address, "localhost" or empty (all addresses)')
    return value


# --------------------------------------------------------------------------- sections

_SECTIONS: dict[str, tuple[str, ...]] = {
    "agent": ("id", "site", "role"),
    "dns": ("resolvers", "timeout_s"),
    "probe": (
        "port",
        "trace_protocol",
        "max_ttl",
        "probes_per_hop",
        "pps",
        "timeout_s",
        "trace_timeout_s",
        "addresses",
        "builtin_targets",
        "interval_s",
        "jitter_s",
        "concurrency",
    ),
    "collector": ("url", "token_file", "ca_file", "client_cert", "client_key", "allow_plaintext"),
    "spool": ("dir", "max_mb", "max_age_h"),
    "metrics": ("listen",),
    "service_tags": ("file",),
}
_ARRAYS: dict[str, tuple[str, ...]] = {
    "circuit": (
        "name",
        "location",
        "sku",
        "primary_subnet",
        "secondary_subnet",
        "ce_addresses",
        "advertised_prefixes",
    ),
    "internet_edge": ("name", "nat_addresses", "hop_addresses"),
    "target": ("name", "address", "port", "role", "expect", "site"),
}


def _tables(problems: _Problems, doc: dict[str, Any]) -> None:
    """Report top-level keys that are not one of the known tables."""
    known = [*_SECTIONS, *_ARRAYS]
    for key, value in doc.items():
        if key in _SECTIONS and not isinstance(value, dict):
            problems.add(
                f"[{key}]", f"must be a table; write [{key}] on a line of its own, then its keys"
            )
        elif key in _ARRAYS and not (
            isinstance(value, list) and all(isinstance(v, dict) for v in value)
        ):
            problems.add(
                f"[{key}]", f"must be an array of tables; write [[{key}]] before each {key}'s keys"
            )
        elif key not in known:
            owners = [f"[{s}]" for s, keys in _SECTIONS.items() if key in keys]
            owners += [f"[[{s}]]" for s, keys in _ARRAYS.items() if key in keys]
            if not isinstance(value, dict | list) and owners:
                problems.add(key, f"keys belong in a table; put it under {' or '.join(owners)}")
                continue
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean [{close[0]}]?" if close else f"known tables: {', '.join(known)}"
            problems.add(f"[{key}]", f"unknown table; {hint}")


def _section(problems: _Problems, doc: dict[str, Any], name: str) -> _Table | None:
    data = doc.get(name)
    if not isinstance(data, dict):
        return None
    return _Table(problems, f"[{name}]", data, _SECTIONS[name])


def _items(problems: _Problems, doc: dict[str, Any], name: str) -> list[tuple[str, _Table]]:
    data = doc.get(name)
    if not isinstance(data, list) or not all(isinstance(v, dict) for v in data):
        return []
    out = []
    for i, item in enumerate(data, 1):
        label = f"[[{name}]] #{i}"
        if isinstance(item.get("name"), str) and item["name"]:
            label += f" ({item['name']})"
        out.append((label, _Table(problems, label, item, _ARRAYS[name])))
    return out


def _read_agent(p: _Problems, doc: dict[str, Any]) -> AgentSection:
    t = _section(p, doc, "agent")
    if t is None:
        return AgentSection(id=socket.gethostname())
    return AgentSection(
        id=t.get("id", _name) or socket.gethostname(),
        site=t.get("site", _name) or "default",
        role=t.get("role", _enum(AGENT_ROLES)) or "branch",
    )


def _read_dns(p: _Problems, doc: dict[str, Any]) -> DnsConfig:
    t = _section(p, doc, "dns")
    d = DnsConfig()
    if t is None:
        return d
    resolvers = t.get_list("resolvers", _resolver, d.resolvers)
    if resolvers == ():
        p.add(
            "[dns] resolvers = []",
            'must list at least one resolver; write ["system"] for the system resolver',
        )
    return DnsConfig(
        resolvers=resolvers or d.resolvers,
        timeout_s=t.get("timeout_s", _number(0, 30, lo_open=True), d.timeout_s) or d.timeout_s,
    )


def _read_probe(p: _Problems, doc: dict[str, Any]) -> ProbeConfig:
    t = _section(p, doc, "probe")
    d = ProbeConfig()
    if t is None:
        return d

    def get(key: str, parse: Callable[[Any], Any]) -> Any:
        value = t.get(key, parse, getattr(d, key))
        return getattr(d, key) if value is None else value

    probe = ProbeConfig(
        port=get("port", _int(1, 65535)),
        trace_protocol=get("trace_protocol", _enum(TRACE_PROTOCOLS)),
        max_ttl=get("max_ttl", _int(1, MAX_TTL_LIMIT)),
        probes_per_hop=get("probes_per_hop", _int(1, MAX_PROBES_PER_HOP)),
        pps=get("pps", _number(0, 20000, lo_open=True)),
        timeout_s=get("timeout_s", _number(0, 60, lo_open=True)),
        trace_timeout_s=get("trace_timeout_s", _number(0, 600, lo_open=True)),
        addresses=get("addresses", _enum(ADDRESS_MODES)),
        builtin_targets=get("builtin_targets", _bool),
        interval_s=get(
            "interval_s",
            _number(
                MIN_INTERVAL_S,
                86400,
                why=" seconds: probing more often only eats routers' ICMP rate limits",
            ),
        ),
        jitter_s=get("jitter_s", _number(0, 86400)),
        concurrency=get("concurrency", _int(1, 1024)),
    )
    if "jitter_s" in t.data and probe.jitter_s >= probe.interval_s:
        p.add(
            f"[probe] jitter_s = {_show(t.data['jitter_s'])}",
            f"must be less than interval_s ({probe.interval_s:g}); a few seconds spreads the agents' probes",
        )
    return probe


def _read_collector(p: _Problems, doc: dict[str, Any], base: Path) -> CollectorConfig:
    t = _section(p, doc, "collector")
    if t is None:
        return CollectorConfig()
    path = _path(base)
    url = t.require("url", _url, '"https://collector.example.net:8443"')
    cert, key = t.get("client_cert", path), t.get("client_key", path)
    if ("client_cert" in t.data) != ("client_key" in t.data):
        given, missing = (
            ("client_cert", "client_key")
            if "client_cert" in t.data
            else ("client_key", "client_cert")
        )
        p.add(
            "[collector]",
            f"{given} needs {missing} too; give both for TLS client authentication, or neither",
        )
    allow_plaintext = bool(t.get("allow_plaintext", _bool))
    if url is not None and urlsplit(url).scheme == "http" and not allow_plaintext:
        p.add(
            f"[collector] url = {_show(url)}",
            "plain HTTP sends the agent's token in clear; use https://, or set "
            "allow_plaintext = true in [collector] (a lab, or a collector on this host)",
        )
    if url is None:
        return CollectorConfig()
    return CollectorConfig(
        url=url,
        token_file=t.get("token_file", path),
        ca_file=t.get("ca_file", path),
        client_cert=cert,
        client_key=key,
        allow_plaintext=allow_plaintext,
    )


def _read_spool(p: _Problems, doc: dict[str, Any], base: Path) -> SpoolConfig:
    t = _section(p, doc, "spool")
    d = SpoolConfig()
    if t is None:
        return d
    return SpoolConfig(
        dir=t.get("dir", _path(base)),
        max_mb=t.get("max_mb", _number(0, 1_000_000, lo_open=True)) or d.max_mb,
        max_age_h=t.get("max_age_h", _number(0, 24 * 365, lo_open=True)) or d.max_age_h,
    )


def _read_metrics(p: _Problems, doc: dict[str, Any]) -> MetricsConfig:
    t = _section(p, doc, "metrics")
    return MetricsConfig() if t is None else MetricsConfig(listen=t.get("listen", _listen))


def _read_service_tags(p: _Problems, doc: dict[str, Any], base: Path) -> ServiceTagsConfig:
    t = _section(p, doc, "service_tags")
    if t is None:
        return ServiceTagsConfig()
    file = t.get("file", _path(base))
    if file is None:
        return ServiceTagsConfig()
    subject = f"[service_tags] file = {_show(t.data['file'])}"
    if not file.is_file():
        p.add(
            subject,
            f"no such file ({file}); download ServiceTags_Public_*.json from Microsoft "
            f"and point file at it (relative paths start at the config file's directory)",
        )
    else:
        # Index it now so that a truncated download or the wrong JSON file is
        # a config error at start (and in check-config), not odd verdicts later.
        try:
            _load_tags(file)
        except (OSError, ServiceTagsError) as e:
            p.add(subject, _tags_problem(e))
    return ServiceTagsConfig(file=file)


_tags_lock = threading.Lock()
_tags_cache: dict[Path, tuple[tuple[int, int], ServiceTags]] = {}


def _load_tags(file: Path) -> ServiceTags:
    """Load a service tags file once per (path, mtime, size): it is ~1 s of work for the real file."""
    st = file.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    with _tags_lock:
        hit = _tags_cache.get(file)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    tags = ServiceTags.load(file)
    with _tags_lock:
        _tags_cache[file] = (stamp, tags)
    return tags


def _tags_problem(e: Exception) -> str:
    if isinstance(e, ServiceTagsError):
        return f"{e.problem}; point file at an unmodified ServiceTags_Public_*.json download"
    return f"cannot read it: {getattr(e, 'strerror', None) or e}"


def _duplicates(p: _Problems, kind: str, named: list[tuple[str, str | None, Any]]) -> None:
    """`named`: (label, name as compared, name as written) per item."""
    seen: dict[str, str] = {}
    for label, name, written in named:
        if name is None:
            continue
        if name in seen:
            p.add(
                f"{label} name = {_show(written)}",
                f"duplicate; {kind} names must be unique (also used by {seen[name]})",
            )
        else:
            seen[name] = label.split(" (")[0]


def _read_circuits(p: _Problems, doc: dict[str, Any]) -> tuple[Circuit, ...]:
    circuits: list[Circuit] = []
    names: list[tuple[str, str | None, Any]] = []
    links: list[tuple[str, str]] = []  # (subject, subnet) of every good peering subnet
    for label, t in _items(p, doc, "circuit"):
        name = t.require("name", _name, '"ams-1"')
        names.append((label, name, t.data.get("name")))
        location = t.require("location", _string, '"Amsterdam" (the peering location)')
        sku = t.get("sku", _enum(SKUS), "standard")
        primary = t.require("primary_subnet", _peering_subnet, '"203.0.113.0/30"')
        secondary = t.require("secondary_subnet", _peering_subnet, '"203.0.113.4/30"')
        ce = t.get_list("ce_addresses", _ip)
        advertised = t.get_list("advertised_prefixes", _prefix)
        if (
            primary
            and secondary
            and (ipaddress.ip_network(primary).version != ipaddress.ip_network(secondary).version)
        ):
            p.add(
                f"{label} secondary_subnet = {_show(t.data['secondary_subnet'])}",
                f"is not the same IP family as primary_subnet ({primary}); "
                f"give both links' /30s (IPv4) or both /126s (IPv6)",
            )
        for key, subnet in (("primary_subnet", primary), ("secondary_subnet", secondary)):
            if subnet:
                links.append((f"{label} {key}", subnet))
        if None in (name, location, sku, primary, secondary, ce, advertised):
            continue
        circuits.append(
            Circuit(
                name=name,
                location=location,
                sku=sku,
                primary_subnet=primary,
                secondary_subnet=secondary,
                ce_addresses=ce,
                advertised_prefixes=advertised,
            )
        )
    _duplicates(p, "circuit", names)
    # A hop address must point at exactly one link, or the verdict cannot say
    # which circuit (and which of its links) carried the traffic.
    for i, (subject, subnet) in enumerate(links):
        net = ipaddress.ip_network(subnet)
        for other_subject, other in links[:i]:
            if net.overlaps(ipaddress.ip_network(other)):
                p.add(
                    f"{subject} = {_show(subnet)}",
                    f"overlaps {other_subject} {other}; each peering link needs its own /30 (or /126)",
                )
                break
    return tuple(circuits)


def _read_edges(p: _Problems, doc: dict[str, Any]) -> tuple[InternetEdge, ...]:
    edges, names = [], []
    for label, t in _items(p, doc, "internet_edge"):
        name = t.require("name", _name, '"ams-inet"')
        names.append((label, name, t.data.get("name")))
        nat, hops = t.get_list("nat_addresses", _ip), t.get_list("hop_addresses", _ip)
        if None not in (name, nat, hops):
            edges.append(InternetEdge(name=name, nat_addresses=nat, hop_addresses=hops))
    _duplicates(p, "internet edge", names)
    return tuple(edges)


def _target_name(value: Any) -> str:
    value = _string(value).strip().lower()
    if _is_ip(value):
        return str(ipaddress.ip_address(value))
    problem = _host_name_problem(value)
    if problem:
        raise _Invalid(problem)
    return value.rstrip(".")


def _read_targets(p: _Problems, doc: dict[str, Any]) -> tuple[TargetSpec, ...]:
    targets, names = [], []
    for label, t in _items(p, doc, "target"):
        name = t.require("name", _target_name, '"contoso.crm4.dynamics.com"')
        names.append((label, name, t.data.get("name")))
        address = t.get("address", _ip)
        port = t.get("port", _int(1, 65535))
        role = t.get("role", _enum(TARGET_ROLES))
        expect = t.get("expect", _enum(EXPECTS))
        site = t.get("site", _name)
        bad = any(
            k in t.data and v is None
            for k, v in (
                ("address", address),
                ("port", port),
                ("role", role),
                ("expect", expect),
                ("site", site),
            )
        )
        if name is None or bad:
            continue
        if _is_ip(name):
            if address is not None and address != name:
                p.add(
                    f"{label} address = {_show(address)}",
                    "differs from name, which is already an address; drop address or give the target a host name",
                )
                continue
            address = name
        entry = catalog.lookup(name)
        role = role or (entry.role if entry else "service")
        if expect is None and "expect" not in t.data and entry is not None:
            expect = entry.expect
        if role == "reverse" and site is None:
            p.add(label, 'role = "reverse" needs site = "<the site whose NAT address this is>"')
            continue
        if role == "reverse" and address is None:
            p.add(
                label,
                'role = "reverse" needs address = "<that site\'s NAT address>" (or an address as name)',
            )
            continue
        if role != "reverse" and site is not None:
            p.add(
                f"{label} site = {_show(site)}",
                'only a role = "reverse" target names a site; remove site',
            )
            continue
        targets.append(
            TargetSpec(name=name, address=address, port=port, role=role, expect=expect, site=site)
        )
    _duplicates(p, "target", names)
    return tuple(targets)


# --------------------------------------------------------------------------- loading


def _syntax_error(source: str, e: tomllib.TOMLDecodeError) -> ConfigError:
    text = str(e)
    m = re.match(r"^(.*) \(at (line \d+, column \d+|end of document)\)$", text)
    where, what = (m.group(2), m.group(1)) if m else ("", text)
    at = f" at {where}" if where else ""
    return ConfigError(
        [
            f"{source}: TOML syntax error{at}: {what}; fix the TOML there "
            f"(strings in double quotes, [table], [[array of tables]])"
        ]
    )


def loads(text: str, *, source: str = "<config>", base_dir: Path | None = None) -> AgentConfig:
    """Parse and validate config text; `source` names it in messages, paths resolve against `base_dir`."""
    base = base_dir if base_dir is not None else Path.cwd()
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _syntax_error(source, e) from None
    p = _Problems(source)
    _tables(p, doc)
    config = AgentConfig(
        agent=_read_agent(p, doc),
        dns=_read_dns(p, doc),
        probe=_read_probe(p, doc),
        collector=_read_collector(p, doc, base),
        spool=_read_spool(p, doc, base),
        metrics=_read_metrics(p, doc),
        circuits=_read_circuits(p, doc),
        internet_edges=_read_edges(p, doc),
        service_tags=_read_service_tags(p, doc, base),
        configured_targets=_read_targets(p, doc),
    )
    if p.lines:
        raise ConfigError(p.lines)
    return config


def load(path: str | os.PathLike[str] | None = None) -> AgentConfig:
    """Load and validate a config file; None gives `default_config()`."""
    if path is None:
        return default_config()
    source = os.fspath(path)
    file = Path(source)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [
                f"{source}: no such file; check the path, or leave the config out "
                f"to probe the built-in catalog with the system resolver"
            ]
        ) from None
    except OSError as e:
        raise ConfigError([f"{source}: cannot read: {e.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            [f"{source}: not UTF-8 (byte {e.start}); save the file as UTF-8"]
        ) from None
    config = loads(text, source=source, base_dir=file.absolute().parent)
    return replace(config, path=file)


# --------------------------------------------------------------------------- command line


def _cli_target(text: str, port: int | None, expect: Expect | None) -> TargetSpec:
    try:
        host, own_port = split_host_port(text.strip())
    except ValueError as e:
        raise _Invalid(f"{e}; write a host name or address, optionally :port") from None
    name = _target_name(host)
    entry = None if _is_ip(name) else catalog.lookup(name)
    return TargetSpec(
        name=name,
        address=name if _is_ip(name) else None,
        port=own_port or port,
        role=entry.role if entry else "service",
        expect=expect or (entry.expect if entry else None),
    )


def with_cli_targets(
    config: AgentConfig,
    names_or_addresses: Iterable[str],
    port: int | None = None,
    expect: Expect | None = None,
) -> AgentConfig:
    """The config with its targets replaced by TARGETs from the command line.

    "host:port" and "[v6]:port" set a port per target, `port` the others'
    (default: the [probe] port); an IP address becomes an address target;
    a name in the catalog keeps the catalog's role and expectation unless
    `expect` is given.
    """
    problems = _Problems(COMMAND_LINE)
    if port is not None and not 0 < port < 65536:
        problems.add(f"--port {port}", "must be from 1 to 65535")
    if expect is not None and expect not in EXPECTS:
        problems.add(f"--expect {expect}", f"must be one of {', '.join(EXPECTS)}")
    specs: list[TargetSpec] = []
    for text in names_or_addresses:
        try:
            specs.append(_cli_target(text, port, expect))
        except _Invalid as e:
            problems.add(f"TARGET {_show(text)}", str(e))
    if problems.lines:
        raise ConfigError(problems.lines)
    return replace(
        config,
        probe=replace(config.probe, builtin_targets=False),
        configured_targets=tuple(specs),
    )
