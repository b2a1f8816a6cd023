"""Report documents for collector tests: a site with one circuit and one internet edge."""

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


def er(circuit: str = "ams-1", link: str = "primary") -> dict[str, Any]:
    return {
        "class": "expressroute",
        "circuit": circuit,
        "link": link,
        "egress": None,
        "evidence": [f"hop 3 203.0.113.2 is the MSEE of circuit {circuit} ({link})"],
    }


def inet(edge: str = "ams-inet") -> dict[str, Any]:
    return {
        "class": "internet",
        "circuit": None,
        "link": None,
        "egress": edge,
        "evidence": [f"egress via internet edge {edge} (NAT 192.0.2.10)"],
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
    return {
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
) -> dict[str, Any]:
    return {
        "schema": "erpath.report/1",
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


def simple(
    agent: str, seq: int, path: dict[str, Any], target: str = "api.powerapps.com", **kw: Any
) -> dict[str, Any]:
    rkw = {k: kw.pop(k) for k in ("address", "expected", "asns", "findings", "role") if k in kw}
    return report(agent, seq, [result(target, path, **rkw)], **kw)
