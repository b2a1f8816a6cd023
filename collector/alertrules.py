"""What each collector-owned alert looks like: labels, severity, annotations.

Pure: the store decides when an alert fires or resolves, this module decides
what it says.  Labels identify an alert (its fingerprint); annotations carry
the evidence and can change while it fires.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from collector.state import Asymmetry, PathEvent, PathKey, PathState

ROUTE_FLIP = "ErpathRouteFlip"
UNEXPECTED_PATH = "ErpathUnexpectedPath"
PATH_ASYMMETRIC = "ErpathPathAsymmetric"
REDUNDANCY_LOST = "ErpathCircuitRedundancyLost"
ROUTE_FILTER_EXCLUDES = "ErpathRouteFilterExcludes"

# Alertmanager and chat tools choke on huge annotations; evidence is capped.
MAX_EVIDENCE_CHARS = 4000


@dataclass(frozen=True, slots=True)
class AlertSpec:
    labels: dict[str, str]
    annotations: dict[str, str]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]


def fingerprint(labels: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Links:
    runbook_base_url: str
    dashboard_base_url: str

    def runbook(self, alertname: str) -> str:
        return f"{self.runbook_base_url.rstrip('/')}/{alertname}"

    def dashboard(self, **params: str) -> str:
        query = urlencode({f"var-{k}": v for k, v in params.items() if v})
        sep = "&" if "?" in self.dashboard_base_url else "?"
        return f"{self.dashboard_base_url}{sep}{query}" if query else self.dashboard_base_url


def evidence_text(lines: Iterable[str]) -> str:
    out: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > MAX_EVIDENCE_CHARS:
            out.append("... (more in GET /api/v1/events)")
            break
        out.append(line)
        size += len(line) + 1
    return "\n".join(out)


def family_labels(family: int) -> dict[str, str]:
    """`family="6"` on an IPv6 path's alerts; none on an IPv4 path's.

    Alertmanager fingerprints an alert by its labels: IPv4 paths' alerts keep the labels
    (and fingerprints) they had before paths had a family, so an upgrade neither
    resolves nor re-fires them."""
    return {} if family == 4 else {"family": str(family)}


def family_of_labels(labels: Mapping[str, str]) -> int:
    return int(labels.get("family", "4"))


def _over(family: int) -> str:
    return "" if family == 4 else f" (IPv{family})"


def _path_line(side: dict | None) -> list[str]:
    side = side or {"class": "unknown"}
    key = PathKey.from_dict(side)
    head = (
        key.label
        + (f" ({side['link']} link)" if side.get("link") else "")
        + f" at {side.get('address')}"
    )
    return [head, *[f"  {e}" for e in side.get("evidence", [])]]


def route_flip(site: str, agent: str, flip: PathEvent, links: Links, origin: str) -> AlertSpec:
    """`origin`: the path before the first of a chain of flips still firing, so that
    ams-1 → dub-2 → internet reads `from` ams-1, and a return to it resolves."""
    after = PathKey.from_dict(flip.after or {"class": "unknown"})
    labels = {
        "alertname": ROUTE_FLIP,
        "site": site,
        "agent": agent,
        "target": flip.target,
        **family_labels(flip.family),
        "from": origin,
        "to": after.label,
        "severity": flip.severity,
    }
    driver = (
        "DNS-driven (the target's address changed)" if flip.driver == "dns" else "routing-driven"
    )
    before, now = _path_line(flip.before), _path_line(flip.after)
    lines = [
        f"family: IPv{flip.family}",
        f"before: {before[0]}",
        *before[1:],
        f"after: {now[0]}",
        *now[1:],
    ]
    return AlertSpec(
        labels,
        {
            "summary": f"{agent} ({site}) reaches {flip.target}{_over(flip.family)} over"
            f" {after.label} instead of {origin}",
            "description": f"Route flip (class, circuit or egress) confirmed by consecutive "
            f"reports, {driver}. It resolves when the path returns or after the hold time.",
            "evidence": evidence_text(lines),
            "runbook_url": links.runbook(ROUTE_FLIP),
            "dashboard_url": links.dashboard(
                site=site, agent=agent, target=flip.target, **family_labels(flip.family)
            ),
        },
    )


def unexpected_path(
    site: str, agent: str, state: PathState, links: Links, why: Sequence[str] = ()
) -> AlertSpec:
    """`why`: how the expected path was chosen (the failover order), when it was."""
    labels = {
        "alertname": UNEXPECTED_PATH,
        "site": site,
        "agent": agent,
        "target": state.target,
        **family_labels(state.family),
        "expected": state.expected or "unknown",
        "severity": "warning",
    }
    return AlertSpec(
        labels,
        {
            "summary": f"{agent} ({site}) reaches {state.target}{_over(state.family)} over "
            f"{state.key.label}, expected {state.expected}",
            "description": "The current path differs from the target's expected path "
            + ("(the site's failover order)." if why else "class."),
            "evidence": evidence_text(
                [*why, f"family: IPv{state.family}", f"path: {state.key.label}", *state.evidence]
            ),
            "runbook_url": links.runbook(UNEXPECTED_PATH),
            "dashboard_url": links.dashboard(
                site=site, agent=agent, target=state.target, **family_labels(state.family)
            ),
        },
    )


def path_asymmetric(site: str, circuit: str, members: list[Asymmetry], links: Links) -> AlertSpec:
    """Critical when any member is (a measured asymmetry, a critical finding), else warning."""
    severity = "critical" if any(m.severity == "critical" for m in members) else "warning"
    labels = {
        "alertname": PATH_ASYMMETRIC,
        "site": site,
        "circuit": circuit,
        "severity": severity,
    }
    kinds = sorted({m.kind for m in members})
    shown = sorted(members, key=lambda m: (m.kind, m.agent, m.target))
    lines: list[str] = []
    for m in shown:
        lines.extend(m.evidence)
    pairs = sorted({(m.agent, m.target + _over(m.family)) for m in members})
    return AlertSpec(
        labels,
        {
            "summary": f"Asymmetric routing at {site} (circuit {circuit}): "
            f"{len(pairs)} agent/target pair(s), {'+'.join(kinds)}",
            "description": "Traffic leaves and returns by different paths; a stateful "
            "firewall drops the return traffic. Affected: "
            + ", ".join(f"{a}->{t}" for a, t in pairs[:20]),
            "evidence": evidence_text(lines),
            "runbook_url": links.runbook(PATH_ASYMMETRIC),
            "dashboard_url": links.dashboard(site=site, circuit=circuit),
        },
    )


def redundancy_lost(site: str, circuit: str, evidence: Sequence[str], links: Links) -> AlertSpec:
    """One per site and circuit; `evidence` names the link still in use and the flows counted."""
    labels = {
        "alertname": REDUNDANCY_LOST,
        "site": site,
        "circuit": circuit,
        "severity": "warning",
    }
    return AlertSpec(
        labels,
        {
            "summary": f"Circuit {circuit} at {site} runs on one link: redundancy lost",
            "description": "Every flow of the site's agents to the circuit crossed one link "
            "(active-active), or the standby link carries the traffic (active-standby), in "
            "consecutive reports. Traffic still flows; one more failure takes the circuit "
            "down. It resolves when both links (or the primary) carry traffic again.",
            "evidence": evidence_text(evidence),
            "runbook_url": links.runbook(REDUNDANCY_LOST),
            "dashboard_url": links.dashboard(site=site, circuit=circuit),
        },
    )


def route_filter_excludes(
    site: str,
    circuit: str,
    community: str,
    service: str | None,
    region: str | None,
    route_filter: str | None,
    evidence: Sequence[str],
    links: Links,
) -> AlertSpec:
    """One per site, circuit and community; `evidence` names the agents and targets it keeps off."""
    labels = {
        "alertname": ROUTE_FILTER_EXCLUDES,
        "site": site,
        "circuit": circuit,
        "community": community,
        "severity": "warning",
    }
    what = f"{community} ({service})" if service else community
    rf = f"route filter {route_filter}" if route_filter else "the route filter"
    return AlertSpec(
        labels,
        {
            "summary": f"{rf} of circuit {circuit} at {site} lacks community {what}: "
            "its destinations go over the internet",
            "description": "Microsoft advertises over a circuit only the prefixes of the BGP "
            "communities its route filter allows. No other circuit of the site advertises "
            f"these destinations{f' (region {region})' if region else ''}, so they leave "
            f"via the internet edge. Add {community} to {rf}, or expect the internet for "
            "these targets. It resolves when no agent of the site reports the exclusion.",
            "evidence": evidence_text(evidence),
            "runbook_url": links.runbook(ROUTE_FILTER_EXCLUDES),
            "dashboard_url": links.dashboard(site=site, circuit=circuit),
        },
    )
