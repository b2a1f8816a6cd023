"""Each scenario, proven with traceroute -T -p 443 -n and plain TCP connects."""

from __future__ import annotations

import pytest

from tests.lab import SCENARIOS, Lab, plan

from .tools import matches, tcp_connect, traceroute, trim

pytestmark = pytest.mark.lab

SERVICE = "198.19.16.10"  # make.powerapps.com
CDN = "198.19.128.10"  # content.powerapps.com


@pytest.fixture
def switch(lab: Lab, lab_scenario):
    """Switch scenario with ICMP rate limiting off (hop lists are compared)."""
    lab.set_rate_limit(False)

    def go(name: str) -> Lab:
        return lab_scenario(name)

    return go


def _env_circuit(lab: Lab, name: str = "ams-er-1") -> dict:
    return next(c for c in lab.env()["circuits"] if c["name"] == name)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_traceroute_matches_the_truth(switch, lab: Lab, scenario: str) -> None:
    switch(scenario)
    # A flaky MSEE may leave its own hop unanswered; nothing else may differ.
    flaky = frozenset(a for n in SCENARIOS[scenario].flaky for a in plan.addresses_of(n))
    for src, dst in (("branch", SERVICE), ("branch", CDN), ("dchost", SERVICE)):
        expected = trim(lab.expected_hop_sets(scenario, src, dst))
        observed = traceroute(lab, src, dst)
        assert matches(observed, expected, flaky), (scenario, src, dst, observed, expected)


def test_er_goes_via_ce_and_primary_msee(switch, lab: Lab) -> None:
    lab_ = switch("er")
    c = _env_circuit(lab_)
    hops = traceroute(lab_, "branch", SERVICE)
    flat = [next(iter(h)) if h else None for h in hops]
    assert c["ce_addresses"]["inside"] in flat
    assert c["msee_addresses"]["primary"] in flat
    assert c["msee_addresses"]["secondary"] not in flat
    assert flat[-1] == SERVICE
    assert tcp_connect(lab_, "branch", SERVICE) == "open"


def test_er_secondary_uses_the_secondary_msee(switch, lab: Lab) -> None:
    lab_ = switch("er-secondary")
    c = _env_circuit(lab_)
    flat = [next(iter(h)) if h else None for h in traceroute(lab_, "branch", SERVICE)]
    assert c["msee_addresses"]["secondary"] in flat
    assert c["msee_addresses"]["primary"] not in flat
    assert c["links_up"] == {"primary": False, "secondary": True}
    assert tcp_connect(lab_, "branch", SERVICE) == "open"


def test_internet_failover_goes_via_isp_and_microsoft_edge(switch, lab: Lab) -> None:
    lab_ = switch("internet-failover")
    env = lab_.env()
    hops = traceroute(lab_, "branch", SERVICE)
    seen = set().union(*hops)
    edge = env["internet_edges"][0]
    assert seen & set(edge["hop_addresses"])
    assert seen & set(edge["isp_hop_addresses"])
    assert seen & set(env["microsoft_hops"]["msedge"])
    assert not seen & set(env["silent_hop"]["addresses"])
    silent_ttl = 5  # branch, wan... dccore, inet, isp, then the silent hop
    assert hops[silent_ttl - 1] == frozenset()
    msee = set(_env_circuit(lab_)["msee_addresses"].values())
    assert not seen & msee
    assert tcp_connect(lab_, "branch", SERVICE) == "open"


def test_cdn_only_via_internet_even_in_er(switch, lab: Lab) -> None:
    lab_ = switch("er")
    env = lab_.env()
    seen = set().union(*traceroute(lab_, "branch", CDN))
    assert seen & set(env["internet_edges"][0]["hop_addresses"])
    assert not seen & set(_env_circuit(lab_)["msee_addresses"].values())
    assert tcp_connect(lab_, "branch", CDN) == "open"


def test_asymmetric_nat_handshake_dies_at_the_firewall(switch, lab: Lab) -> None:
    lab_ = switch("asymmetric-nat")
    env = lab_.env()
    before = lab_.firewall_drops()
    assert tcp_connect(lab_, "branch", SERVICE) == "timeout"
    assert lab_.firewall_drops() > before
    # The datacenter host is not broken out: it still uses ER and works.
    assert tcp_connect(lab_, "dchost", SERVICE) == "open"
    # Reverse: from the azure side, the internet NAT address is reached over an MSEE.
    nat = env["internet_edges"][0]["nat_addresses"]["branch"]
    seen = set().union(*traceroute(lab_, "azure", nat))
    msee = set()
    for c in env["circuits"]:
        msee |= set(c["msee_addresses"].values()) | set(c["msee_core_addresses"].values())
    assert seen & msee
    assert env["internet_edges"][0]["nat_prefix"] in _env_circuit(lab_)["advertised_prefixes"]


def test_asymmetric_circuits_handshake_dies(switch, lab: Lab) -> None:
    lab_ = switch("asymmetric-circuits")
    before = lab_.firewall_drops()
    assert tcp_connect(lab_, "branch", SERVICE) == "timeout"
    assert lab_.firewall_drops() > before
    # The reverse path of circuit 1's NAT address runs over circuit 2's MSEE.
    nat = lab_.env()["er_nat_pool"]["addresses"]["branch"]
    seen = set().union(*traceroute(lab_, "azure", nat))
    c2 = _env_circuit(lab_, "dub-er-2")
    assert c2["msee_core_addresses"]["primary"] in seen


def test_reverse_trace_in_er_returns_over_the_internet(switch, lab: Lab) -> None:
    lab_ = switch("er")
    env = lab_.env()
    nat = env["internet_edges"][0]["nat_addresses"]["branch"]
    hops = traceroute(lab_, "azure", nat)
    assert matches(hops, trim(lab_.expected_hop_sets("er", "azure", nat)))
    assert hops[-1] == frozenset({nat})


def test_ecmp_flow_follows_the_kernel_hash(switch, lab: Lab) -> None:
    lab_ = switch("internet-failover")
    members = set()
    for sport in range(41000, 41008):
        expected = lab_.expected_hops(None, "branch", SERVICE, sport=sport)
        got = traceroute(lab_, "branch", SERVICE, sport=sport)
        assert [next(iter(h)) if h else None for h in got] == expected
        members.add(expected[3])
    assert len(members) == 2, "eight flows should spread over both ISPs"


def test_ecmp_off_uses_one_isp(switch, lab: Lab) -> None:
    lab_ = switch("internet-failover")
    lab_.set_ecmp(False)
    expected = lab_.expected_hops(None, "branch", SERVICE)
    assert expected[3] == lab_.env()["internet_edges"][0]["isp_hop_addresses"][0]
    for sport in (41000, 41001, 41002, 41003):
        got = traceroute(lab_, "branch", SERVICE, sport=sport)
        assert [next(iter(h)) if h else None for h in got] == expected


def test_rate_limit_defaults_and_switch(lab: Lab) -> None:
    from tests.lab.nsenter import read_sysctl

    ns = lab.ns("mscore")
    lab.set_rate_limit(True)
    assert read_sysctl(ns, "net.ipv4.icmp_ratelimit") == "1000"
    lab.set_rate_limit(False)
    assert read_sysctl(ns, "net.ipv4.icmp_ratelimit") == "0"
    assert read_sysctl(ns, "net.ipv4.icmp_ratemask") == "0"
    lab.set_rate_limit(True)
    assert read_sysctl(ns, "net.ipv4.icmp_ratemask") == "6168"
    assert read_sysctl(ns, "net.ipv4.fib_multipath_hash_policy") == "1"
