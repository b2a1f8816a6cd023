"""The lab's agent configs (tests/lab/agents/*.toml) load and match the lab plan.

They are examples for users too, so they are real configs checked by the real
loader; the lab plan is pure data, so no root is needed.
"""

import ipaddress
from pathlib import Path

import pytest

from agent.config import load

plan = pytest.importorskip("tests.lab.plan")
scenarios = pytest.importorskip("tests.lab.scenarios")

AGENTS = Path(__file__).parents[1] / "lab" / "agents"
ROLES = {"branch": "branch", "dchost": "datacenter", "dccore": "datacenter", "azure": "azure-side"}


def _inside(address: str, prefixes) -> bool:
    return any(ipaddress.ip_address(address) in ipaddress.ip_network(p) for p in prefixes)


def _interfaces(node: str) -> list[str]:
    """A node's addresses that show up as hops (not its NAT loopbacks, not mgmt):
    IPv4, then IPv6."""
    links = plan.links_of(node)
    return [link.address(node) for link in links] + [
        link.address6(node) for link in links if link.subnet6
    ]


def test_there_is_one_config_per_lab_agent():
    assert sorted(p.stem for p in AGENTS.glob("*.toml")) == sorted(plan.AGENT_NODES)


@pytest.mark.parametrize("node", sorted(ROLES))
def test_agent_identity_and_resolver(node):
    c = load(AGENTS / f"{node}.toml")
    assert (c.agent.id, c.agent.site, c.agent.role) == (node, plan.SITES[node], ROLES[node])
    assert c.dns.resolvers == (plan.DNS_PUBLIC,)
    assert c.probe.builtin_targets is False  # the lab's DNS serves only the lab's names


@pytest.mark.parametrize("node", sorted(ROLES))
def test_site_facts_match_the_address_plan(node):
    c = load(AGENTS / f"{node}.toml")
    healthy = scenarios.SCENARIOS[scenarios.DEFAULT_SCENARIO]
    lab_subnets = [link.subnet for link in plan.LINKS]
    assert [x.name for x in c.circuits] == [x.name for x in plan.CIRCUITS]
    for mine, lab in zip(c.circuits, plan.CIRCUITS, strict=True):
        assert (mine.location, mine.sku) == (lab.location, lab.sku.lower())
        assert mine.primary_subnet == plan.LINKS_BY_KEY[lab.primary_link].subnet
        assert mine.primary_subnet_v6 == plan.LINKS_BY_KEY[lab.primary_link].subnet6
        if lab.secondary_link:
            assert mine.secondary_subnet == plan.LINKS_BY_KEY[lab.secondary_link].subnet
        else:
            # Not cabled in the lab: the /30 must not collide with anything that is.
            net = ipaddress.ip_network(mine.secondary_subnet)
            assert not any(net.overlaps(ipaddress.ip_network(s)) for s in lab_subnets)
        assert mine.ce_addresses == tuple(_interfaces(lab.ce))
        assert mine.advertised_prefixes == (lab.nat_pool,) == healthy.advertised[lab.name]
        # Every site's ER NAT address sits in the pool this circuit advertises.
        assert all(_inside(a, mine.advertised_prefixes) for a in lab.nat_addresses.values())
    (edge,) = c.internet_edges
    assert edge.nat_addresses == tuple(sorted(set(plan.INTERNET_NAT_ADDRESSES.values())))
    assert edge.hop_addresses == tuple(_interfaces("inet"))
    assert edge.source_prefixes_v6 == (plan.CUSTOMER_PREFIX6,)
    # The healthy lab keeps the internet NAT out of every advertised prefix.
    assert not any(
        _inside(a, x.advertised_prefixes) for a in edge.nat_addresses for x in c.circuits
    )


@pytest.mark.parametrize("node", ["branch", "dchost", "dccore"])
def test_forward_targets_are_the_labs_power_platform_names(node):
    targets = load(AGENTS / f"{node}.toml").targets()
    lab = {t.name: t for t in plan.targets()}
    assert [t.name for t in targets] == [t.name for t in sorted(plan.targets(), key=_role_order)]
    for t in targets:
        assert t.address is None  # resolved through the lab's DNS, CNAME chains included
        assert (t.role, t.port) == (lab[t.name].role, lab[t.name].port)
        if lab[t.name].role == "cdn":
            # Front Door, or a CDN that is not Microsoft's: internet only either way.
            assert t.expect == "cdn"
            assert _inside(lab[t.name].address, [plan.CDN_PREFIX, plan.EXT_CDN_PREFIX])
        else:
            assert t.expect == "expressroute"
            assert _inside(lab[t.name].address, plan.ER_RECEIVED_PREFIXES)


def _role_order(t) -> int:
    # The configs group targets by role, in this order, keeping the plan's order within a role.
    return ["service", "api", "auth", "telemetry", "cdn"].index(t.role)


def test_azure_side_traces_back_to_every_site_nat_address():
    targets = load(AGENTS / "azure.toml").targets()
    assert all(t.role == "reverse" for t in targets)
    got = {(t.site, t.address): t.expect for t in targets}
    want = {}
    for site in ("branch", "dc"):
        for circuit in plan.CIRCUITS:
            want[(site, circuit.nat_addresses[site])] = "expressroute"
        want[(site, plan.INTERNET_NAT_ADDRESSES[site])] = "internet"
    assert got == want
