"""Shared path: a trace cut short by rate-limited hops takes its path from a sibling's.

The site: circuit ams-1 (CE 10.1.0.1, primary /30 203.0.113.0/30, advertising
the NAT pool 192.0.2.0/28 -- and the internet edge's NAT address, as in the
lab's asymmetric-nat scenario), an internet edge ams-inet (inside hop
10.1.0.9, NAT 192.0.2.10).  Microsoft's prefixes: PowerPlatformInfra.WestEurope
198.18.10.0/24 inside AzureCloud 198.18.0.0/16, and 198.18.11.0/24 (in
AzureCloud only).  Results are classified by the real classifier.
"""

from __future__ import annotations

from dataclasses import replace

from agent.report import (
    Circuit,
    Hop,
    InternetEdge,
    Reply,
    Report,
    Result,
    RouteResult,
    SiteFacts,
    TcpResult,
    Trace,
    Verdict,
    report_from_dict,
    to_dict,
)
from agent.verdict import findings
from agent.verdict.classify import classify
from agent.verdict.servicetags import ServiceTags
from agent.verdict.sharedpath import (
    SHARED_PATH_FACTOR,
    KnownPrefix,
    first_per_prefix,
    infer,
    inferred,
    known_prefix,
)
from collector import state
from tests.agent.servicetags_doc import tag_entry, tags_document
from tests.collector.reports import report

AMS1 = Circuit(
    name="ams-1",
    location="Amsterdam",
    sku="standard",
    primary_subnet="203.0.113.0/30",
    secondary_subnet="203.0.113.4/30",
    ce_addresses=("10.1.0.1",),
    advertised_prefixes=("192.0.2.0/28",),
)
INET = InternetEdge(name="ams-inet", nat_addresses=("192.0.2.10",), hop_addresses=("10.1.0.9",))
SITE = SiteFacts(circuits=(AMS1,), internet_edges=(INET,))
TAGS = ServiceTags.from_document(
    tags_document(
        tag_entry("AzureCloud", ["198.18.0.0/16"]),
        tag_entry("PowerPlatformInfra.WestEurope", ["198.18.10.0/24"], region="westeurope"),
    )
)
WAN_GW = "10.0.0.1"
ROUTE = RouteResult(interface="wan", gateway=WAN_GW, source="10.0.0.10")
INTERNET_HOPS = {1: WAN_GW, 2: "10.1.0.9", 3: "198.51.100.1", 4: "198.18.0.2"}
ER_HOPS = {1: WAN_GW, 2: "10.1.0.1", 3: "203.0.113.2"}


def measured(
    target: str,
    address: str,
    hops: dict[int, str],
    *,
    route: RouteResult = ROUTE,
    tcp: str = "filtered",
    reached: bool = False,
) -> Result:
    """A classified result whose trace heard `hops` ({ttl: router})."""
    trace = Trace(
        protocol="tcp",
        flow=40000,
        reached=reached,
        hops=tuple(
            Hop(ttl, (Reply(address=a, rtt_s=0.001 * ttl, asn=_asn(a)),))
            for ttl, a in sorted(hops.items())
        ),
    )
    r = Result(
        target=target,
        role="api",
        port=443,
        address=address,
        route=route,
        tcp=TcpResult(port=443, state=tcp, method="raw"),  # type: ignore[arg-type]
        trace=trace,
    )
    return replace(r, verdict=reclassify(r))


def _asn(address: str) -> int | None:
    return (
        8075 if address.startswith("198.18.") else 64500 if address.startswith("198.51") else None
    )


def reclassify(r: Result) -> Verdict:
    return classify(r, SITE, TAGS, agent_role="branch", expect=None)


def run(*results: Result, tags: ServiceTags | None = TAGS) -> tuple[Result, ...]:
    return infer(results, SITE, tags, reclassify)


def path(r: Result) -> tuple:
    assert r.verdict is not None
    return (r.verdict.path_class, r.verdict.circuit, r.verdict.egress)


# --------------------------------------------------------------------------- inferred


def test_silent_edge_takes_the_internet_path_of_a_sibling_in_the_same_tag_prefix() -> None:
    full = measured("make.powerapps.com", "198.18.10.10", INTERNET_HOPS)
    short = measured("api.powerapps.com", "198.18.10.35", {1: WAN_GW})
    assert path(short) == ("unknown", None, None)

    out = run(full, short)

    assert out[0] == full  # the measured one is untouched
    got = out[1]
    assert path(got) == ("internet", None, "ams-inet")
    assert inferred(got.verdict) and not inferred(full.verdict)
    as_measured = reclassify(replace(short, trace=got.trace)).confidence
    assert got.verdict.confidence == round(
        min(as_measured, full.verdict.confidence) * SHARED_PATH_FACTOR, 2
    )
    assert got.verdict.confidence < full.verdict.confidence
    said = [e for e in got.verdict.evidence if e.kind == "shared-path"]
    # One fact per copied hop: the edge (2), the ISP (3) handing over to Microsoft (4).
    assert [e.ttl for e in said] == [2, 3, 4]
    for e in said:
        assert (e.name, e.address) == ("make.powerapps.com", "198.18.10.10")
        assert (e.prefix, e.tag) == ("198.18.10.0/24", "PowerPlatformInfra.WestEurope")
        assert (e.circuit, e.egress) == (None, "ams-inet")
        assert "hops at TTL 1 agree" in e.text
    # The copied hops are in the trace, marked shared; its own hop is not.
    hops = {h.ttl: h for h in got.trace.hops}
    assert [(t, h.shared, h.addresses) for t, h in sorted(hops.items())] == [
        (1, False, (WAN_GW,)),
        (2, True, ("10.1.0.9",)),
        (3, True, ("198.51.100.1",)),
        (4, True, ("198.18.0.2",)),
    ]
    # Findings follow from the inferred path as from a measured one.
    kinds = {f.kind for f in findings.find(got, got.verdict, SITE, tags=TAGS)}
    assert kinds == {f.kind for f in findings.find(full, full.verdict, SITE, tags=TAGS)}
    assert "asymmetric-nat" in kinds


def test_expressroute_path_is_inferred_without_a_link_seen() -> None:
    full = measured("make.powerapps.com", "198.18.10.10", ER_HOPS)
    short = measured("flow.microsoft.com", "198.18.10.14", {1: WAN_GW})
    got = run(full, short)[1]
    assert path(got) == ("expressroute", "ams-1", None)
    assert full.verdict.links_seen and not got.verdict.links_seen  # no flow of its own crossed
    said = [e for e in got.verdict.evidence if e.kind == "shared-path"]
    assert [(e.ttl, e.circuit, e.name) for e in said] == [
        (2, "ams-1", "make.powerapps.com"),
        (3, "ams-1", "make.powerapps.com"),
    ]


def test_a_destination_that_answered_beyond_the_silent_hops_is_inferred_too() -> None:
    """A CDN-like target reached at TTL 5 with every router silent: class measured, egress taken."""
    full = measured("a.example", "198.18.10.10", {**INTERNET_HOPS, 5: "198.18.10.10"}, reached=True)
    short = measured("b.example", "198.18.10.11", {5: "198.18.10.11"}, reached=True)
    got = run(full, short)[1]
    assert path(got) == ("internet", None, "ams-inet")
    assert "no TTL where both heard a router" in got.verdict.evidence[0].text


def test_another_isp_past_the_edge_is_ecmp_not_another_path() -> None:
    """Two ISPs load-share behind the edge: hops past the egress may differ."""
    full = measured("a.powerapps.com", "198.18.10.10", INTERNET_HOPS)
    other_isp = measured("b.powerapps.com", "198.18.10.11", {1: WAN_GW, 3: "198.51.100.5"})
    got = run(full, other_isp)[1]
    assert path(got) == ("internet", None, "ams-inet")
    assert [e.ttl for e in got.verdict.evidence if e.kind == "shared-path"] == [2, 4]
    # ...but a different router before the edge is another path.
    other_core = measured("c.powerapps.com", "198.18.10.12", {1: "10.0.0.99", 3: "198.51.100.5"})
    assert not inferred(run(full, other_core)[1].verdict)


def test_the_most_specific_known_prefix_is_the_one_shared() -> None:
    assert known_prefix("198.18.10.7", SITE, TAGS) == KnownPrefix(
        "198.18.10.0/24", "service-tag", "PowerPlatformInfra.WestEurope"
    )
    assert known_prefix("198.18.11.7", SITE, TAGS) == KnownPrefix(
        "198.18.0.0/16", "service-tag", "AzureCloud"
    )
    assert known_prefix("192.0.2.3", SITE, None) == KnownPrefix(
        "192.0.2.0/28", "advertised", "ams-1"
    )
    assert known_prefix("10.9.9.9", SITE, TAGS) is None


# --------------------------------------------------------------------------- not inferred


def test_nothing_is_inferred_across_prefixes_routes_or_disagreeing_hops() -> None:
    full = measured("make.powerapps.com", "198.18.10.10", INTERNET_HOPS)
    other_prefix = measured("x.azure.com", "198.18.11.10", {1: WAN_GW})  # AzureCloud /16 only
    other_route = measured(
        "y.powerapps.com", "198.18.10.20", {1: "10.0.9.1"}, route=replace(ROUTE, gateway="10.0.9.1")
    )
    other_hop = measured("z.powerapps.com", "198.18.10.30", {1: "10.0.0.99"})
    out = run(full, other_prefix, other_route, other_hop)
    assert [path(r) for r in out[1:]] == [("unknown", None, None)] * 3
    assert not any(inferred(r.verdict) for r in out)


def test_no_known_prefix_no_inference_not_even_in_the_same_slash_24() -> None:
    full = measured("make.powerapps.com", "198.18.10.10", INTERNET_HOPS)
    short = measured("api.powerapps.com", "198.18.10.35", {1: WAN_GW})
    assert path(run(full, short, tags=None)[1]) == ("unknown", None, None)


def test_a_prefix_split_between_paths_lends_none() -> None:
    internet = measured("a.powerapps.com", "198.18.10.10", INTERNET_HOPS)
    circuit = measured("b.powerapps.com", "198.18.10.11", ER_HOPS)
    short = measured("c.powerapps.com", "198.18.10.12", {1: WAN_GW})
    assert path(run(internet, circuit, short)[2]) == ("unknown", None, None)


def test_a_destination_nearer_than_the_deciding_hop_is_another_path() -> None:
    full = measured("a.powerapps.com", "198.18.10.10", INTERNET_HOPS)
    near = measured("b.powerapps.com", "198.18.10.11", {1: WAN_GW, 2: "198.18.10.11"}, reached=True)
    assert not inferred(run(full, near)[1].verdict)


def test_an_inferred_path_is_lent_to_no_one() -> None:
    full = measured("make.powerapps.com", "198.18.10.10", INTERNET_HOPS)
    first = run(full, measured("api.powerapps.com", "198.18.10.35", {1: WAN_GW}))[1]
    again = run(first, measured("flow.microsoft.com", "198.18.10.14", {1: WAN_GW}))
    assert path(again[1]) == ("unknown", None, None)


# --------------------------------------------------------------------------- trace order


def test_one_destination_per_route_and_prefix_is_traced_first() -> None:
    routes = {a: ROUTE for a in ("198.18.10.1", "198.18.10.2", "198.18.11.1", "10.9.9.9")}
    routes["198.18.10.3"] = replace(ROUTE, gateway="10.0.9.1")
    first, rest = first_per_prefix(
        ["198.18.10.1", "198.18.10.2", "198.18.10.3", "198.18.11.1", "10.9.9.9"],
        routes,
        SITE,
        TAGS,
    )
    assert first == ("198.18.10.1", "198.18.10.3", "198.18.11.1", "10.9.9.9")
    assert rest == ("198.18.10.2",)


# --------------------------------------------------------------------------- collector


def _report(seq: int, result: Result) -> Report:
    return report_from_dict(report("branch", seq, [to_dict(result)], facts=to_dict(SITE)))


def test_the_collector_sees_no_change_when_an_inferred_path_agrees_with_the_measured_one() -> None:
    full = measured("api.powerapps.com", "198.18.10.35", INTERNET_HOPS)
    short = measured("api.powerapps.com", "198.18.10.35", {1: WAN_GW})
    sibling = measured("make.powerapps.com", "198.18.10.10", INTERNET_HOPS)
    got = run(sibling, short)[1]
    assert inferred(got.verdict)

    (before,) = state.observations(_report(1, full))
    (after,) = state.observations(_report(2, got))
    assert before.key == after.key
    t1 = state.apply(None, before, 1, 0.0, confirm_reports=2)
    t2 = state.apply(t1.state, after, 2, 10.0, confirm_reports=2)
    assert t2.events == () and t2.flip is None
    assert not t2.signature_changed  # the copied hops are the measured path's
