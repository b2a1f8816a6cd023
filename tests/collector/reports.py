"""Report documents (erpath.report/2) for collector tests: a site with one circuit and one
internet edge."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

SITE_FACTS = {
    "circuits": [
        {
            "name": "ams-1",
            "location": "Amsterdam",
            "sku": "standard",
            "primary_subnet": "203.0.113.0/30",
            "secondary_subnet": "203.0.113.4/30",
            "ce_addresses": ["203.0.113.1", "203.0.113.5"],
            "advertised_prefixes": ["198.51.100.0/28"],
        }
    ],
    "internet_edges": [
        {"name": "ams-inet", "nat_addresses": ["192.0.2.10"], "hop_addresses": ["192.0.2.1"]}
    ],
}

_ids = itertools.count(1)


def msee_hop(circuit: str, link: str | None) -> dict[str, Any]:
    address = "203.0.113.2" if link != "secondary" else "203.0.113.6"
    return {
        "kind": "msee-hop",
        "text": f"hop 3 {address} is the MSEE of circuit {circuit} ({link})",
        "circuit": circuit,
        "link": link,
        "ttl": 3,
        "address": address,
    }


def er(
    circuit: str | None = "ams-1",
    link: str | None = "primary",
    links_seen: dict[str, int] | None = None,
    msee_flows: int | None = None,
) -> dict[str, Any]:
    """An ExpressRoute verdict; `links_seen` {link: flows} (default: one flow on `link`)."""
    seen = links_seen if links_seen is not None else ({link: 1} if link else {})
    return {
        "class": "expressroute",
        "circuit": circuit,
        "link": link,
        "egress": None,
        "evidence": [msee_hop(circuit, link)] if circuit else [],
        "links_seen": [{"link": k, "flows": n} for k, n in seen.items()],
        "msee_flows": sum(seen.values()) if msee_flows is None else msee_flows,
    }


def inet(edge: str = "ams-inet") -> dict[str, Any]:
    return {
        "class": "internet",
        "circuit": None,
        "link": None,
        "egress": edge,
        "evidence": [
            {
                "kind": "edge-hop",
                "text": f"egress via internet edge {edge} (NAT 192.0.2.10)",
                "egress": edge,
                "ttl": 2,
                "address": "192.0.2.1",
            }
        ],
    }


def unknown() -> dict[str, Any]:
    return {
        "class": "unknown",
        "circuit": None,
        "link": None,
        "egress": None,
        "evidence": [{"kind": "unknown", "text": "no hop answered", "name": "path"}],
    }


def finding(
    kind: str = "asymmetric-nat",
    severity: str = "critical",
    circuit: str | None = "ams-1",
    predicted_only: bool = False,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "severity": severity,
        "circuit": circuit,
        "predicted_only": predicted_only,
        "evidence": [
            {
                "kind": "advertised",
                "text": f"NAT 192.0.2.10 of ams-inet lies in 192.0.2.0/28 advertised over {circuit}",
                "circuit": circuit,
                "prefix": "192.0.2.0/28",
                "address": "192.0.2.10",
            }
        ],
        "fix": f"stop advertising 192.0.2.0/28 over {circuit}",
    }


def result(
    target: str,
    path: dict[str, Any],
    *,
    address: str = "198.18.1.10",
    role: str = "api",
    expected: str | None = None,
    asns: tuple[int, ...] = (65001, 12076, 8075),
    findings: list[dict[str, Any]] | None = None,
    connect_s: float = 0.012,
    prefer: list[str] | None = None,
) -> dict[str, Any]:
    hops = [
        {
            "ttl": i + 1,
            "replies": [
                {
                    "address": f"10.0.{i}.1",
                    "rtt_s": 0.001 * (i + 1),
                    "kind": "time-exceeded",
                    "asn": asn,
                }
            ],
        }
        for i, asn in enumerate(asns)
    ]
    verdict = {k: v for k, v in path.items()}
    verdict["confidence"] = 0.9
    if expected is not None:
        verdict["expected"] = expected
        verdict["matches_expected"] = expected == path["class"]
    out = {
        "target": target,
        "role": role,
        "port": 443,
        "address": address,
        "dns": {"addresses": [address], "duration_s": 0.004},
        "tcp": {"port": 443, "state": "open", "method": "connect", "connect_s": connect_s},
        "trace": {"protocol": "tcp", "flow": 1, "reached": True, "hops": hops},
        "verdict": verdict,
        "findings": findings or [],
    }
    if prefer is not None:
        out["prefer"] = prefer
    return out


def report(
    agent: str,
    seq: int,
    results: list[dict[str, Any]],
    *,
    site: str = "ams",
    role: str = "branch",
    facts: dict[str, Any] | None = None,
    interval_s: float = 30.0,
    report_id: str | None = None,
    msee_probes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    doc = {
        "schema": "erpath.report/2",
        "id": report_id or str(uuid.uuid4()),
        "seq": seq,
        "agent": {"id": agent, "site": site, "role": role, "version": "0.1.0", "hostname": agent},
        "started_at": "2024-05-01T10:00:00Z",
        "duration_s": 2.5,
        "interval_s": interval_s,
        "site": SITE_FACTS if facts is None else facts,
        "health": {"cycle_s": 2.5, "spool_reports": 0, "dropped_reports_total": 0},
        "results": results,
    }
    if msee_probes is not None:
        doc["msee_probes"] = msee_probes
    return doc


def simple(
    agent: str, seq: int, path: dict[str, Any], target: str = "api.powerapps.com", **kw: Any
) -> dict[str, Any]:
    keys = ("address", "expected", "asns", "findings", "role", "prefer")
    rkw = {k: kw.pop(k) for k in keys if k in kw}
    return report(agent, seq, [result(target, path, **rkw)], **kw)
