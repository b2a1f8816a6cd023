"""The expected path from a failover order, pure: availability and precedence, with evidence."""

from __future__ import annotations

from agent.report import MseeProbe
from collector.preference import available_circuits, expect
from collector.state import PathKey

ORDER = ("ams-1", "dub-2", "internet")
AMS = PathKey("expressroute", "ams-1")
DUB = PathKey("expressroute", "dub-2")
NET = PathKey("internet", None, "ams-inet")


def test_a_circuit_is_available_when_its_msee_answers_or_an_agent_is_on_it():
    probes = [
        MseeProbe("ams-1", "primary", "203.0.113.2", True, 0.002),
        MseeProbe("ams-1", "secondary", "203.0.113.6", False),
        MseeProbe("dub-2", "primary", "203.0.113.10", False),
    ]
    got = available_circuits(probes, {"dub-2": ["br-3", "br-2"], "fra-3": []}, own={"ams-1"})
    assert got == {
        "ams-1": "its links answer (primary MSEE 203.0.113.2)",
        "dub-2": "agents br-2, br-3 of the site are on it",
    }
    assert available_circuits([], {}, own={"dub-2"}) == {"dub-2": "this agent's paths use it"}


def test_on_a_later_circuit_while_the_preferred_one_is_available_is_unexpected():
    e = expect(DUB, None, ORDER, {"ams-1": "its links answer (primary MSEE 203.0.113.2)"})
    assert (e.expected, e.matches) == ("expressroute/ams-1", False)
    assert e.evidence == (
        "on dub-2 while ams-1 is preferred and its links answer (primary MSEE 203.0.113.2)",
        "failover order: ams-1 > dub-2 > internet",
    )


def test_the_first_available_entry_is_expected_and_the_skipped_ones_are_named():
    e = expect(DUB, "expressroute", ORDER, {"dub-2": "agent br-2 of the site is on it"})
    assert (e.expected, e.matches) == ("expressroute/dub-2", True)
    assert e.evidence[1] == (
        "ams-1 is preferred but not available (no MSEE answered, no agent of the site on it)"
    )
    # Nothing available: the order falls through to the internet.
    e = expect(NET, None, ORDER, {})
    assert (e.expected, e.matches) == ("internet", True)
    e = expect(AMS, None, ("ams-1", "dub-2"), {})
    assert (e.expected, e.matches) == ("internet", False)
    assert (
        e.evidence[0]
        == "on ams-1 while the order leads to the internet (no circuit of the order is available)"
    )


def test_precedence_own_expectation_then_order_and_unknown_is_no_verdict():
    assert expect(NET, "internet", ORDER, {"ams-1": "x"}) is None
    assert expect(NET, "cdn", ORDER, {"ams-1": "x"}) is None
    assert expect(NET, None, (), {"ams-1": "x"}) is None
    assert expect(PathKey("unknown"), None, ORDER, {"ams-1": "x"}).matches is None
    assert expect(PathKey("expressroute"), None, ORDER, {"ams-1": "x"}).matches is None
