"""The cycle's MSEE probes and address selection: which addresses, what counts as an answer (no root needed)."""

from __future__ import annotations

from agent.config import TargetSpec
from agent.cycle import (
    BGP_PORT,
    _expand,
    _pick_addresses,
    _users_address,
    _users_choices,
    msee_endpoints,
    msee_probes,
)
from agent.report import Circuit, DnsResult, MseeProbe, RouteResult, SiteFacts, TcpResult

AMS = Circuit(
    "ams-1", "Amsterdam", "standard", "203.0.113.0/30", "203.0.113.4/30", ("203.0.113.1",)
)
DUB = Circuit("dub-2", "Dublin", "standard", "2001:db8:0:1::/126", "2001:db8:0:1::4/126")
FRA = Circuit(
    "fra-1",
    "Frankfurt",
    "standard",
    "203.0.113.8/30",
    "203.0.113.12/30",
    primary_subnet_v6="2001:db8:0:2::/126",
    secondary_subnet_v6="2001:db8:0:2::4/126",
)


def test_msee_addresses_are_the_second_address_of_each_peering_subnet():
    site = SiteFacts(circuits=(AMS, DUB), prefer=("ams-1", "dub-2", "internet"))
    assert msee_endpoints(site) == {
        ("203.0.113.2", BGP_PORT): ("ams-1", "primary"),
        ("203.0.113.6", BGP_PORT): ("ams-1", "secondary"),
        ("2001:db8:0:1::2", BGP_PORT): ("dub-2", "primary"),
        ("2001:db8:0:1::6", BGP_PORT): ("dub-2", "secondary"),
    }


def test_a_dual_stack_circuit_has_an_msee_per_family_and_link():
    site = SiteFacts(circuits=(FRA,), prefer=("fra-1", "internet"))
    assert msee_endpoints(site) == {
        ("203.0.113.10", BGP_PORT): ("fra-1", "primary"),
        ("203.0.113.14", BGP_PORT): ("fra-1", "secondary"),
        ("2001:db8:0:2::2", BGP_PORT): ("fra-1", "primary"),
        ("2001:db8:0:2::6", BGP_PORT): ("fra-1", "secondary"),
    }


def test_no_msee_probe_without_a_failover_order_to_judge():
    assert msee_endpoints(SiteFacts(circuits=(AMS, DUB))) == {}
    assert msee_endpoints(SiteFacts(circuits=(AMS,), prefer=("ams-1",))) == {}


def test_a_syn_ack_or_a_reset_is_an_answer_silence_is_not():
    endpoints = msee_endpoints(SiteFacts(circuits=(AMS,), prefer=("ams-1", "internet")))
    answers = {
        ("203.0.113.2", BGP_PORT): TcpResult(BGP_PORT, "closed", "raw", connect_s=0.0021),
        ("203.0.113.6", BGP_PORT): TcpResult(BGP_PORT, "filtered", "raw", failure="tcp.filtered"),
    }
    assert msee_probes(endpoints, answers) == (
        MseeProbe("ams-1", "primary", "203.0.113.2", True, 0.0021),
        MseeProbe("ams-1", "secondary", "203.0.113.6", False, None),
    )
    assert msee_probes(endpoints, {})[0].answered is False


# --------------------------------------------------------------------------- address selection

DUAL = DnsResult(addresses=("198.18.10.4", "198.18.10.5", "2001:db8:ff::10", "2001:db8:ff::11"))


def test_addresses_per_mode():
    assert _pick_addresses(DUAL, "first") == ["198.18.10.4"]
    assert _pick_addresses(DUAL, "all") == list(DUAL.addresses)
    assert _pick_addresses(DUAL, "both") == ["198.18.10.4", "2001:db8:ff::10"]
    assert _pick_addresses(DUAL, "preferred") == ["198.18.10.4", "2001:db8:ff::10"]
    only_v6 = DnsResult(addresses=("2001:db8:ff::10",))
    assert _pick_addresses(only_v6, "first") == ["2001:db8:ff::10"]


def test_family_asked_for_keeps_one_family():
    assert _pick_addresses(DUAL, "preferred", 6) == ["2001:db8:ff::10"]
    assert _pick_addresses(DUAL, "all", 4) == ["198.18.10.4", "198.18.10.5"]
    assert _pick_addresses(DUAL, "first", 6) == ["2001:db8:ff::10"]
    assert _pick_addresses(DnsResult(addresses=("198.18.10.4",)), "both", 6) == []


def test_preferred_keeps_the_address_users_get():
    t = TargetSpec("crm.example", None, 443)
    fixed = TargetSpec("198.18.9.9", "198.18.9.9", 443)
    probes = _expand([t, fixed], {"crm.example": DUAL}, "preferred")
    assert [p.address for p in probes] == ["198.18.10.4", "2001:db8:ff::10", "198.18.9.9"]
    routes = {
        "198.18.10.4": RouteResult(interface="eth0", source="10.1.0.1"),
        "2001:db8:ff::10": RouteResult(interface="eth0", source="2001:db8:2::1"),
    }
    open_ = TcpResult(443, "open", "raw", connect_s=0.01)
    filtered = TcpResult(443, "filtered", "raw", failure="tcp.filtered")
    tcp = {("198.18.10.4", 443): open_, ("2001:db8:ff::10", 443): filtered}
    choices = _users_choices(probes, routes, tcp, 443)
    assert list(choices) == ["crm.example"]  # an address target has no choice to make
    assert (choices["crm.example"].chosen.address, choices["crm.example"].reason) == (
        "198.18.10.4",
        "fallback",
    )
    kept = [p.address for p in probes if _users_address(p, choices)]
    assert kept == ["198.18.10.4", "198.18.9.9"]
    tcp[("2001:db8:ff::10", 443)] = open_
    choices = _users_choices(probes, routes, tcp, 443)
    assert [p.address for p in probes if _users_address(p, choices)] == [
        "2001:db8:ff::10",
        "198.18.9.9",
    ]
