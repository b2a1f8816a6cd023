"""`erpath-agent probe once` on the lab's IPv6 plane (issue 15 acceptance): real packets.

ipv6-er: IPv6 goes over circuit ams-er-1 (its MSEE is 2001:db8:e::2, the
second address of the primary /126) while IPv4 goes over the internet.
ipv6-asymmetric: the branch's IPv6 /52 is advertised over the circuit while
IPv6 leaves over the internet; the datacenter firewall drops the replies
Microsoft sends back over the circuit, so IPv6 TCP from the branch times out
and users fall back to IPv4 (which goes over the circuit).
"""

from __future__ import annotations

import ipaddress

import pytest

from tests.lab import plan

from .test_cycle_lab import (
    by_target,
    debian_traceroute,
    first_replies,
    kinds,
    probe_once,
    verdict,
    without_trailing_silence,
)

pytestmark = pytest.mark.lab

SERVICE = "make.powerapps.com"
SERVICE4, SERVICE6 = "198.19.16.10", "2001:db8:19:16::10"
MSEE1P6 = plan.link_between("ce1", "msee1p").address6("msee1p")
PRIMARY_126 = ipaddress.ip_network("2001:db8:e::/126")
BRANCH_PREFIX6 = "2001:db8:a:1000::/52"


def by_family(doc: dict, target: str) -> dict[int, dict]:
    return {
        ipaddress.ip_address(r["address"]).version: r
        for r in doc["results"]
        if r["target"] == target
    }


def family_evidence(result: dict) -> dict:
    (e,) = [e for e in result["verdict"]["evidence"] if e["kind"] == "family"]
    return e


def test_ipv6_er_both_families(lab, lab_scenario):
    """IPv6 over the circuit (the MSEE hop inside the /126), IPv4 over the internet."""
    lab_scenario("ipv6-er")
    assert MSEE1P6 == "2001:db8:e::2" and ipaddress.ip_address(MSEE1P6) in PRIMARY_126
    _, doc, _ = probe_once(lab, "branch", "--family", "both", SERVICE, config="branch")
    results = by_family(doc, SERVICE)
    assert set(results) == {4, 6}
    v6, v4 = results[6], results[4]
    assert (v6["address"], v4["address"]) == (SERVICE6, SERVICE4)
    assert verdict(v6)[:3] == ("expressroute", "ams-er-1", "primary")
    msee = [e for e in v6["verdict"]["evidence"] if e["kind"] == "msee-hop"]
    assert [(e["address"], e["circuit"]) for e in msee] == [(MSEE1P6, "ams-er-1")]
    assert ipaddress.ip_address(msee[0]["address"]) in PRIMARY_126
    assert v6["tcp"]["state"] == "open" and v6["trace"]["reached"]
    assert verdict(v4)[0] == "internet" and verdict(v4)[3] == "ams-inet"
    assert v4["tcp"]["state"] == "open"
    # The edge's /48 covers both /52s on the circuit: one finding, both /52s.
    pools = [f for f in v6["findings"] if f["kind"] == "nat-pool-on-internet"]
    assert len(pools) == 1, pools
    assert {e["prefix"] for e in pools[0]["evidence"] if e["kind"] == "advertised"} == {
        "2001:db8:a:1000::/52",
        "2001:db8:a:2000::/52",
    }
    # Both results say which family users get: IPv6, whose handshake succeeded.
    for r in (v6, v4):
        assert family_evidence(r)["address"] == SERVICE6, r["verdict"]["evidence"]


def test_ipv6_er_preferred_measures_what_users_get(lab, lab_scenario):
    lab_scenario("ipv6-er")
    _, doc, _ = probe_once(lab, "branch", SERVICE, config="branch")
    (r,) = by_target(doc).values()
    assert r["address"] == SERVICE6
    assert verdict(r)[:3] == ("expressroute", "ams-er-1", "primary")
    e = family_evidence(r)
    assert e["address"] == SERVICE6 and "over IPv6" in e["text"]


def test_ipv6_asymmetric_both_families(lab, lab_scenario):
    """IPv6 leaves over the internet with a source the circuit advertises: the handshake dies."""
    lab = lab_scenario("ipv6-asymmetric")
    before = lab.firewall_drops()
    _, doc, _ = probe_once(lab, "branch", "--family", "both", SERVICE, config="branch")
    assert lab.firewall_drops() > before  # the replies really died at the firewall
    results = by_family(doc, SERVICE)
    v6, v4 = results[6], results[4]
    assert verdict(v6)[0] == "internet" and verdict(v6)[3] == "ams-inet"
    assert v6["tcp"]["state"] == "filtered" and not v6["trace"]["reached"]
    assert {"asymmetric-nat", "handshake-blackhole"} <= kinds(v6)
    nat = next(f for f in v6["findings"] if f["kind"] == "asymmetric-nat")
    assert (nat["severity"], nat["circuit"]) == ("critical", "ams-er-1")
    adverts = [e for e in nat["evidence"] if e["kind"] == "advertised"]
    assert [(e["prefix"], e["circuit"]) for e in adverts] == [(BRANCH_PREFIX6, "ams-er-1")]
    assert ipaddress.ip_address(adverts[0]["address"]) in ipaddress.ip_network(BRANCH_PREFIX6)
    assert nat["fix"]
    # IPv4 of the same name goes over the circuit and works; its NAT pool is
    # not advertised, and the edge's IPv6 prefix is no IPv4 flow's business.
    assert verdict(v4)[:3] == ("expressroute", "ams-er-1", "primary")
    assert v4["tcp"]["state"] == "open"
    assert "nat-pool-on-internet" not in kinds(v4), v4["findings"]


def test_ipv6_asymmetric_preferred_falls_back_to_ipv4(lab, lab_scenario):
    lab_scenario("ipv6-asymmetric")
    rc, doc, _ = probe_once(lab, "branch", SERVICE, config="branch")
    (r,) = by_target(doc).values()
    assert r["address"] == SERVICE4 and r["tcp"]["state"] == "open"
    assert verdict(r)[:3] == ("expressroute", "ams-er-1", "primary")
    assert family_evidence(r)["address"] == SERVICE4
    blackhole = next(f for f in r["findings"] if f["kind"] == "ipv6-blackhole")
    addresses = {e["address"] for e in blackhole["evidence"]}
    assert {SERVICE6, SERVICE4} <= addresses
    assert rc == 1  # a warning users feel: IPv6 first, then the fallback wait


HOP_TARGETS = ("make.powerapps.com", "content.powerapps.com", "login.microsoftonline.com")


@pytest.mark.parametrize("scenario", ["ipv6-er", "ipv6-asymmetric"])
def test_ipv6_hops_equal_traceroute_and_the_model(lab, lab_scenario, scenario):
    """Rate limits off, ECMP off (one ISP: no flow label or port decides a fork).

    The agent's IPv6 hops equal `traceroute -6 -T -p 443` from the same source
    port, and the path model's (tests/lab/pathsim.py).
    """
    lab = lab_scenario(scenario)
    with lab.options(rate_limit=False, ecmp=False):
        _, doc, _ = probe_once(lab, "branch", "--family", "6", *HOP_TARGETS, config="branch")
        assert {r["target"] for r in doc["results"]} == set(HOP_TARGETS)
        for r in doc["results"]:
            assert ipaddress.ip_address(r["address"]).version == 6, r["address"]
            ours = first_replies(r)
            theirs, output = debian_traceroute(lab, "branch", r, "-6")
            model = without_trailing_silence(lab.expected_hops(None, "branch", r["address"]))
            assert ours == theirs == model, (r["target"], ours, output, model)


def test_ipv6_hops_of_every_lab_target_equal_the_model(lab, lab_scenario):
    """All lab targets over IPv6 at once, rate limits and ECMP off: every trace is the model's."""
    lab = lab_scenario("ipv6-er")
    with lab.options(rate_limit=False, ecmp=False):
        names = [t["name"] for t in lab.env()["targets"] if t.get("address6")]
        _, doc, _ = probe_once(lab, "branch", "--family", "6", *names, config="branch")
        wrong = {}
        for r in doc["results"]:
            ours = first_replies(r)
            model = without_trailing_silence(lab.expected_hops(None, "branch", r["address"]))
            if ours != model or verdict(r)[0] == "unknown":
                wrong[r["address"]] = (verdict(r)[0], ours, model)
        assert not wrong, (sorted(wrong), wrong)
