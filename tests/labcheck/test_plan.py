"""The static plan and the path truth: no root needed."""

from __future__ import annotations

import ipaddress
import json
import os

import pytest

from tests.lab import AmbiguousPath, Lab, pathsim, plan, scenarios, servicetags

REAL_TAGS = os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "shared", "data", "ServiceTags_Public.json"
)
TEST_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


def _in(address: str, nets) -> bool:
    return any(ipaddress.ip_address(address) in n for n in nets)


def test_address_plan_uses_only_lab_ranges() -> None:
    allowed = [
        ipaddress.ip_network(n)
        for n in ("10.0.0.0/8", "172.16.0.0/12", "198.18.0.0/15", "2001:db8::/32")
    ]
    for node in plan.NODE_KEYS:
        for address in plan.addresses_of(node):
            assert _in(address, allowed + TEST_NETS), (node, address)
    for t in plan.targets():
        assert _in(t.address, [ipaddress.ip_network("198.18.0.0/15")])
        assert _in(t.address6, [ipaddress.ip_network(n) for n in ("2001:db8:18::/47",)])


def test_ipv6_plan_splits_the_documentation_range_by_role() -> None:
    """Customer LANs in its public /48, router links in its internal /48, peering
    /126s in their own block, "internet" and "Microsoft" in theirs."""
    roles = {
        "customer": ipaddress.ip_network(plan.CUSTOMER_PREFIX6),
        "internal": ipaddress.ip_network(plan.CUSTOMER_INTERNAL6),
        "peering": ipaddress.ip_network(plan.PEERING_BLOCK6),
        "internet": ipaddress.ip_network(plan.INTERNET6),
        "microsoft": ipaddress.ip_network(plan.MICROSOFT_AGGREGATE6),
    }
    nets = list(roles.values())
    assert all(not a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    for key, role in (("wan-branch", "customer"), ("dccore-dchost", "customer")):
        assert ipaddress.ip_network(plan.LINKS_BY_KEY[key].subnet6).subnet_of(roles[role])
    for key in ("wan-dccore", "dccore-ce1", "dccore-inet"):
        assert ipaddress.ip_network(plan.LINKS_BY_KEY[key].subnet6).subnet_of(roles["internal"])
    for key in ("isp1-inet", "silent-msedge", "silent-dns"):
        assert ipaddress.ip_network(plan.LINKS_BY_KEY[key].subnet6).subnet_of(roles["internet"])
    for link in plan.LINKS:
        assert link.subnet6, f"{link.key} has no IPv6 subnet: the lab is dual-stack"


def test_peering_126s_msee_is_the_second_address() -> None:
    """Azure's IPv6 Microsoft peering: a /126 per link, the customer's router the
    first usable address (::1), the MSEE the second (::2)."""
    for c in plan.CIRCUITS:
        for key in (c.primary_link, c.secondary_link):
            if key is None:
                continue
            link = plan.LINKS_BY_KEY[key]
            net = ipaddress.ip_network(link.subnet6)
            assert net.prefixlen == 126
            assert net.subnet_of(ipaddress.ip_network(plan.PEERING_BLOCK6))
            assert link.address6(c.ce) == str(net[1])
            assert link.address6(link.peer(c.ce)) == str(net[2])


def test_peering_subnets_msee_is_the_second_usable_address() -> None:
    for c in plan.CIRCUITS:
        for key in (c.primary_link, c.secondary_link):
            if key is None:
                continue
            link = plan.LINKS_BY_KEY[key]
            net = ipaddress.ip_network(link.subnet)
            assert net.prefixlen == 30 and _in(str(net[1]), TEST_NETS)
            assert link.address(c.ce) == str(net[1])
            assert link.address(link.peer(c.ce)) == str(net[2])


def test_interface_names_fit_the_kernel() -> None:
    for link in plan.LINKS:
        assert len(link.ifname(link.a)) <= 15 and len(link.ifname(link.b)) <= 15


def test_nat_pools_and_advertisements() -> None:
    er = scenarios.get("er")
    assert plan.INTERNET_NAT_PREFIX not in er.advertised["ams-er-1"]
    asym = scenarios.get("asymmetric-nat")
    assert plan.INTERNET_NAT_PREFIX in asym.advertised["ams-er-1"]


def test_truth_er_path_has_ce_and_primary_msee() -> None:
    hops = pathsim.expected_hops("er", "branch", "198.19.16.10")
    assert hops == [
        "10.10.1.1",
        "10.255.0.2",
        "10.255.1.2",
        "192.0.2.2",
        "198.19.0.6",
        "198.19.16.10",
    ]


def test_truth_asymmetric_nat_reverse_goes_through_msee() -> None:
    hops = pathsim.expected_hops("asymmetric-nat", "azure", "198.51.100.10")
    assert "198.19.0.5" in hops and hops[-1] == "10.255.1.1"  # dropped after the core
    trace = pathsim.traces("asymmetric-nat", "branch", "198.19.16.10", ecmp=False)[0]
    assert not trace.reached and trace.hops[-1].why.startswith("lost:dccore")


def test_truth_internet_path_forks_over_ecmp() -> None:
    with pytest.raises(AmbiguousPath):
        pathsim.expected_hops("internet-failover", "branch", "198.19.16.10")
    sets = pathsim.expected_hop_sets("internet-failover", "branch", "198.19.16.10")
    assert sets[3] == {"198.18.16.1", "198.18.32.1"} and sets[4] == frozenset()
    single = pathsim.expected_hops("internet-failover", "branch", "198.19.16.10", ecmp=False)
    assert single[3] == "198.18.16.1" and single[4] is None


def test_truth_filtered_and_closed() -> None:
    assert pathsim.expected_hops("er", "branch", plan.CLOSED_ADDRESS)[-1] == plan.CLOSED_ADDRESS
    assert pathsim.expected_hops("er", "branch", plan.FILTERED_ADDRESS)[-1] is None


def test_env_without_root() -> None:
    env = Lab(prefix="zz").env()
    for key in (
        "namespaces",
        "addresses",
        "agents",
        "collector",
        "dns_servers",
        "targets",
        "circuits",
        "internet_edges",
        "er_nat_pool",
        "silent_hop",
        "service_tags_file",
        "scenario",
        "probe_addresses",
    ):
        assert key in env
    json.dumps(env)
    assert env["namespaces"]["branch"] == "zz-branch"
    assert len([t for t in env["targets"] if t["role"] != "cdn"]) >= 25


@pytest.mark.skipif(not os.path.exists(REAL_TAGS), reason="real service tags file not present")
def test_service_tags_have_the_real_files_shape() -> None:
    with open(REAL_TAGS) as f:
        real = json.load(f)
    ours = servicetags.document()
    assert set(ours) == set(real)
    real_value = real["values"][0]
    for v in ours["values"]:
        assert set(v) == set(real_value)
        assert set(v["properties"]) == set(real_value["properties"])
    regional = {v["name"]: v for v in ours["values"]}
    assert regional["PowerPlatformInfra.WestEurope"]["properties"]["regionId"] == 18
    assert regional["AzureCloud.westeurope"]["properties"]["region"] == "westeurope"


def test_truth_ipv6_er_crosses_the_msee_at_the_126s_second_address() -> None:
    hops = pathsim.expected_hops("ipv6-er", "branch", "2001:db8:19:16::10")
    assert hops == [
        "2001:db8:a:1010::1",
        "2001:db8:f::2",
        "2001:db8:f:1::2",
        "2001:db8:e::2",
        "2001:db8:19::6",
        "2001:db8:19:16::10",
    ]
    # IPv4 of the same scenario leaves via the internet edge.
    assert "10.255.3.2" in pathsim.expected_hops("ipv6-er", "branch", "198.19.16.10", ecmp=False)


def test_truth_ipv6_asymmetric_is_lost_at_the_firewall_zone_check() -> None:
    trace = pathsim.traces("ipv6-asymmetric", "branch", "2001:db8:19:16::10", ecmp=False)[0]
    answered = [h.node for h in trace.hops if h.answered]
    # msedge answers over the internet; mscore and svc answer over the circuit.
    assert answered == ["wan", "dccore", "inet", "isp1", "msedge"]
    assert [h.why for h in trace.hops[-2:]] == ["lost:dccore", "lost:dccore"]
    dc = pathsim.traces("ipv6-asymmetric", "dchost", "2001:db8:19:16::10", ecmp=False)[0]
    assert dc.reached  # the datacenter's /52 is not on the circuit


def test_truth_ipv6_is_not_routed_in_ipv4_scenarios() -> None:
    with pytest.raises(ValueError, match="no route"):
        pathsim.expected_hops("er", "branch", "2001:db8:19:16::10")
