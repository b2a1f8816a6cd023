"""The IPv6 plane, proven with traceroute -6 -T -p 443 -n, dig AAAA and TCP over IPv6.

ipv6-er: IPv6 over circuit 1 (the MSEE at ::2 of the /126), IPv4 over the
internet.  ipv6-asymmetric: the branch's IPv6 prefix is advertised over the
circuit but IPv6 leaves via the internet edge, so the datacenter firewall
drops the replies Microsoft sends back over the circuit.  In the IPv4
scenarios IPv6 is not routed at all.
"""

from __future__ import annotations

import pytest

from tests.lab import Lab, plan
from tests.lab.nsenter import read_sysctl

from .tools import dig, matches, tcp_connect, traceroute, trim

pytestmark = pytest.mark.lab

SERVICE6 = "2001:db8:19:16::10"  # make.powerapps.com
CDN6 = "2001:db8:19:128::10"  # content.powerapps.com
SERVICE = "198.19.16.10"
MSEE1P6 = plan.link_between("ce1", "msee1p").address6("msee1p")
BRANCH6 = plan.link_between("wan", "branch").address6("branch")


@pytest.fixture
def switch(lab: Lab, lab_scenario):
    """Switch scenario with ICMP rate limiting off (hop lists are compared)."""
    lab.set_rate_limit(False)
    return lab_scenario


@pytest.mark.parametrize("scenario", ["ipv6-er", "ipv6-asymmetric"])
def test_traceroute6_matches_the_model(switch, lab: Lab, scenario: str) -> None:
    switch(scenario)
    for src, dst in (
        ("branch", SERVICE6),
        ("branch", CDN6),
        ("dchost", SERVICE6),
        ("azure", BRANCH6),  # the reverse direction, new from outside
    ):
        expected = trim(lab.expected_hop_sets(scenario, src, dst))
        observed = traceroute(lab, src, dst)
        assert matches(observed, expected), (scenario, src, dst, observed, expected)


def test_ipv6_er_goes_over_the_circuit_and_ipv4_over_the_internet(switch, lab: Lab) -> None:
    lab_ = switch("ipv6-er")
    hops6 = set().union(*traceroute(lab_, "branch", SERVICE6))
    assert MSEE1P6 == "2001:db8:e::2"  # the /126's second address
    assert MSEE1P6 in hops6 and SERVICE6 in hops6
    hops4 = set().union(*traceroute(lab_, "branch", SERVICE))
    isp_hops = {plan.link_between(i, "inet").address(i) for i in ("isp1", "isp2")}
    assert hops4 & isp_hops and not hops4 & {"192.0.2.2", "192.0.2.6"}
    # The CDN is never on ExpressRoute, in either family.
    cdn6 = set().union(*traceroute(lab_, "branch", CDN6))
    assert MSEE1P6 not in cdn6 and CDN6 in cdn6
    for dst in (SERVICE6, CDN6, SERVICE):
        assert tcp_connect(lab_, "branch", dst) == "open", dst


def test_ipv6_asymmetric_handshake_dies_at_the_firewall(switch, lab: Lab) -> None:
    lab_ = switch("ipv6-asymmetric")
    before = lab_.firewall_drops()
    assert tcp_connect(lab_, "branch", SERVICE6) == "timeout"
    assert lab_.firewall_drops() > before
    trace = lab_.traces(None, "branch", SERVICE6)[0]
    assert not trace.reached and trace.hops[-1].why == "lost:dccore"
    # The datacenter's prefix is not on the circuit: its IPv6 returns the way it left.
    assert tcp_connect(lab_, "dchost", SERVICE6) == "open"
    # IPv4 of the same name still works (over the circuit), and so does the CDN.
    assert tcp_connect(lab_, "branch", SERVICE) == "open"
    assert tcp_connect(lab_, "branch", CDN6) == "open"


@pytest.mark.parametrize("scenario", ["ipv6-er", "ipv6-asymmetric"])
def test_dig_aaaa_over_ipv6(switch, lab: Lab, scenario: str) -> None:
    lab_ = switch(scenario)
    out = dig(lab_, "branch", plan.DNS_PUBLIC6, "AAAA", "make.powerapps.com", "+short")
    assert out.split() == [SERVICE6]
    chain = dig(lab_, "branch", plan.DNS_PUBLIC6, "AAAA", "content.powerapps.com", "+short")
    assert chain.split() == [
        "content-powerapps.azureedge.net.",
        "content-powerapps.afd.azureedge.net.",
        CDN6,
    ]
    # The split-horizon resolver's private endpoint is IPv4 only: no AAAA.
    split = dig(lab_, "dchost", plan.DNS_SPLIT6, "AAAA", "contoso.crm4.dynamics.com", "+short")
    assert split.split() == []
    a = dig(lab_, "dchost", plan.DNS_SPLIT6, "A", "contoso.crm4.dynamics.com", "+short")
    assert a.split() == [plan.SPLIT_PRIVATE_DATAVERSE]


def test_ipv4_scenarios_do_not_route_ipv6(lab: Lab) -> None:
    """Addresses on every link, no IPv6 route: users of a dual-stack name get IPv4."""
    assert lab.current_scenario == "er"
    assert tcp_connect(lab, "branch", SERVICE6) == "unreachable"
    assert tcp_connect(lab, "branch", SERVICE) == "open"
    out = dig(lab, "branch", plan.DNS_PUBLIC, "AAAA", "make.powerapps.com", "+short")
    assert out.split() == [SERVICE6]


def test_tls_answers_on_the_ipv6_service_address(switch, lab: Lab) -> None:
    lab_ = switch("ipv6-er")
    out = lab_.run(
        "branch",
        [
            "curl",
            "-sk",
            "-m",
            "5",
            "--resolve",
            f"make.powerapps.com:443:[{SERVICE6}]",
            "https://make.powerapps.com/",
        ],
        timeout=10,
    ).stdout
    assert out.strip() == f"erpath-lab svc {SERVICE6} make.powerapps.com"
    closed = tcp_connect(lab_, "branch", plan.CLOSED_ADDRESS6)
    assert closed == "refused"
    assert tcp_connect(lab_, "branch", plan.FILTERED_ADDRESS6, timeout_s=1.0) == "timeout"


def test_rate_limit_option_covers_both_families(lab: Lab) -> None:
    ns = lab.ns("mscore")
    lab.set_rate_limit(False)
    assert read_sysctl(ns, "net.ipv6.icmp.ratelimit") == "0"
    # Off for the kernel's global ICMP limit too (shared by both families).
    assert read_sysctl(ns, "net.ipv6.icmp.ratemask") == ""
    lab.set_rate_limit(True)
    assert read_sysctl(ns, "net.ipv6.icmp.ratelimit") == "1000"
    assert read_sysctl(ns, "net.ipv6.icmp.ratemask") == "0-1,3-127"
    assert read_sysctl(ns, "net.ipv4.icmp_ratelimit") == "1000"


def test_rate_limited_router_answers_ipv6_like_a_real_one(lab_scenario, lab: Lab) -> None:
    """With the kernel's default limit, back-to-back probes to one hop lose answers."""
    lab.set_rate_limit(True)
    lab_ = lab_scenario("ipv6-er")
    argv = ["traceroute", "-6", "-n", "-T", "-p", "443", "-q", "10", "-w", "1", "-N", "10"]
    out = lab_.run("branch", [*argv, "-f", "5", "-m", "5", SERVICE6], timeout=60).stdout
    answers = out.count("ms")
    assert 0 < answers < 10, out  # the burst (about 6), then silence
