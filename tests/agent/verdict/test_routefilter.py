"""Route filters in the verdict: the expected path, and the findings that explain an internet path.

The site and results are test_classify's; the communities are a small
`list-service-communities` document over the same addresses: PP_WE in
Azure West Europe (12076:51002), PP_EUS in Azure East US (12076:51004),
an Exchange address in 12076:5010, which this subscription may not use.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.report import SiteFacts
from agent.verdict.classify import classify
from agent.verdict.communities import BgpCommunities, CommunitiesError
from agent.verdict.findings import find
from tests.agent.verdict.test_classify import (
    AFD,
    AMS1,
    AMS2,
    BRANCH_GW,
    ER_PRIMARY,
    INET,
    INTERNET,
    ISP,
    MS,
    MS_CORE,
    PP_EUS,
    PP_WE,
    TAGS,
    result,
    trace,
)

EXCHANGE = "198.18.50.5"
OUTSIDE = "198.18.99.5"  # Microsoft's, but in no community


def _service(name: str, community: str, value: str, prefixes: list[str], *, authorized=True):
    return {
        "name": name,
        "serviceName": name,
        "type": "Microsoft.Network/bgpServiceCommunities",
        "bgpCommunities": [
            {
                "communityName": community,
                "communityValue": value,
                "communityPrefixes": prefixes,
                "isAuthorizedToUse": authorized,
                "serviceGroup": "Azure" if name.startswith("Azure") else "O365",
                "serviceSupportedRegion": "Global",
            }
        ],
    }


COMMUNITIES = BgpCommunities.from_document(
    [
        _service("AzureWestEurope", "Azure West Europe", "12076:51002", ["198.18.10.0/24"]),
        _service("AzureEastUS", "Azure East US", "12076:51004", ["198.18.30.0/24"]),
        _service("Exchange", "Exchange", "12076:5010", ["198.18.50.0/24"], authorized=False),
    ],
    source="synthetic",
)

WE_ONLY = replace(AMS1, route_filter="rf-ams", route_filter_communities=("12076:51002",))
NOTHING = replace(AMS2, route_filter="rf-ams2", route_filter_communities=())
SITE = SiteFacts(circuits=(WE_ONLY, NOTHING), internet_edges=(INET,))


def classified(r, site=SITE, *, communities=COMMUNITIES, expect=None):
    v = classify(r, site, TAGS, agent_role="branch", expect=expect, communities=communities)
    return v, find(r, v, site, tags=TAGS, communities=communities)


def expectation(v):
    return next(e for e in v.evidence if e.kind == "expectation")


def only(fs, kind):
    hits = [f for f in fs if f.kind == kind]
    assert len(hits) == 1, [f.kind for f in fs]
    return hits[0]


# --------------------------------------------------------------------------- the communities file


def test_communities_lookup_longest_prefix_and_region_from_the_name():
    doc = [
        _service("AzureWestEurope", "Azure West Europe", "12076:51002", ["198.18.0.0/16"]),
        _service("Exchange", "Exchange", "12076:5010", ["198.18.50.0/24"]),
    ]
    c = BgpCommunities.from_document(doc)
    hits = c.lookup("198.18.50.9")
    assert [(h.community.value, h.prefix) for h in hits] == [
        ("12076:5010", "198.18.50.0/24"),
        ("12076:51002", "198.18.0.0/16"),
    ]
    assert c.get("12076:51002").region == "westeurope"
    assert c.get("12076:5010").region is None
    assert c.lookup("192.0.2.1") == ()
    assert c.lookup("not an address") == ()


def test_a_service_named_azure_something_is_no_region():
    doc = [
        _service("AzureActiveDirectory", "Azure Active Directory", "12076:5060", ["198.19.20.0/24"])
    ]
    assert BgpCommunities.from_document(doc).get("12076:5060").region is None


def test_communities_rest_shape_reads_the_same():
    rest = {
        "value": [
            {"name": s["name"], "properties": {k: v for k, v in s.items() if k != "name"}}
            for s in [_service("AzureEastUS", "Azure East US", "12076:51004", ["2001:db8::/32"])]
        ]
    }
    c = BgpCommunities.from_document(rest)
    (hit,) = c.lookup("2001:db8::1")
    assert (hit.community.value, hit.community.region, hit.prefix) == (
        "12076:51004",
        "eastus",
        "2001:db8::/32",
    )


@pytest.mark.parametrize(
    "doc, problem",
    [
        ({"changeNumber": 1, "values": []}, "is not a list of BGP service communities"),
        ([], "is not a list of BGP service communities"),
        (
            [{"name": "X", "bgpCommunities": [{"communityValue": "five"}]}],
            "service X: communityValue 'five' is not ASN:value",
        ),
        (
            [
                {
                    "name": "X",
                    "bgpCommunities": [{"communityValue": "1:2", "communityPrefixes": ["x"]}],
                }
            ],
            "community 1:2: 'x' is not an IP prefix",
        ),
        ([{"name": "X", "bgpCommunities": []}], "lists no BGP community"),
    ],
)
def test_communities_file_problems_are_named(doc, problem):
    with pytest.raises(CommunitiesError) as e:
        BgpCommunities.from_document(doc, source="c.json")
    assert problem in e.value.problem


# --------------------------------------------------------------------------- expectation


def test_allowed_community_expects_the_circuit_with_community_service_and_region():
    v, _ = classified(ER_PRIMARY)
    e = expectation(v)
    assert v.expected == "expressroute" and v.matches_expected
    assert (e.circuit, e.community, e.service, e.region, e.prefix, e.address) == (
        "ams-1",
        "12076:51002",
        "Azure West Europe",
        "westeurope",
        "198.18.10.0/24",
        PP_WE,
    )
    assert e.text == (
        "expected expressroute: 198.18.10.5 is in community 12076:51002 (Azure West Europe, "
        "region westeurope), which route filter rf-ams of circuit ams-1 allows"
    )


def test_community_no_filter_allows_expects_the_internet():
    v, _ = classified(result(PP_EUS, hops=trace(BRANCH_GW, "10.1.0.9", ("198.18.100.1", ISP))))
    e = expectation(v)
    assert v.expected == "internet" and v.matches_expected
    assert (e.community, e.service, e.region, e.circuit) == (
        "12076:51004",
        "Azure East US",
        "eastus",
        None,
    )
    assert "which Microsoft advertises over none of circuit ams-1, ams-2" in e.text


def test_address_in_no_community_expects_the_internet():
    v, _ = classified(result(OUTSIDE))
    e = expectation(v)
    assert v.expected == "internet"
    assert e.community is None and e.address == OUTSIDE
    assert "is in no BGP community of Microsoft peering" in e.text


def test_target_expect_wins_over_route_filters():
    v, _ = classified(result(PP_EUS), expect="expressroute")
    assert v.expected == "expressroute"
    assert expectation(v).text == "expected expressroute: configured for this target"


def test_failover_order_picks_among_advertising_circuits():
    both = replace(NOTHING, route_filter_communities=("12076:51002",))
    site = SiteFacts(circuits=(WE_ONLY, both), internet_edges=(INET,), prefer=("ams-2", "ams-1"))
    v, _ = classified(ER_PRIMARY, site)
    e = expectation(v)
    assert e.circuit == "ams-2"
    assert e.text.endswith("first of them in the failover order (ams-2, ams-1)")
    # the target's own order comes before the site's
    v, _ = classified(replace(ER_PRIMARY, prefer=("ams-1",)), site)
    assert expectation(v).circuit == "ams-1"


def test_no_route_filter_known_keeps_todays_rule_and_says_so():
    plain = SiteFacts(circuits=(AMS1, AMS2), internet_edges=(INET,))
    for site, communities in ((plain, COMMUNITIES), (SITE, None)):
        v, fs = classified(result(PP_EUS), site, communities=communities)
        assert v.expected == "expressroute"
        assert expectation(v).text == (
            "expected expressroute: the site has circuit ams-1, ams-2 (no route filter known: "
            "every Microsoft prefix assumed advertised)"
        )
        assert not [f for f in fs if f.kind in ("route-filter-excludes", "advertised-but-internet")]


def test_a_circuit_without_a_known_filter_is_assumed_to_advertise():
    site = SiteFacts(circuits=(NOTHING, AMS1), internet_edges=(INET,))
    v, _ = classified(result(PP_EUS), site)
    e = expectation(v)
    assert v.expected == "expressroute" and e.circuit == "ams-1" and e.community is None
    assert "circuit ams-1 has no route filter known" in e.text


def test_cdn_target_stays_cdn_and_gets_no_route_filter_finding():
    v, fs = classified(
        result(AFD, hops=trace(BRANCH_GW, "10.1.0.9", ("198.18.100.1", ISP), (AFD, MS)))
    )
    assert v.expected == "cdn"
    assert [f for f in fs if f.kind.startswith("route-filter")] == []


# --------------------------------------------------------------------------- findings


def test_route_filter_excludes_names_community_service_region_and_fix():
    r = result(PP_EUS, hops=trace(BRANCH_GW, "10.1.0.9", ("198.18.100.1", ISP), MS_CORE))
    _, fs = classified(r)
    excludes = [f for f in fs if f.kind == "route-filter-excludes"]
    assert [f.circuit for f in excludes] == ["ams-1", "ams-2"]
    f = excludes[0]
    assert f.severity == "warning"
    e = f.evidence[0]
    assert (e.kind, e.circuit, e.name, e.community, e.service, e.region, e.prefix, e.address) == (
        "route-filter",
        "ams-1",
        "rf-ams",
        "12076:51004",
        "Azure East US",
        "eastus",
        "198.18.30.0/24",
        PP_EUS,
    )
    assert e.text == (
        "198.18.30.5 is in 198.18.30.0/24, community 12076:51004 (Azure East US, region eastus), "
        "which route filter rf-ams of circuit ams-1 does not allow"
    )
    assert f.fix.startswith("add community 12076:51004 (Azure East US) to route filter rf-ams")
    assert f.fix.endswith(
        "; circuit ams-1 is Standard at Amsterdam: eastus also needs the Premium add-on"
    )
    # in the circuit's own geopolitical region, adding the community is all it takes
    _, fs = classified(ER_PRIMARY)
    f = only(fs, "route-filter-excludes")
    assert f.fix.endswith("or expect the internet for this target")


def test_route_filter_excludes_is_info_when_another_circuit_carries_it():
    site = SiteFacts(circuits=(WE_ONLY, NOTHING), internet_edges=(INET,))
    _, fs = classified(ER_PRIMARY, site)
    f = only(fs, "route-filter-excludes")
    assert (f.circuit, f.severity) == ("ams-2", "info")
    assert "circuit ams-1 advertises it, so this matters on failover" in f.evidence[1].text


def test_advertised_but_internet_points_at_the_sites_routing():
    _, fs = classified(INTERNET)
    f = only(fs, "advertised-but-internet")
    assert (f.severity, f.circuit) == ("warning", "ams-1")
    e = f.evidence[0]
    assert (e.kind, e.community, e.service, e.region, e.circuit) == (
        "route-filter",
        "12076:51002",
        "Azure West Europe",
        "westeurope",
        "ams-1",
    )
    assert f.evidence[-1].kind == "path" and f.evidence[-1].name == "internet"
    assert "local internet breakout" in f.fix


def test_a_target_sent_to_the_internet_on_purpose_gets_no_route_filter_finding():
    r = result(PP_EUS, hops=trace(BRANCH_GW, "10.1.0.9", ("198.18.100.1", ISP), MS_CORE))
    for target in (r, INTERNET):
        v = classify(
            target, SITE, TAGS, agent_role="branch", expect="internet", communities=COMMUNITIES
        )
        fs = find(target, v, SITE, tags=TAGS, communities=COMMUNITIES, expect="internet")
        assert fs == ()
    # expected over ExpressRoute by configuration: the filter is the explanation
    v = classify(r, SITE, TAGS, agent_role="branch", expect="expressroute", communities=COMMUNITIES)
    fs = find(r, v, SITE, tags=TAGS, communities=COMMUNITIES, expect="expressroute")
    assert [f.kind for f in fs].count("route-filter-excludes") == 2


def test_advertised_and_over_the_circuit_is_no_finding():
    _, fs = classified(ER_PRIMARY, SiteFacts(circuits=(WE_ONLY,), internet_edges=(INET,)))
    assert fs == ()


def test_allowed_but_not_authorized_community():
    rf = replace(WE_ONLY, route_filter_communities=("12076:51002", "12076:5010"))
    _, fs = classified(result(EXCHANGE), SiteFacts(circuits=(rf,), internet_edges=(INET,)))
    f = only(fs, "community-not-authorized")
    e = f.evidence[0]
    assert (f.severity, f.circuit, e.community, e.service, e.region) == (
        "warning",
        "ams-1",
        "12076:5010",
        "Exchange",
        None,
    )
    assert "isAuthorizedToUse is false" in e.text
    assert "remove it from route filter rf-ams" in f.fix
    v, _ = classified(result(EXCHANGE), SiteFacts(circuits=(rf,), internet_edges=(INET,)))
    assert v.expected == "internet"  # Microsoft does not advertise it


def test_other_geography_on_a_standard_circuit_extends_premium_required():
    rf = replace(WE_ONLY, route_filter_communities=("12076:51002", "12076:51004"))
    site = SiteFacts(circuits=(rf,), internet_edges=(INET,))
    r = result(PP_EUS, hops=trace(BRANCH_GW, "10.1.0.9", ("198.18.100.1", ISP), MS_CORE))
    # without service tags, the community's region alone tells
    v = classify(r, site, None, agent_role="branch", expect=None, communities=COMMUNITIES)
    fs = find(r, v, site, tags=None, communities=COMMUNITIES)
    assert v.expected == "internet"
    f = only(fs, "premium-required")
    e = f.evidence[0]
    assert (e.kind, e.community, e.region, e.circuit) == (
        "route-filter",
        "12076:51004",
        "eastus",
        "ams-1",
    )
    assert "is Standard at Amsterdam, another geopolitical region" in e.text
    assert f.fix.startswith("enable the ExpressRoute Premium add-on on circuit ams-1")
    # Premium: advertised, so the internet path is the site's routing
    premium = SiteFacts(circuits=(replace(rf, sku="premium"),), internet_edges=(INET,))
    v = classify(r, premium, None, agent_role="branch", expect=None, communities=COMMUNITIES)
    fs = find(r, v, premium, tags=None, communities=COMMUNITIES)
    assert v.expected == "expressroute"
    assert [f.kind for f in fs] == ["advertised-but-internet"]


def test_premium_from_service_tags_is_not_doubled_by_the_community():
    rf = replace(WE_ONLY, route_filter_communities=("12076:51002", "12076:51004"))
    site = SiteFacts(circuits=(rf,), internet_edges=(INET,))
    r = result(PP_EUS, hops=trace(BRANCH_GW, "10.1.0.9", ("198.18.100.1", ISP), MS_CORE))
    _, fs = classified(r, site)
    assert [f.kind for f in fs].count("premium-required") == 1
