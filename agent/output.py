"""Human output of `erpath-agent`: the verdict table, hops as mtr shows them, explanations."""

from __future__ import annotations

from typing import TextIO

from agent.report import Report, Result, Trace

_SEVERE = ("warning", "critical")


def needs_attention(report: Report) -> bool:
    """A path off its expectation, or an asymmetry finding of warning or worse."""
    for r in report.results:
        if r.verdict is not None and r.verdict.matches_expected is False:
            return True
        if any(f.severity in _SEVERE for f in r.findings):
            return True
    return False


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _path(r: Result) -> str:
    v = r.verdict
    if v is None:
        return "-"
    parts = [v.path_class]
    if v.circuit:
        # Both links carry flows when the circuit is active-active: show each seen.
        links = "+".join(x.link for x in v.links_seen) if len(v.links_seen) > 1 else v.link
        parts.append(v.circuit + (f"/{links}" if links else ""))
    if v.egress:
        parts.append(f"via {v.egress}")
    text = " ".join(parts)
    if v.matches_expected is False:
        text += f"  ✗ expected {v.expected}"
    return text


def _dns(r: Result) -> str:
    if r.dns is None:
        return "(address)"
    if r.dns.failure:
        return r.dns.failure
    chain = " → ".join(r.dns.cname_chain)
    text = f"{chain} → " if chain else ""
    text += f"{len(r.dns.addresses)} addr, {_ms(r.dns.duration_s)}"
    if r.dns.divergent:
        text += ", resolvers disagree"
    return text


def _route(r: Result) -> str:
    rt = r.route
    if rt is None:
        return "-"
    if rt.failure:
        return rt.failure
    via = f"via {rt.gateway} " if rt.gateway else ""
    proto = f" proto {rt.protocol}" if rt.protocol else ""
    return f"{via}dev {rt.interface}{proto}"


def _tcp(r: Result) -> str:
    t = r.tcp
    if t is None:
        return "-"
    text = f"{t.state} {_ms(t.connect_s)}"
    if t.method == "connect":
        text += " (connect)"
    return text


def _hops(t: Trace | None) -> str:
    if t is None:
        return "-"
    if t.failure == "trace.no-capability":
        return "no trace"
    return f"{t.hop_count}{'' if t.reached else ' (not reached)'}"


def render(report: Report, *, hops: bool = False, explain: bool = False) -> str:
    rows = [("TARGET", "ADDRESS", "PATH", "TCP", "HOPS", "ROUTE", "DNS")]
    for r in report.results:
        rows.append(
            (
                f"{r.target}:{r.port}",
                r.address or "-",
                _path(r),
                _tcp(r),
                _hops(r.trace),
                _route(r),
                _dns(r),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]
    lines = [ln.rstrip() for ln in lines]
    a = report.agent
    head = f"erpath {a.version} · agent {a.id} · site {a.site} ({a.role}) · {len(report.results)} results in {report.duration_s:.2f} s"
    out = [head, "", *lines]
    notes = _notes(report)
    if notes:
        out += ["", *notes]
    for r in report.results:
        if hops and r.trace is not None and r.trace.hops:
            out += [
                "",
                f"{r.target} ({r.address}) {r.trace.protocol} trace, flow {r.trace.flow}:",
                *_hop_lines(r.trace),
            ]
        if explain:
            out += explain_result(r)
        elif r.findings:
            out += [
                f"{r.target}: {f.severity} {f.kind} (--explain for evidence and fix)"
                for f in r.findings
            ]
    return "\n".join(out) + "\n"


def _notes(report: Report) -> list[str]:
    notes = []
    if any(r.tcp is not None and r.tcp.method == "connect" for r in report.results):
        notes.append(
            "note: no CAP_NET_RAW — TCP timed with connect(); traces need the capability "
            "(run as root or grant CAP_NET_RAW, e.g. AmbientCapabilities=CAP_NET_RAW)"
        )
    return notes


def _hop_lines(t: Trace) -> list[str]:
    lines = []
    for h in t.hops:
        if not h.replies:
            lines.append(f"  {h.ttl:>2}  *")
            continue
        by_addr: dict[str, list] = {}
        for rep in h.replies:
            by_addr.setdefault(rep.address, []).append(rep)
        first = True
        for addr, reps in by_addr.items():
            rtts = [x.rtt_s for x in reps]
            rep = reps[0]
            name = f" {rep.ptr}" if rep.ptr else ""
            asn = f" AS{rep.asn}" if rep.asn is not None else ""
            mpls = "".join(f" [MPLS {m.label}/tc{m.tc}/ttl{m.ttl}]" for m in rep.mpls)
            kind = "" if rep.kind == "time-exceeded" else f" {rep.kind}"
            rtt = f"{min(rtts) * 1000:.2f}/{sum(rtts) / len(rtts) * 1000:.2f}/{max(rtts) * 1000:.2f} ms"
            ttl = f"{h.ttl:>2}" if first else "  "
            shared = "  (shared: learned by another target's trace)" if h.shared and first else ""
            lines.append(f"  {ttl}  {addr}{name}{asn}  {rtt}{kind}{mpls}{shared}")
            first = False
    return lines


def explain_result(r: Result) -> list[str]:
    """Verdict, evidence and each finding with its fix, for one result (`--explain`)."""
    out = ["", f"{r.target} ({r.address or 'unresolved'}):"]
    v = r.verdict
    if v is not None:
        out.append(
            f"  verdict {v.path_class} (confidence {v.confidence:.2f}), expected {v.expected or '-'}"
        )
        out.append(_family_line(r))
        if v.links_seen:
            seen = ", ".join(f"{x.link} ({x.flows} of {v.msee_flows} flows)" for x in v.links_seen)
            out.append(f"  links seen at the MSEE of {v.circuit}: {seen}")
        out += [f"    - {e.text}" for e in v.evidence]
    if r.failure:
        out.append(f"  failure {r.failure}")
    for f in r.findings:
        predicted = ", predicted only" if f.predicted_only else ""
        out.append(f"  finding {f.kind} ({f.severity}{predicted})")
        out += [f"    - {e.text}" for e in f.evidence]
        if f.fix:
            out.append(f"    fix: {f.fix}")
    return out


_FAMILY = {"ipv4": "IPv4", "ipv6": "IPv6"}


def _family_line(r: Result) -> str:
    """The result's family and the one users get (the evidence line below says why)."""
    own = _FAMILY.get(r.address_family or "", "-")
    users = next((e for e in r.verdict.evidence if e.kind == "family"), None) if r.verdict else None
    if users is None:
        families = {":" in a for a in (r.dns.addresses if r.dns else ())}
        if r.dns is not None and len(families) == 1:
            return f"  family {own}: the name has addresses of no other family"
        return f"  family {own}; which family users get was not measured (one family probed)"
    theirs = _FAMILY.get(users.name or "", "-")
    same = "the family users get" if users.address == r.address else f"users get {theirs}"
    return f"  family {own}: {same} ({users.address})"


def render_config(config) -> str:
    a = config.agent
    out = [f"agent {a.id} · site {a.site} · role {a.role}", "", "targets:"]
    for t in config.targets():
        dest = t.address or t.name
        out.append(
            f"  {t.name:<40} {t.role:<10} port {t.port or config.probe.port:<5} expect {t.expect or 'auto'}"
            + (f" ({dest})" if t.address else "")
        )
    from agent.catalog import unprobed_note

    for entry in config.unprobed_catalog():
        out.append(f"  (not probed) {unprobed_note(entry)}")
    site = config.site_facts()
    out += ["", "circuits:" if site.circuits else "circuits: none"]
    for c in site.circuits:
        out.append(
            f"  {c.name} ({c.location}, {c.sku}): primary {c.primary_subnet}, secondary {c.secondary_subnet},"
            f" advertises {', '.join(c.advertised_prefixes) or 'nothing'}"
        )
        if c.primary_subnet_v6:
            out.append(
                f"    IPv6: primary {c.primary_subnet_v6}, secondary {c.secondary_subnet_v6}"
            )
        if c.route_filter is not None:
            allowed = ", ".join(c.route_filter_communities) or "no community"
            out.append(f"    route filter {c.route_filter} allows {allowed}")
    out += ["", "internet edges:" if site.internet_edges else "internet edges: none"]
    for e in site.internet_edges:
        out.append(
            f"  {e.name}: NAT {', '.join(e.nat_addresses) or '-'}, hops {', '.join(e.hop_addresses) or '-'}"
        )
        if e.source_prefixes_v6:
            out.append(f"    IPv6 un-NATed from {', '.join(e.source_prefixes_v6)}")
    return "\n".join(out) + "\n"


class Progress:
    """A one-line progress display on a terminal (stderr), erased when done."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def update(self, message: str) -> None:
        self._stream.write(f"\r\x1b[K{message}…")
        self._stream.flush()

    def clear(self) -> None:
        self._stream.write("\r\x1b[K")
        self._stream.flush()
