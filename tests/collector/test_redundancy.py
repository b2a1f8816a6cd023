"""Circuit redundancy rules, pure: flows per circuit from a report, and the judgement."""

from __future__ import annotations

from agent.report import report_from_dict
from collector.redundancy import MIN_FLOWS, Flows, Judgement, circuit_flows, evidence, judge

from .reports import er, inet, report, result


def test_flows_are_summed_per_circuit_over_the_reports_expressroute_verdicts():
    doc = report(
        "br-1",
        1,
        [
            result("a", er(links_seen={"primary": 4, "secondary": 2})),
            result("b", er(links_seen={"primary": 3})),
            result("c", er("dub-2", "secondary")),
            result("d", inet()),
            result("e", er(None, None, links_seen={}, msee_flows=6)),  # no circuit: nowhere
        ],
    )
    assert circuit_flows(report_from_dict(doc)) == {"ams-1": Flows(7, 2), "dub-2": Flows(0, 1)}


def test_active_active_needs_both_links_or_enough_flows_to_say_one():
    assert judge("active-active", Flows(3, 1)) == Judgement(False)
    assert judge("active-active", Flows(MIN_FLOWS, 0)) == Judgement(True, "primary")
    assert judge("active-active", Flows(0, 9)) == Judgement(True, "secondary")
    # Fewer flows than the MDA-lite bound on one link: could be the hash's luck.
    assert judge("active-active", Flows(MIN_FLOWS - 1, 0)) == Judgement(None)
    assert judge("active-active", Flows()) == Judgement(None)


def test_active_standby_is_lost_when_the_standby_carries_and_the_primary_not():
    assert judge("active-standby", Flows(0, 1)) == Judgement(True, "secondary")
    assert judge("active-standby", Flows(2, 0)) == Judgement(False)
    assert judge("active-standby", Flows(2, 1)) == Judgement(False)  # the primary carries
    assert judge("active-standby", Flows()) == Judgement(None)


def test_evidence_names_the_link_in_use_and_the_flows_per_agent():
    lines = evidence(
        "ams-1",
        "active-active",
        Judgement(True, "secondary"),
        [("br-2", Flows(0, 6)), ("br-1", Flows(0, 3))],
        3,
    )
    assert lines == [
        "circuit ams-1 (active-active): all 9 flow(s) of the site's latest reports crossed the "
        "secondary link and none the primary, 3 report(s) in a row (at least 6 flows show both "
        "links)",
        "link still in use: secondary",
        "  br-1: primary 0 flow(s), secondary 3 flow(s)",
        "  br-2: primary 0 flow(s), secondary 6 flow(s)",
    ]
    standby = evidence("ams-1", "active-standby", Judgement(True, "secondary"), [], 2)
    assert standby[0].startswith("circuit ams-1 (active-standby): 0 flow(s) on the standby")
