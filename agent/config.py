"""The agent's configuration: one TOML file, validated at load into a frozen tree.

`load(path)` reads and checks the whole file and raises one `ConfigError`
that lists every problem, one per line, each naming the file, the key and
the fix.  `load(None)` is the zero-config agent: system resolver, the
built-in catalog of Power Platform endpoints, no circuits.

Each table is declared once below (`agent.settings` reads it); what is left
here are the checks across keys and tables.  The site's facts (circuits,
internet edges, failover preference) are kept as the report's own records,
so what the agent was configured with is exactly what every report carries.
Keys and defaults are documented in docs/agent-config.md.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from agent import catalog
from agent.catalog import EXPECTS, TARGET_ROLES, CatalogEntry, Expect, TargetRole
from agent.report import AgentRole, Circuit, InternetEdge, LinkMode, SiteFacts
from agent.settings import (
    ConfigError,
    Invalid,
    Key,
    ListenAddress,
    Read,
    Reader,
    array,
    boolean,
    did_you_mean,
    http_url,
    identifier,
    integer,
    ip_address,
    ip_prefix,
    is_ip,
    listen_address,
    number,
    one_of,
    parse_toml,
    path,
    read_toml,
    setting,
    show,
    split_host_port,
    string,
    table,
)
from agent.verdict.communities import BgpCommunities, CommunitiesError, is_community
from agent.verdict.servicetags import ServiceTags, ServiceTagsError

SKUS: tuple[str, ...] = ("standard", "premium")
ADDRESS_MODES: tuple[str, ...] = ("preferred", "first", "all", "both")
_LINK_SYNONYMS = {"active-passive": "active-standby", "primary-secondary": "active-standby"}
# The failover preference's name for "no circuit: the internet edge".
INTERNET = "internet"

# Probing more often than this buys nothing (paths do not flip faster than
# BGP converges) and eats routers' ICMP rate limit (about one time-exceeded
# per second per source), which makes hops vanish from every trace.
MIN_INTERVAL_S = 10.0
# Matches the report's bounds: at most 64 hops and 16 replies per hop.
MAX_TTL_LIMIT = 64
MAX_PROBES_PER_HOP = 16

SYSTEM_RESOLVER = "system"
# "Azure IP Ranges and Service Tags - Public Cloud": links this week's file.
SERVICE_TAGS_PAGE = "https://www.microsoft.com/en-us/download/details.aspx?id=56519"


# --------------------------------------------------------------------------- values of the agent's own


def _peering_subnet(value: Any) -> str:
    text = ip_prefix(value)
    net = ipaddress.ip_network(text)
    if net.prefixlen != (30 if net.version == 4 else 126):
        raise Invalid(
            "must be a /30 (IPv4) or /126 (IPv6) peering subnet; the MSEE is the second usable address"
        )
    return text


def _peering_subnet_v6(value: Any) -> str:
    text = ip_prefix(value)
    net = ipaddress.ip_network(text)
    if net.version != 6 or net.prefixlen != 126:
        raise Invalid(
            'must be an IPv6 /126 peering subnet (e.g. "2001:db8:0:1::/126"); '
            "the link's IPv4 /30 goes in the key without _v6"
        )
    return text


def _ipv6_prefix(value: Any) -> str:
    text = ip_prefix(value)
    if ipaddress.ip_network(text).version != 6:
        raise Invalid(
            "is not an IPv6 prefix; IPv4 leaves NATed: list the edge's NAT addresses in "
            "nat_addresses, and here the IPv6 prefixes the hosts' sources use, "
            'e.g. "2001:db8:100::/48"'
        )
    return text


def _resolver(value: Any) -> str:
    value = string(value)
    if value == SYSTEM_RESOLVER:
        return value
    try:
        host, port = split_host_port(value)
    except Invalid as e:
        raise Invalid(f'{e}; write "system", an address, or address:port') from None
    if not is_ip(host):
        raise Invalid(
            'must be "system" or a resolver\'s IP address (optionally :port), '
            'e.g. "192.0.2.53" or "[2001:db8::53]:5353"'
        )
    addr = str(ipaddress.ip_address(host))
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def normalize_resolver(text: str) -> str:
    """A resolver as the config writes it ("system", "ip", "ip:port", "[v6]:port"); ValueError if bad."""
    try:
        return _resolver(text)
    except Invalid as e:
        raise ValueError(f"resolver {show(text)}: {e}") from None


_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def _target_name(value: Any) -> str:
    value = string(value).strip().lower()
    if is_ip(value):
        return str(ipaddress.ip_address(value))
    if "*" in value:
        raise Invalid(
            "is a wildcard, which cannot be probed; name one real host it covers, "
            f'e.g. "{catalog.example_host(value)}"'
        )
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise Invalid(
            "is neither a host name nor an IP address; write e.g. make.powerapps.com or 192.0.2.10"
        )
    return value.rstrip(".")


def _community(value: Any) -> str:
    value = string(value).strip()
    if not is_community(value):
        raise Invalid(
            'is not a BGP community; write ASN:value as Azure lists it, e.g. "12076:51002"'
        )
    return value


_INTERVAL = number(
    MIN_INTERVAL_S, 86400, why=" seconds: probing more often only eats routers' ICMP rate limits"
)
_PREFER = array(identifier)


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class AgentSection:
    id: str = setting(identifier, default_factory=socket.gethostname)
    site: str = setting(identifier, "default")
    role: AgentRole = setting(one_of(*get_args(AgentRole)), "branch")


@dataclass(frozen=True, slots=True)
class SiteSection:
    # Failover order: circuit names, and "internet" (checked against [[circuit]]s).
    prefer: tuple[str, ...] = setting(_PREFER, ())


@dataclass(frozen=True, slots=True)
class DnsConfig:
    # "system", or an address with an optional port: "192.0.2.53",
    # "192.0.2.53:5353", "2001:db8::53", "[2001:db8::53]:5353".
    resolvers: tuple[str, ...] = setting(
        array(
            _resolver,
            if_empty='must list at least one resolver; write ["system"] for the system resolver',
        ),
        (SYSTEM_RESOLVER,),
    )
    timeout_s: float = setting(number(0, 30, lo_open=True), 2.0)


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    port: int = setting(integer(1, 65535), 443)
    trace_protocol: Literal["tcp", "udp", "icmp"] = setting(one_of("tcp", "udp", "icmp"), "tcp")
    max_ttl: int = setting(integer(1, MAX_TTL_LIMIT), 30)
    probes_per_hop: int = setting(integer(1, MAX_PROBES_PER_HOP), 3)
    # Traces share what they learn and pace each router to its ICMP budget,
    # so the global cap only guards the local link and firewall.
    pps: float = setting(number(0, 20000, lo_open=True), 2000.0)
    timeout_s: float = setting(number(0, 60, lo_open=True), 2.0)  # per TCP probe
    # The whole trace phase, all targets together.
    trace_timeout_s: float = setting(number(0, 600, lo_open=True), 10.0)
    # Which of a name's addresses are probed: "preferred" the family the host's users
    # get (RFC 6724 order, RFC 8305 fallback), "first" the first IPv4 address, "all"
    # every address, "both" the first address of each family.
    addresses: Literal["preferred", "first", "all", "both"] = setting(
        one_of(*ADDRESS_MODES), "preferred"
    )
    builtin_targets: bool = setting(boolean, True)
    interval_s: float = setting(_INTERVAL, 60.0)
    jitter_s: float = setting(number(0, 86400), 5.0)
    concurrency: int = setting(integer(1, 1024), 64)  # endpoints probed together in one batch


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    # None: no collector; reports are only printed or spooled.
    url: str | None = setting(
        http_url("https://collector.example.net:8443"),
        None,
        required='"https://collector.example.net:8443"',
    )
    token_file: Path | None = setting(path, None)
    ca_file: Path | None = setting(path, None)
    client_cert: Path | None = setting(path, None)
    client_key: Path | None = setting(path, None)
    # http:// sends the bearer token in clear: refused unless the admin says so.
    allow_plaintext: bool = setting(boolean, False)


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    dir: Path | None = setting(path, None)  # None: "spool" in the agent's state directory
    max_mb: float = setting(number(0, 1_000_000, lo_open=True), 64.0)
    max_age_h: float = setting(number(0, 24 * 365, lo_open=True), 24.0)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: ListenAddress | None = setting(listen_address, None)  # None: no metrics endpoint


@dataclass(frozen=True, slots=True)
class ServiceTagsConfig:
    file: Path | None = setting(path, None)
    # Where `erpath-agent service-tags update` fetches the file: Microsoft's
    # download page (its current link is followed) or an internal mirror.
    url: str | None = setting(http_url(SERVICE_TAGS_PAGE), None)


@dataclass(frozen=True, slots=True)
class BgpCommunitiesConfig:
    # The output of `az network route-filter rule list-service-communities`.
    file: Path | None = setting(path, None)
    # An internal mirror of that output for `erpath-agent communities update`
    # (Azure publishes no download: the list needs a signed-in az).
    url: str | None = setting(http_url("https://mirror.example.net/erpath/communities.json"), None)


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One thing to probe: a host name to resolve, or a fixed address.

    `port` None means "the [probe] port"; `AgentConfig.targets()` fills it in.
    `expect` None leaves the expectation to the classifier's default rule.
    `site` names the other site whose NAT address a "reverse" target is.
    `prefer` is this target's failover order where it differs from the site's.
    """

    name: str = setting(_target_name, required='"contoso.crm4.dynamics.com"')
    address: str | None = setting(ip_address, None)
    port: int | None = setting(integer(1, 65535), None)
    role: TargetRole = setting(one_of(*TARGET_ROLES), "service")
    expect: Expect | None = setting(one_of(*EXPECTS), None)
    site: str | None = setting(identifier, None)
    prefer: tuple[str, ...] = setting(_PREFER, ())


_CIRCUIT = table(
    Circuit,
    name=Key(identifier, required='"ams-1"'),
    location=Key(string, required='"Amsterdam" (the peering location)'),
    sku=Key(one_of(*SKUS), default="standard"),
    primary_subnet=Key(_peering_subnet, required='"203.0.113.0/30"'),
    secondary_subnet=Key(_peering_subnet, required='"203.0.113.4/30"'),
    ce_addresses=Key(array(ip_address)),
    advertised_prefixes=Key(array(ip_prefix)),
    links=Key(one_of(*get_args(LinkMode), synonyms=_LINK_SYNONYMS)),
    peer_asn=Key(integer(1, 4294967295)),
    route_filter=Key(identifier),
    route_filter_communities=Key(array(_community)),
    primary_subnet_v6=Key(_peering_subnet_v6),
    secondary_subnet_v6=Key(_peering_subnet_v6),
)
_EDGE = table(
    InternetEdge,
    name=Key(identifier, required='"ams-inet"'),
    nat_addresses=Key(array(ip_address)),
    hop_addresses=Key(array(ip_address)),
    source_prefixes_v6=Key(array(_ipv6_prefix)),
)
SECTIONS = {
    "agent": table(AgentSection),
    "site": table(SiteSection),
    "dns": table(DnsConfig),
    "probe": table(ProbeConfig),
    "collector": table(CollectorConfig),
    "spool": table(SpoolConfig),
    "metrics": table(MetricsConfig),
    "service_tags": table(ServiceTagsConfig),
    "bgp_communities": table(BgpCommunitiesConfig),
}
ARRAYS = {"circuit": _CIRCUIT, "internet_edge": _EDGE, "target": table(TargetSpec)}


@dataclass(frozen=True, slots=True)
class AgentConfig:
    agent: AgentSection = field(default_factory=AgentSection)
    dns: DnsConfig = DnsConfig()
    probe: ProbeConfig = ProbeConfig()
    collector: CollectorConfig = CollectorConfig()
    spool: SpoolConfig = SpoolConfig()
    metrics: MetricsConfig = MetricsConfig()
    circuits: tuple[Circuit, ...] = ()
    internet_edges: tuple[InternetEdge, ...] = ()
    site: SiteSection = SiteSection()
    service_tags: ServiceTagsConfig = ServiceTagsConfig()
    bgp_communities: BgpCommunitiesConfig = BgpCommunitiesConfig()
    configured_targets: tuple[TargetSpec, ...] = ()
    path: Path | None = field(default=None, compare=False)

    def site_facts(self) -> SiteFacts:
        return SiteFacts(
            circuits=self.circuits, internet_edges=self.internet_edges, prefer=self.site.prefer
        )

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
                [f"{source}: [service_tags] file = {show(os.fspath(file))}: {_tags_problem(e)}"]
            ) from None

    def load_bgp_communities(self) -> BgpCommunities | None:
        """The [bgp_communities] file (cached while unchanged; the last good copy while it
        cannot be read); None if unset."""
        file = self.bgp_communities.file
        if file is None or (self.bgp_communities.url is not None and not file.exists()):
            return None  # not fetched yet: classified as without route filters until then
        try:
            return _load_communities(file)
        except (OSError, CommunitiesError) as e:
            source = os.fspath(self.path) if self.path else "<config>"
            raise ConfigError(
                [
                    f"{source}: [bgp_communities] file = {show(os.fspath(file))}: {_communities_problem(e)}"
                ]
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
    return AgentConfig()


# --------------------------------------------------------------------------- checks across keys


def _probe(r: Reader) -> ProbeConfig:
    read = r.section("probe")
    probe = read.record()
    if "jitter_s" in read.values and probe.jitter_s >= probe.interval_s:
        r.add(
            read.subject("jitter_s"),
            f"must be less than interval_s ({probe.interval_s:g}); a few seconds spreads the agents' probes",
        )
    return probe


def _collector(r: Reader) -> CollectorConfig:
    read = r.section("collector")
    if ("client_cert" in read.data) != ("client_key" in read.data):
        given, missing = ("client_cert", "client_key")[:: 1 if "client_cert" in read.data else -1]
        r.add(
            "[collector]",
            f"{given} needs {missing} too; give both for TLS client authentication, or neither",
        )
    collector = read.record()
    if collector.url and urlsplit(collector.url).scheme == "http" and not collector.allow_plaintext:
        r.add(
            read.subject("url"),
            "plain HTTP sends the agent's token in clear; use https://, or set "
            "allow_plaintext = true in [collector] (a lab, or a collector on this host)",
        )
    return collector if collector.url else CollectorConfig()


def _service_tags(r: Reader) -> ServiceTagsConfig:
    read = r.section("service_tags")
    file, url = read.values.get("file"), read.values.get("url")
    if file is None:
        if url is not None:
            r.add(
                read.subject("url"),
                'needs file = "<where the agent keeps the tags file>" too; the update writes there',
            )
        return ServiceTagsConfig()
    if not file.exists() and url is not None:
        return ServiceTagsConfig(file=file, url=url)  # the first update fetches it
    if not file.is_file():
        r.add(
            read.subject("file"),
            f"no such file ({file}); download ServiceTags_Public_*.json from Microsoft "
            f"and point file at it (relative paths start at the config file's directory)",
        )
    else:
        # Index it now so that a truncated download or the wrong JSON file is
        # a config error at start (and in check-config), not odd verdicts later.
        try:
            _load_tags(file)
        except (OSError, ServiceTagsError) as e:
            r.add(read.subject("file"), _tags_problem(e))
    return ServiceTagsConfig(file=file, url=url)


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


def _bgp_communities(r: Reader, circuit_reads: list[Read]) -> BgpCommunitiesConfig:
    read = r.section("bgp_communities")
    file = read.values.get("file")
    for c in circuit_reads:
        if "route_filter_communities" in c.values and "route_filter" not in c.values:
            r.add(
                c.subject("route_filter_communities"),
                'needs route_filter = "<the route filter\'s name>" too: the communities are '
                "what that filter allows",
            )
    url = read.values.get("url")
    if file is None:
        if url is not None:
            r.add(read.subject("url"), 'needs file = "<where the agent keeps the list>" too')
        return BgpCommunitiesConfig()
    if not file.exists() and url is not None:
        return BgpCommunitiesConfig(file=file, url=url)  # the first update fetches it
    if not file.is_file():
        r.add(
            read.subject("file"),
            f"no such file ({file}); save `az network route-filter rule "
            f"list-service-communities -o json` there (or run erpath-agent communities update)",
        )
        return BgpCommunitiesConfig(file=file)
    try:
        known = _load_communities(file)
    except (OSError, CommunitiesError) as e:
        r.add(read.subject("file"), _communities_problem(e))
        return BgpCommunitiesConfig(file=file, url=url)
    for c in circuit_reads:
        for i, value in enumerate(c.values.get("route_filter_communities", ())):
            if known.get(value) is None:
                r.add(
                    f"{c.where} route_filter_communities[{i}] = {show(value)}",
                    f"is no community of {file.name}; check the value against "
                    "`az network route-filter rule list-service-communities`",
                )
    return BgpCommunitiesConfig(file=file, url=url)


_communities_cache: dict[Path, tuple[tuple[int, int], BgpCommunities]] = {}


def _load_communities(file: Path) -> BgpCommunities:
    """Once per (path, mtime, size); a file that stops being readable keeps the last good copy
    (an update replaces it atomically, so that is a hand edit gone wrong)."""
    with _tags_lock:
        hit = _communities_cache.get(file)
    try:
        st = file.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        communities = BgpCommunities.load(file)
    except (OSError, CommunitiesError):
        if hit is not None:
            return hit[1]
        raise
    with _tags_lock:
        _communities_cache[file] = (stamp, communities)
    return communities


def _communities_problem(e: Exception) -> str:
    if isinstance(e, CommunitiesError):
        return e.problem
    return f"cannot read it: {getattr(e, 'strerror', None) or e}"


def _unique_names(r: Reader, kind: str, reads: list[Read]) -> None:
    seen: dict[str, str] = {}
    for read in reads:
        key = read.values.get("name")
        if key is None:
            continue
        if key in seen:
            r.add(
                read.subject("name"),
                f"duplicate; {kind} names must be unique (also used by {seen[key]})",
            )
        else:
            seen[key] = read.where.split(" (")[0]


def _circuits(r: Reader, reads: list[Read]) -> tuple[Circuit, ...]:
    links: list[tuple[str, str]] = []  # (subject, subnet) of every good peering subnet
    for read in reads:
        primary, secondary = (read.values.get(k) for k in ("primary_subnet", "secondary_subnet"))
        families = {ipaddress.ip_network(s).version for s in (primary, secondary) if s}
        if primary and secondary and len(families) == 2:
            r.add(
                read.subject("secondary_subnet"),
                f"is not the same IP family as primary_subnet ({primary}); "
                f"give both links' /30s (IPv4) or both /126s (IPv6)",
            )
        _check_v6_subnets(r, read)
        links += [(f"{read.where} {k}", read.values[k]) for k in read.values if "subnet" in k]
    _unique_names(r, "circuit", reads)
    # A hop address must point at exactly one link, or the verdict cannot say
    # which circuit (and which of its links) carried the traffic.
    for i, (subject, subnet) in enumerate(links):
        net = ipaddress.ip_network(subnet)
        for other_subject, other in links[:i]:
            if net.overlaps(ipaddress.ip_network(other)):
                r.add(
                    f"{subject} = {show(subnet)}",
                    f"overlaps {other_subject} {other}; each peering link needs its own /30 (or /126)",
                )
                break
    return tuple(read.record() for read in reads if read.ok)


def _check_v6_subnets(r: Reader, read: Read) -> None:
    """A dual-stack circuit gives both links' /126s in the _v6 keys beside IPv4 /30s.

    An IPv6-only circuit (its /126s in primary_subnet / secondary_subnet, the
    form before the _v6 keys) keeps loading; _v6 keys beside it would give a
    link two IPv6 subnets.
    """
    v6 = [k for k in ("primary_subnet_v6", "secondary_subnet_v6") if k in read.data]
    if not v6:
        return
    primary = read.values.get("primary_subnet")
    if primary and ipaddress.ip_network(primary).version == 6:
        r.add(
            read.subject(v6[0]),
            f"primary_subnet ({primary}) is already IPv6; a dual-stack circuit writes its "
            "IPv4 /30s in primary_subnet / secondary_subnet and its /126s in the _v6 keys",
        )
    elif len(v6) == 1:
        missing = ({"primary_subnet_v6", "secondary_subnet_v6"} - set(v6)).pop()
        r.add(
            read.subject(v6[0]),
            f"needs {missing} too; give both links' IPv6 /126s (the MSEE is the second address)",
        )


def _edges(r: Reader) -> tuple[InternetEdge, ...]:
    reads = r.items("internet_edge")
    _unique_names(r, "internet edge", reads)
    return tuple(read.record() for read in reads if read.ok)


def _check_prefer(r: Reader, read: Read, circuit_names: list[str]) -> None:
    """Every name in a failover order is a configured circuit or "internet"."""
    known = [*circuit_names, INTERNET]
    for i, choice in enumerate(read.values.get("prefer", ())):
        if choice not in known:
            hint = did_you_mean(choice, known) or "; use " + ", ".join(f'"{k}"' for k in known)
            r.add(
                f"{read.where} prefer[{i}] = {show(choice)}",
                f'is neither a [[circuit]] name nor "{INTERNET}"{hint}',
            )


def _targets(r: Reader, circuit_names: list[str]) -> tuple[TargetSpec, ...]:
    reads = r.items("target")
    targets = []
    for read in reads:
        _check_prefer(r, read, circuit_names)
        if not read.ok:
            continue
        t: TargetSpec = read.record()
        v, label = read.values, read.where
        if is_ip(t.name):
            if t.address is not None and t.address != t.name:
                r.add(
                    read.subject("address"),
                    "differs from name, which is already an address; drop address or give the target a host name",
                )
                continue
            t = replace(t, address=t.name)
        entry = catalog.lookup(t.name)
        if entry is not None:
            t = replace(t, role=v.get("role", entry.role), expect=v.get("expect", entry.expect))
        if t.role == "reverse" and t.site is None:
            r.add(label, 'role = "reverse" needs site = "<the site whose NAT address this is>"')
        elif t.role == "reverse" and t.address is None:
            r.add(
                label,
                'role = "reverse" needs address = "<that site\'s NAT address>" (or an address as name)',
            )
        elif t.role != "reverse" and t.site is not None:
            r.add(read.subject("site"), 'only a role = "reverse" target names a site; remove site')
        else:
            targets.append(t)
    _unique_names(r, "target", reads)
    return tuple(targets)


# --------------------------------------------------------------------------- loading


def loads(text: str, *, source: str = "<config>", base_dir: Path | None = None) -> AgentConfig:
    """Parse and validate config text; `source` names it in messages, paths resolve against `base_dir`."""
    return _from_doc(parse_toml(text, source), source, base_dir or Path.cwd())


def load(path: str | os.PathLike[str] | None = None) -> AgentConfig:
    """Load and validate a config file; None gives `default_config()`."""
    if path is None:
        return default_config()
    doc = read_toml(
        path,
        if_missing="no such file; check the path, or leave the config out "
        "to probe the built-in catalog with the system resolver",
    )
    file = Path(path)
    return replace(_from_doc(doc, os.fspath(path), file.absolute().parent), path=file)


def update_source(
    path: str | os.PathLike[str], section: Literal["service_tags", "bgp_communities"]
) -> tuple[Path | None, str | None]:
    """(file, url) of one table, reading nothing else: an update must work while the
    current file is broken, which would fail a full load."""
    doc = read_toml(path, if_missing="no such file; give the agent's config with --config")
    r = Reader(
        os.fspath(path),
        doc,
        sections=SECTIONS,
        arrays=ARRAYS,
        base_dir=Path(path).absolute().parent,
    )
    read = r.section(section)
    problems = [p for p in r.problems if f"[{section}]" in p]
    if problems:
        raise ConfigError(problems)
    return read.values.get("file"), read.values.get("url")


def _from_doc(doc: dict[str, Any], source: str, base_dir: Path) -> AgentConfig:
    r = Reader(source, doc, sections=SECTIONS, arrays=ARRAYS, base_dir=base_dir)
    agent, dns, probe = r.section("agent").record(), r.section("dns").record(), _probe(r)
    collector = _collector(r)
    spool, metrics = r.section("spool").record(), r.section("metrics").record()
    circuit_reads = r.items("circuit")
    circuits, edges = _circuits(r, circuit_reads), _edges(r)
    # Names of circuits with other problems count: one problem, one message.
    circuit_names = [c.values["name"] for c in circuit_reads if "name" in c.values]
    site = r.section("site")
    _check_prefer(r, site, circuit_names)
    config = AgentConfig(
        agent=agent,
        dns=dns,
        probe=probe,
        collector=collector,
        spool=spool,
        metrics=metrics,
        circuits=circuits,
        internet_edges=edges,
        site=site.record(),
        service_tags=_service_tags(r),
        bgp_communities=_bgp_communities(r, circuit_reads),
        configured_targets=_targets(r, circuit_names),
    )
    r.done()
    return config


# --------------------------------------------------------------------------- command line


def _cli_target(text: str, expect: Expect | None) -> TargetSpec:
    try:
        host, port = split_host_port(text.strip())
    except Invalid as e:
        raise Invalid(f"{e}; write a host name or address, optionally :port") from None
    name = _target_name(host)
    entry = None if is_ip(name) else catalog.lookup(name)
    return TargetSpec(
        name=name,
        address=name if is_ip(name) else None,
        port=port,
        role=entry.role if entry else "service",
        expect=expect or (entry.expect if entry else None),
    )


def with_cli_targets(
    config: AgentConfig, names_or_addresses: Iterable[str], expect: Expect | None = None
) -> AgentConfig:
    """The config with its targets replaced by TARGETs from the command line.

    "host:port" and "[v6]:port" set a port per target (the others take the
    [probe] port); an IP address becomes an address target; a name in the
    catalog keeps the catalog's role and expectation unless `expect` is given.
    """
    problems = []
    if expect is not None and expect not in EXPECTS:
        problems.append(f"command line: --expect {expect}: must be one of {', '.join(EXPECTS)}")
    specs: list[TargetSpec] = []
    for text in names_or_addresses:
        try:
            specs.append(_cli_target(text, expect))
        except Invalid as e:
            problems.append(f"command line: TARGET {show(text)}: {e}")
    if problems:
        raise ConfigError(problems)
    return replace(
        config,
        probe=replace(config.probe, builtin_targets=False),
        configured_targets=tuple(specs),
    )
