"""agent.measure.dns in the lab: the catalog through the lab's real DNS servers.

Queries leave the datacenter host's namespace and cross the lab's routers to
the public resolver, the datacenter's split-horizon resolver and the
misbehaving one.  Run with ERPATH_LAB_PREFIX=dns for a lab of your own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.measure import dns as agent_dns
from tests.lab import dnsdata, plan
from tests.lab.fixture import lab  # noqa: F401 - the session fixture
from tests.lab.lab import Lab

pytestmark = pytest.mark.lab

NODE = "dchost"
PUBLIC, SPLIT, BAD = plan.DNS_PUBLIC, plan.DNS_SPLIT, plan.DNS_BAD


def resolve(lab: Lab, names: list[str], resolvers: list[str], timeout_s: float = 2.0):  # noqa: F811
    with lab.netns(NODE):
        return agent_dns.resolve_many(names, resolvers, timeout_s)


@pytest.fixture
def bad_mode(lab: Lab) -> Iterator[None]:  # noqa: F811
    """Whatever mode a test sets on the misbehaving resolver, "normal" comes back."""
    try:
        yield
    finally:
        lab.set_dns_mode("normal")


def test_catalog_resolves_with_its_cname_chains(lab: Lab) -> None:  # noqa: F811
    targets = plan.targets()
    results = resolve(lab, [t.name for t in targets], [PUBLIC])
    for t in targets:
        r = results[t.name]
        # Every lab name is dual-stack: its A, then its AAAA.
        want = plan.addresses_of_target(t)
        assert (r.failure, r.addresses, r.cname_chain) == (None, want, t.cname_chain), t.name
        assert r.ttl_s == dnsdata.TTL
        assert r.answers[0].resolver == PUBLIC
    cdn = results["content.powerapps.com"]
    assert cdn.cname_chain[-1].endswith(".azureedge.net")


def test_split_horizon_is_divergent(lab: Lab) -> None:  # noqa: F811
    names = [t.name for t in plan.targets()]
    results = resolve(lab, names, [PUBLIC, SPLIT])
    divergent = {n for n, r in results.items() if r.divergent}
    assert divergent == set(dnsdata.SPLIT_OVERRIDES)
    private = results["contoso.crm4.dynamics.com"].answers[1]
    assert (private.resolver, private.addresses) == (SPLIT, (plan.SPLIT_PRIVATE_DATAVERSE,))


@pytest.mark.parametrize(
    ("name", "code"),
    [
        (f"servfail.{dnsdata.BAD_ZONE}", "dns.servfail"),
        (f"refused.{dnsdata.BAD_ZONE}", "dns.refused"),
        (f"silent.{dnsdata.BAD_ZONE}", "dns.timeout"),
        (f"loop.{dnsdata.BAD_ZONE}", "dns.cname-loop"),
        (f"chain.{dnsdata.BAD_ZONE}", "dns.cname-loop"),
        (f"nothing-here.{dnsdata.BAD_ZONE}", "dns.nxdomain"),
        ("as8075.asn.cymru.com", "dns.no-answer"),  # TXT only
    ],
)
def test_misbehaving_resolver_failure_codes(lab: Lab, name: str, code: str) -> None:  # noqa: F811
    r = resolve(lab, [name], [BAD], timeout_s=1.0)[name]
    assert (r.failure, r.addresses) == (code, ())


def test_misbehaving_resolver_truncation_and_oversize(lab: Lab) -> None:  # noqa: F811
    tc, big = f"tc.{dnsdata.BAD_ZONE}", f"big.{dnsdata.BAD_ZONE}"
    results = resolve(lab, [tc, big], [BAD])
    assert (results[tc].failure, results[tc].addresses) == (None, ("198.19.16.10",))
    assert results[big].failure is None
    assert len(results[big].addresses) == agent_dns.MAX_ADDRESSES


def test_misbehaving_resolver_modes(lab: Lab, bad_mode: None) -> None:  # noqa: F811
    name = "make.powerapps.com"
    lab.set_dns_mode("tc")  # everything over TCP
    assert resolve(lab, [name], [BAD])[name].addresses == ("198.19.16.10", "2001:db8:19:16::10")
    lab.set_dns_mode("servfail")
    assert resolve(lab, [name], [BAD])[name].failure == "dns.servfail"
    lab.set_dns_mode("silent")
    r = resolve(lab, [name], [PUBLIC, BAD], timeout_s=1.0)[name]
    assert [a.failure for a in r.answers] == [None, "dns.timeout"]
    assert not r.divergent


def test_hop_namer_names_msee_and_backbone_hops(lab: Lab) -> None:  # noqa: F811
    namer = agent_dns.HopNamer([PUBLIC], 2.0)
    hops = ["198.19.0.5", "198.19.0.1", "198.18.16.1", "10.20.0.1", "198.19.16.10"]
    with lab.netns(NODE):
        namer.prefetch(hops)
        named = {h: namer(h) for h in hops}
    assert named == {
        "198.19.0.5": ("ae10-0.ams-06gmr-msee-1a.ntwk.msn.net", 12076),
        "198.19.0.1": ("ae22-0.ams-96cbe-1a.ntwk.msn.net", 8075),
        "198.18.16.1": ("xe-0-0-1.cr1.ams.isp1.example.net", 64501),
        "10.20.0.1": ("vl20.dc-core1.ams.corp.contoso.example", None),
        "198.19.16.10": (None, 8075),
    }
