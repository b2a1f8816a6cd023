"""What one report may ask of the collector: caps checked after decoding.

The decoder (agent/report.py) bounds every array at 1,024 items, which still
lets one report declare 1,024 circuits of 1,024 advertised prefixes each and
1,024 reverse results: each asymmetry evaluation (prefixes x reverse results,
on the writer thread, every few seconds) then ran for minutes and stalled
ingest for every agent.  A real site has a few circuits, a few public NAT
prefixes, and one result per (target, address) of its target list, so these
caps are far above any real report and far below the costly ones.  A report
beyond them gets 422 naming the field; `docs/collector.md` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.report import Report

MAX_RESULTS = 256  # per report: targets x addresses (the agent probes one address a name)
MAX_CIRCUITS = 16  # per site
MAX_INTERNET_EDGES = 16  # per site
MAX_PREFIXES = 256  # advertised prefixes, all circuits together (Microsoft takes 200 a session)
MAX_NAT_ADDRESSES = 64  # NAT addresses, all internet edges together


@dataclass(frozen=True, slots=True)
class Excess:
    field: str  # JSON pointer into the report
    message: str


def excesses(report: Report) -> list[Excess]:
    """Every cap the report goes beyond, with the field that does."""
    out = []
    site = report.site
    for field, count, cap, what in (
        ("/results", len(report.results), MAX_RESULTS, "results"),
        ("/site/circuits", len(site.circuits), MAX_CIRCUITS, "circuits"),
        ("/site/internet_edges", len(site.internet_edges), MAX_INTERNET_EDGES, "internet edges"),
    ):
        if count > cap:
            out.append(Excess(field, f"has {count} {what}; a report may carry at most {cap}"))
    total = 0
    for i, circuit in enumerate(site.circuits):
        total += len(circuit.advertised_prefixes)
        if total > MAX_PREFIXES:
            out.append(
                Excess(
                    f"/site/circuits/{i}/advertised_prefixes",
                    f"brings the site's advertised prefixes to {total}; at most {MAX_PREFIXES}"
                    " over all circuits (aggregate them, e.g. one /24 for a NAT pool)",
                )
            )
            break
    total = 0
    for i, edge in enumerate(site.internet_edges):
        total += len(edge.nat_addresses)
        if total > MAX_NAT_ADDRESSES:
            out.append(
                Excess(
                    f"/site/internet_edges/{i}/nat_addresses",
                    f"brings the site's NAT addresses to {total}; at most {MAX_NAT_ADDRESSES}"
                    " over all internet edges",
                )
            )
            break
    return out
