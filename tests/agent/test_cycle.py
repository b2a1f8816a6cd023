"""The cycle's MSEE probes: which addresses, and what counts as an answer (no root needed)."""

from __future__ import annotations

from agent.cycle import BGP_PORT, msee_endpoints, msee_probes
from agent.report import Circuit, MseeProbe, SiteFacts, TcpResult

AMS = Circuit(
    "ams-1", "Amsterdam", "standard", "203.0.113.0/30", "203.0.113.4/30", ("203.0.113.1",)
)
DUB = Circuit("dub-2", "Dublin", "standard", "2001:db8:0:1::/126", "2001:db8:0:1::4/126")


def test_msee_addresses_are_the_second_address_of_each_peering_subnet():
    site = SiteFacts(circuits=(AMS, DUB), prefer=("ams-1", "dub-2", "internet"))
    assert msee_endpoints(site) == {
        ("203.0.113.2", BGP_PORT): ("ams-1", "primary"),
        ("203.0.113.6", BGP_PORT): ("ams-1", "secondary"),
        ("2001:db8:0:1::2", BGP_PORT): ("dub-2", "primary"),
        ("2001:db8:0:1::6", BGP_PORT): ("dub-2", "secondary"),
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
