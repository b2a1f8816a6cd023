"""Prometheus metrics: the collector's own instruments plus a store-backed Collector.

Path and agent series are built from the store at every scrape (a custom
`Collector`), so they always show the current state and survive restarts
(flip counters are persisted per path).  The registry is passed in, never the
global one.  Hop addresses never become labels.

At fleet scale (2,000 agents x 30 targets: 420k series) prometheus_client's
per-sample objects and formatting take seconds, so `render` writes the store
families' text directly and the registry renders only the rest; both come
from the same `families()`, and a test checks they parse the same.

With `per_site_aggregates` the same metric names are exported without the
`agent` label: info and state series count agents, times are means, hop
counts maxima, counters sums.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from collector import queries
from collector.store import Store


class Instruments:
    """Counters and histograms updated as things happen in this process."""

    def __init__(self, registry: CollectorRegistry):
        self.reports = Counter(
            "erpath_reports_received", "Reports received, by result.", ["result"], registry=registry
        )
        for result in ("accepted", "duplicate", "rejected"):
            self.reports.labels(result)
        self.ingest_seconds = Histogram(
            "erpath_ingest_seconds",
            "Time from request to durable acknowledgement of a report.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.closed_unread = Counter(
            "erpath_ingest_closed_unread",
            "Report requests closed without an answer and unread: their agent ignored "
            "a refusal's Retry-After.",
            registry=registry,
        )
        self.alert_deliveries = Counter(
            "erpath_alert_deliveries",
            "Alert deliveries to Alertmanager and webhooks, by result.",
            ["receiver", "result"],
            registry=registry,
        )


def _s(v: object) -> str:
    return "" if v is None else str(v)


@dataclass(slots=True)
class Family:
    name: str  # without _total for counters
    kind: str  # gauge | counter
    help: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)

    def add(self, values: list[str] | tuple[str, ...], value: float) -> None:
        self.samples.append((tuple(values), float(value)))


def _g(name: str, help_: str, *labels: str) -> Family:
    return Family(name, "gauge", help_, labels)


def _c(name: str, help_: str, *labels: str) -> Family:
    return Family(name, "counter", help_, labels)


def families(snap: queries.Snapshot, per_site: bool, now_s: float | None = None) -> list[Family]:
    now_s = time.time() if now_s is None else now_s
    out = _per_site(snap, now_s) if per_site else _per_agent(snap, now_s)
    asym = _g(
        "erpath_path_asymmetric",
        "1 while asymmetric routing is seen at a site towards a circuit.",
        "site",
        "circuit",
        "kind",
    )
    for site, circuit, kind, active in snap.asymmetries:
        asym.add([site, circuit, kind], active)
    out.append(asym)
    links = _g(
        "erpath_circuit_links_seen",
        "Flows the site's latest reports saw on each link of a circuit.",
        "site",
        "circuit",
        "link",
    )
    lost = _g(
        "erpath_circuit_redundancy_lost",
        "1 while a circuit runs on one link (ErpathCircuitRedundancyLost firing).",
        "site",
        "circuit",
    )
    for site, circuit, primary, secondary, is_lost in snap.circuits:
        links.add([site, circuit, "primary"], primary)
        links.add([site, circuit, "secondary"], secondary)
        lost.add([site, circuit], is_lost)
    conflict = _g(
        "erpath_site_facts_conflict",
        "Reporting agents of the site whose site facts differ from another agent's"
        " (the site keeps the facts it had until they agree).",
        "site",
    )
    for site, agents in snap.facts_conflicts:
        conflict.add([site], agents)
    out += [links, lost, conflict]
    return out


def _runs_with(now_s: float, *labels: str) -> tuple[Family, Family, Family]:
    """What the agents run with: refused targets, service tags changeNumber and age."""
    return (
        _g(
            "erpath_agent_targets_refused",
            "Targets of the last report beyond [ingest] max_targets_per_agent, not stored.",
            *labels,
        ),
        _g(
            "erpath_agent_service_tags_change_number",
            "changeNumber of the service tags file the agent classifies with.",
            *labels,
        ),
        _g(
            "erpath_agent_service_tags_age_seconds",
            "Time since the agent's service tags file was installed.",
            *labels,
        ),
    )


class _Combined:
    """One per-site family's samples: the values of a site's agents, combined by `combine`."""

    __slots__ = ("values", "combine")

    def __init__(self, combine: Callable[[list[float]], float]):
        self.values: dict[tuple[str, ...], list[float]] = defaultdict(list)
        self.combine = combine

    def add(self, labels: tuple[str, ...], value: float) -> None:
        self.values[labels].append(value)

    def into(self, f: Family) -> Family:
        for labels, values in self.values.items():
            f.add(labels, self.combine(values))
        return f


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


class _Sink(Protocol):
    def add(self, labels: tuple[str, ...], value: float) -> None: ...


def _add_paths(
    snap: queries.Snapshot,
    by_agent: bool,
    info: _Sink,
    expected: _Sink,
    connect: _Sink,
    tcp: _Sink,
    dns: _Sink,
    hops: _Sink,
    flips: _Sink,
) -> None:
    """Each path's samples: per agent into its families, per site into what combines them."""
    # Every path series carries its address family ("4" or "6"): a dual-stack target
    # has a path per family.
    for (
        agent,
        site,
        target,
        cls,
        circuit,
        link,
        egress,
        matches,
        connect_s,
        dns_s,
        hop_count,
        tcp_state,
        flips_total,
        family,
    ) in snap.paths:
        key = (agent, site, target, str(family)) if by_agent else (site, target, str(family))
        info.add((*key, cls, _s(circuit), _s(link), _s(egress)), 1.0)
        if matches is not None:
            expected.add(key, matches)
        if connect_s is not None:
            connect.add((*key, cls), connect_s)
        if tcp_state is not None:
            tcp.add((*key, tcp_state), 1.0)
        if dns_s is not None:
            dns.add(key, dns_s)
        if hop_count is not None:
            hops.add(key, hop_count)
        flips.add(key, flips_total)


def _add_agents(
    snap: queries.Snapshot,
    now_s: float,
    by_agent: bool,
    last: _Sink,
    silent: _Sink,
    cycle: _Sink,
    spool: _Sink,
    dropped: _Sink,
    refused: _Sink,
    change: _Sink,
    age: _Sink,
) -> None:
    """Each agent's samples: per agent into its families, per site into what combines them."""
    for (
        agent,
        site,
        role,
        last_seen_s,
        is_silent,
        cycle_s,
        spool_n,
        dropped_n,
        refused_n,
        change_number,
        installed_s,
    ) in snap.agents:
        key = (agent, site) if by_agent else (site,)
        last.add((*key, role), last_seen_s)
        refused.add(key, refused_n)
        if change_number is not None:
            change.add(key, change_number)
        if installed_s is not None:
            age.add(key, max(0.0, now_s - installed_s))
        silent.add((*key, role), is_silent)
        if cycle_s is not None:
            cycle.add(key, cycle_s)
        # A site counts an agent that sent no spool or drop count as 0.
        if spool_n is not None or not by_agent:
            spool.add(key, spool_n or 0)
        if dropped_n is not None or not by_agent:
            dropped.add(key, dropped_n or 0)


def _per_agent(snap: queries.Snapshot, now_s: float) -> list[Family]:
    info = _g(
        "erpath_path_info",
        "Current path of a target as an agent sees it (1).",
        "agent",
        "site",
        "target",
        "family",
        "class",
        "circuit",
        "link",
        "egress",
    )
    expected = _g(
        "erpath_path_expected",
        "1 when the current path is the expected one.",
        "agent",
        "site",
        "target",
        "family",
    )
    path = ("agent", "site", "target", "family")
    connect = _g("erpath_tcp_connect_seconds", "Last TCP connect time.", *path, "class")
    tcp = _g("erpath_tcp_state", "Last TCP probe state (1).", *path, "state")
    dns = _g("erpath_dns_resolve_seconds", "Last DNS resolution time.", *path)
    hops = _g("erpath_trace_hops", "Hop count of the last trace.", *path)
    flips = _c("erpath_route_flips", "Confirmed route flips.", *path)
    _add_paths(snap, True, info, expected, connect, tcp, dns, hops, flips)
    last = _g(
        "erpath_agent_last_report_timestamp_seconds",
        "When the collector last received a report from the agent.",
        "agent",
        "site",
        "role",
    )
    silent = _g(
        "erpath_agent_silent",
        "1 when the agent missed 3 of its intervals.",
        "agent",
        "site",
        "role",
    )
    cycle = _g(
        "erpath_agent_cycle_seconds", "Duration of the agent's last probe cycle.", "agent", "site"
    )
    spool = _g(
        "erpath_agent_spool_reports", "Reports waiting in the agent's spool.", "agent", "site"
    )
    dropped = _c("erpath_agent_dropped_reports", "Reports the agent dropped.", "agent", "site")
    refused, change, age = _runs_with(now_s, "agent", "site")
    _add_agents(snap, now_s, True, last, silent, cycle, spool, dropped, refused, change, age)
    return [
        info,
        expected,
        connect,
        tcp,
        dns,
        hops,
        flips,
        last,
        silent,
        cycle,
        spool,
        dropped,
        refused,
        change,
        age,
    ]


def _per_site(snap: queries.Snapshot, now_s: float) -> list[Family]:
    # Agents on a path are counted, times averaged, hop counts their maximum, flips summed;
    # a site is on the expected path only when all its agents are.
    info, expected, connect, tcp = _Combined(sum), _Combined(min), _Combined(_mean), _Combined(sum)
    dns, hops, flips = _Combined(_mean), _Combined(max), _Combined(sum)
    _add_paths(snap, False, info, expected, connect, tcp, dns, hops, flips)
    out = [
        info.into(
            _g(
                "erpath_path_info",
                "Agents of a site on each path of a target.",
                *("site", "target", "family", "class", "circuit", "link", "egress"),
            )
        ),
        expected.into(
            _g(
                "erpath_path_expected",
                "1 when every agent of the site is on the expected path.",
                *("site", "target", "family"),
            )
        ),
        connect.into(
            _g(
                "erpath_tcp_connect_seconds",
                "Mean last TCP connect time of a site's agents.",
                *("site", "target", "family", "class"),
            )
        ),
        tcp.into(
            _g(
                "erpath_tcp_state",
                "Agents of a site per last TCP state.",
                *("site", "target", "family", "state"),
            )
        ),
        dns.into(
            _g(
                "erpath_dns_resolve_seconds",
                "Mean last DNS time of a site's agents.",
                *("site", "target", "family"),
            )
        ),
        hops.into(
            _g(
                "erpath_trace_hops",
                "Largest hop count of a site's agents.",
                *("site", "target", "family"),
            )
        ),
        flips.into(
            _c(
                "erpath_route_flips",
                "Confirmed route flips of a site's agents.",
                *("site", "target", "family"),
            )
        ),
    ]
    # The latest report, the longest cycle; silent agents, spools, drops and refused targets
    # summed; the site's oldest service tags (lowest changeNumber, largest age).
    last, silent, cycle, spool = _Combined(max), _Combined(sum), _Combined(max), _Combined(sum)
    dropped, refused, change, age = _Combined(sum), _Combined(sum), _Combined(min), _Combined(max)
    _add_agents(snap, now_s, False, last, silent, cycle, spool, dropped, refused, change, age)
    refused_f, change_f, age_f = _runs_with(now_s, "site")
    return [
        *out,
        last.into(
            _g(
                "erpath_agent_last_report_timestamp_seconds",
                "Latest report of any agent of the site.",
                *("site", "role"),
            )
        ),
        silent.into(_g("erpath_agent_silent", "Silent agents of the site.", "site", "role")),
        cycle.into(
            _g("erpath_agent_cycle_seconds", "Longest last probe cycle at the site.", "site")
        ),
        spool.into(
            _g(
                "erpath_agent_spool_reports",
                "Reports waiting in the site's agents' spools.",
                "site",
            )
        ),
        dropped.into(
            _c("erpath_agent_dropped_reports", "Reports dropped by the site's agents.", "site")
        ),
        refused.into(refused_f),
        change.into(change_f),
        age.into(age_f),
    ]


# While set on a thread, StoreCollector yields nothing: `render` writes those families itself.
_rendering = threading.local()


class StoreCollector(Collector):
    def __init__(self, store: Store, per_site_aggregates: bool = False):
        self.store = store
        self.per_site = per_site_aggregates

    def describe(self) -> list[Metric]:
        return []  # built at scrape time; nothing to check at registration

    def snapshot_families(self) -> list[Family]:
        if self.store.closed:
            return []
        return families(self.store.read_sync(queries.snapshot), self.per_site)

    def collect(self) -> Iterator[Metric]:
        if getattr(_rendering, "active", False):
            return
        for f in self.snapshot_families():
            cls = GaugeMetricFamily if f.kind == "gauge" else CounterMetricFamily
            m = cls(f.name, f.help, labels=list(f.labels))
            for values, value in f.samples:
                m.add_metric(list(values), value)
            yield m


def _escape(v: str) -> str:
    if "\\" in v or "\n" in v or '"' in v:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return v


def render_families(fams: list[Family]) -> str:
    """Text exposition 0.0.4 of store families, as prometheus_client would write it."""
    out: list[str] = []
    for f in fams:
        name = f.name + "_total" if f.kind == "counter" else f.name
        help_ = f.help.replace("\\", "\\\\").replace("\n", "\\n")
        out.append(f"# HELP {name} {help_}\n# TYPE {name} {f.kind}\n")
        order = sorted(range(len(f.labels)), key=f.labels.__getitem__)  # as prometheus_client does
        keys = [(i, f'{f.labels[i]}="') for i in order]
        for values, value in f.samples:
            labels = ",".join(k + _escape(values[i]) + '"' for i, k in keys)
            out.append(f"{name}{{{labels}}} {floatToGoString(value)}\n")
    return "".join(out)


# What a scrape asks for: everything, the stored state only (the same from every replica on
# one database), or this process's own instruments only (see docs/collector.md).
SCOPES = ("all", "state", "process")


def render(
    registry: CollectorRegistry, collector: StoreCollector | None, scope: str = "all"
) -> bytes:
    """The /metrics body: the registry's own metrics plus the store families, rendered fast."""
    if collector is None:
        return generate_latest(registry)
    head = b""
    if scope != "state":
        _rendering.active = True
        try:
            head = generate_latest(registry)
        finally:
            _rendering.active = False
    if scope == "process":
        return head
    return head + render_families(collector.snapshot_families()).encode()
