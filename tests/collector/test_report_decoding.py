"""Reports as the collector receives them, through the one decoder (agent.report.report_from_dict).

The collector's fast path (agent.report_codec) takes valid current reports from the
bytes; what it leaves goes to the one decoder, which takes it or says what is wrong.

Any document gets a report or a ReportError naming fields that exist (or are
missing) in it, never another exception; an `erpath.report/1` document
(evidence as sentences) decodes to the report of the same facts sent as
`erpath.report/2` with evidence as notes.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import report_codec
from agent.report import SCHEMA, Evidence, ReportError, report_from_dict, to_dict
from collector import routes
from collector.problems import Problem
from tests.agent.test_report_decoder import paths

from .reports import SITE_FACTS, er, finding, inet, report, result

BASE = report(
    "br-1",
    7,
    [
        result(
            "api.powerapps.com",
            er(),
            expected="expressroute",
            findings=[finding()],
        ),
        result("res.cdn.office.net", inet()),
    ],
    facts=SITE_FACTS,
)


def _evidence(doc: dict[str, Any], schema: str, item: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["schema"] = schema
    for res in doc["results"]:
        for holder in [res["verdict"], *res["findings"]]:
            holder["evidence"] = [item(e["text"]) for e in holder["evidence"]]
    return doc


def as_v1(doc: dict[str, Any]) -> dict[str, Any]:
    """The facts as an agent of erpath.report/1 sent them: evidence as sentences."""
    return _evidence(doc, "erpath.report/1", lambda text: text)


def as_notes(doc: dict[str, Any]) -> dict[str, Any]:
    return _evidence(doc, SCHEMA, lambda text: {"kind": "note", "text": text})


def outcome(doc: Any) -> Any:
    try:
        return ("ok", report_from_dict(doc))
    except ReportError as exc:
        return ("error", exc.errors)


def pointer(path: tuple) -> str:
    return "".join("/" + str(k).replace("~", "~0").replace("/", "~1") for k in path) or "/"


BASES = {"/2": BASE, "/1": as_v1(BASE)}
ALL_PATHS = [(version, p) for version, doc in BASES.items() for p in paths(doc)[1:]]

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
            "not-a-uuid",
            "yesterday",
            "2026-W01-1",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL_PATHS), json_values, st.sampled_from(["replace", "delete", "add"]))
def test_mutated_reports_decode_or_name_the_field(where, value, how):
    version, path = where
    doc = copy.deepcopy(BASES[version])
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
    kind, got = outcome(doc)  # nothing but a report or a ReportError
    if kind == "error":
        # A field named is in the document, or is a required one missing from its object.
        known = {pointer(p) for p in paths(doc)}
        assert got and all(
            e.field in known
            or (e.message == "is required" and (e.field.rsplit("/", 1)[0] or "/") in known)
            for e in got
        ), got


def test_report_1_and_report_2_of_the_same_facts_are_the_same_report():
    rep = report_from_dict(as_v1(BASE))
    assert rep == report_from_dict(as_notes(BASE))
    assert rep.schema == SCHEMA
    (evidence,) = rep.results[0].findings[0].evidence
    assert evidence == Evidence(
        kind="note", text=BASE["results"][0]["findings"][0]["evidence"][0]["text"]
    )
    assert report_from_dict(BASE).results[0].findings[0].evidence[0].kind == "advertised"


@pytest.mark.parametrize(
    "doc", [[], None, "x", {"schema": "erpath.report/9"}, {**BASE, "schema": ["x"]}]
)
def test_not_a_report_is_a_report_error(doc):
    with pytest.raises(ReportError) as e:
        report_from_dict(doc)
    assert e.value.errors and e.value.errors[0].field in ("/", "/schema")


@pytest.mark.parametrize(
    ("key", "value"),
    [("id", "not-a-uuid"), ("started_at", "yesterday"), ("started_at", "2026-W01-1")],
)
def test_identity_and_time_are_checked_in_both_versions(key, value):
    # The compiled fast path this decoder replaced accepted these.
    for doc in BASES.values():
        with pytest.raises(ReportError) as e:
            report_from_dict({**doc, key: value})
        assert [err.field for err in e.value.errors] == [f"/{key}"]


def _body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_the_collector_takes_a_current_report_on_the_fast_path():
    # No document comes back: the body is one, read again only where a trace is stored.
    doc, rep = routes._decode_body(_body(BASE))
    assert doc is None and rep == report_from_dict(BASE)


@pytest.mark.parametrize(
    ("change", "upgraded"),
    [
        pytest.param(lambda d: {**d, "seq": 7.0}, False, id="integral float as integer"),
        pytest.param(as_v1, True, id="erpath.report/1"),
    ],
)
def test_what_the_fast_path_leaves_the_reference_decoder_takes(change, upgraded):
    sent = change(BASE)
    assert report_codec.decode(_body(sent)) is None
    doc, rep = routes._decode_body(_body(sent))
    assert rep == report_from_dict(sent)
    # An older version's document is stored in the current shape; a current one as sent.
    assert doc == (to_dict(rep) if upgraded else sent)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"seq": NaN}', 400, "body"),
        (b'{"id": "\\ud800"}', 400, "/id"),
        (b"\xff", 400, "body"),
        (_body({**BASE, "seq": -1}), 422, "/seq"),
        (_body({**BASE, "started_at": "2026-02-30T10:00:00Z"}), 422, "/started_at"),
        (_body({**BASE, "extra": 1}), 422, "/extra"),
    ],
)
def test_what_the_fast_path_refuses_gets_the_reference_problem(body, status, field):
    assert report_codec.decode(body) is None
    with pytest.raises(Problem) as e:
        routes._decode_body(body)
    assert e.value.status == status
    assert [err["field"] for err in e.value.errors] == [field]
