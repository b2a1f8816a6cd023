"""The fast parser agrees with agent.report.report_from_dict, the authority, on every input."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.report import ReportError, report_from_dict
from collector.fastparse import parse_report

from .reports import SITE_FACTS, er, inet, report, result

BASE = report(
    "br-1",
    7,
    [
        result(
            "api.powerapps.com",
            er(),
            expected="expressroute",
            findings=[{"kind": "asymmetry.x", "severity": "warning", "evidence": ["e"]}],
        ),
        result("res.cdn.office.net", inet()),
    ],
    facts=SITE_FACTS,
)


def outcome(fn, doc: Any) -> Any:
    try:
        return ("ok", fn(doc))
    except ReportError as exc:
        return ("error", exc.errors)
    except OverflowError:
        return ("overflow", None)


def paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, (*prefix, i))
    return out


ALL_PATHS = paths(BASE)[1:]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(
        [
            "192.0.2.1",
            "2001:db8::1",
            "198.51.100.0/24",
            "x" * 1100,
            "open",
            "primary",
            "expressroute",
            "erpath.report/2",
            "tcp",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL_PATHS), json_values, st.sampled_from(["replace", "delete", "add"]))
def test_mutated_reports_get_the_same_outcome(path, value, how):
    doc = copy.deepcopy(BASE)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if how == "replace":
        parent[last] = value
    elif how == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent["unexpected_" + str(last)] = value
    else:
        parent.append(value)
    assert outcome(parse_report, doc) == outcome(report_from_dict, doc)


def test_valid_reports_build_identical_objects():
    assert parse_report(BASE) == report_from_dict(BASE)
    for doc in ([], None, "x", {"schema": "erpath.report/9"}, {**BASE, "schema": ["x"]}):
        assert outcome(parse_report, doc) == outcome(report_from_dict, doc)
