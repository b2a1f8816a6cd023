"""The report decoder and the committed JSON Schema give the same answer on any document.

Valid documents are generated from the model itself; invalid ones are valid
ones with one value replaced, removed or added.  jsonschema (Draft 2020-12
with its FormatChecker) is the second opinion.  The collector's fast path
(agent.report_codec, msgspec on the document's bytes) is held to both: it
takes every generated valid report, takes nothing the schema refuses, and
gives the reference decoder's report.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import json
import sys
import typing
from pathlib import Path
from typing import Any, Literal

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent import report as r
from agent import report_codec

SCHEMA = json.loads(Path(r.__file__).with_name("report.schema.json").read_text())
FORMATS = jsonschema.FormatChecker()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=FORMATS)


def schema_accepts(doc: Any) -> bool:
    return VALIDATOR.is_valid(doc)


def decoder_accepts(doc: Any) -> bool:
    try:
        r.report_from_dict(doc)
    except r.ReportError:
        return False
    return True


def fast_decode(doc: Any) -> r.Report | None:
    """The fast path's answer on the document's bytes; where it takes a document, the
    schema and the reference decoder take it too, into the same report."""
    report = report_codec.decode(json.dumps(doc).encode())
    if report is not None:
        assert schema_accepts(doc), (doc, list(VALIDATOR.iter_errors(doc))[:1])
        assert report == r.report_from_dict(doc)
    return report


def test_the_formats_used_are_really_checked_offline():
    # jsonschema skips a format it has no checker for (date-time needs rfc3339-validator).
    for name in ("ipv4", "ipv6", "uuid", "date-time"):
        assert name in FORMATS.checkers, name
    assert not FORMATS.conforms("2026-W01-1", "date-time")
    assert not FORMATS.conforms("2026-02-30T00:00:00Z", "date-time")


# --------------------------------------------------------------------------- valid documents


def _address() -> st.SearchStrategy[str]:
    return st.ip_addresses().map(str)


def _prefix() -> st.SearchStrategy[str]:
    v4 = st.tuples(st.ip_addresses(v=4), st.integers(0, 32))
    v6 = st.tuples(st.ip_addresses(v=6), st.integers(0, 128))
    return (v4 | v6).map(lambda a: f"{a[0]}/{a[1]}")


def _time() -> st.SearchStrategy[str]:
    zones = st.sampled_from(["Z", "+00:00", "-00:00", "+05:30", "-23:59"])
    fraction = st.sampled_from(["", ".0", ".123", ".123456789"])
    return st.builds(
        lambda t, f, z: (
            f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
            + f
            + z
        ),
        st.datetimes(),
        fraction,
        zones,
    )


FORMAT_VALUES = {
    "ip": _address(),
    "prefix": _prefix(),
    "uuid": st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper()),
    "date-time": _time(),
}


def valid(tp: Any, fmt: str | None = None) -> st.SearchStrategy[Any]:
    """Documents (or parts) the model accepts, derived from its type hints."""
    origin = typing.get_origin(tp)
    if r._is_union(tp):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return st.none() | valid(inner, fmt)
    if origin is Literal:
        return st.sampled_from(typing.get_args(tp))
    if origin is tuple:
        return st.lists(valid(typing.get_args(tp)[0], fmt), max_size=2)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        required, optional = {}, {}
        for f in dataclasses.fields(tp):
            name = f.metadata.get("json", f.name)
            s = valid(hints[f.name], f.metadata.get("format"))
            if tp is r.Report and f.name == "schema":
                s = st.just(r.SCHEMA)
            (required if r._required(f) else optional)[name] = s
        return st.fixed_dictionaries(required, optional=optional)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(0, r.MAX_INT)
    if tp is float:
        return st.floats(0, sys.float_info.max) | st.integers(0, 10**6)
    if tp is str:
        return FORMAT_VALUES[fmt] if fmt else st.text(max_size=6)
    raise TypeError(tp)


REPORTS = valid(r.Report)


def paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, (*prefix, i))
    return out


# --------------------------------------------------------------------------- invalid values

# Near misses of every format, and values of every JSON type.
NEAR_MISSES = [
    "2026-W01-1",
    "2026-W01-1T10:00:00Z",
    "2026-11-27T10:00:00",
    "2026-11-27 10:00:00Z",
    "2026-11-27t10:00:00z",
    "2026-02-29T10:00:00Z",
    "2024-02-29T10:00:00Z",
    "0000-01-01T00:00:00Z",
    "2026-11-27T23:59:60Z",
    "2026-11-27T10:00:00Z\n",
    "2026-11-27T10:00:00+24:00",
    "yesterday",
    "not-a-uuid",
    "7b0f3c1e11114222833394444555566",
    "7b0f3c1e-1111-4222-8333-944445555666",
    "{7b0f3c1e-1111-4222-8333-944445555666}",
    "urn:uuid:7b0f3c1e-1111-4222-8333-944445555666",
    "00000000-0000-0000-0000-0000000000-00",
    "192.0.2.1",
    "192.0.2.01",
    "192.0.2.256",
    "192.0.2.1\n",
    "fe80::1%eth0",
    "2001:db8::1",
    "::ffff:192.0.2.1",
    "1:2:3:4:5:6:7::",
    "1:2:3:4:5:6::1.2.3.4",
    "192.0.2.0/24",
    "192.0.2.0/024",
    "192.0.2.0/255.255.255.0",
    "192.0.2.0/33",
    "2001:db8::/64",
    "2001:db8::/129",
    "x" * 1025,
    "expressroute",
    "primary",
    "note",
    "erpath.report/1",
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False)  # JSON has no NaN; 1e400 reads as infinity
    | st.sampled_from([7.0, -0.0, 2.0**63, float(r.MAX_INT)])
    | st.text(max_size=8)
    | st.text(alphabet="0123456789abcdefABCDEF:.%/-TZ+ \n", max_size=40)
    | st.sampled_from(NEAR_MISSES),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


def _mutate(doc: Any, path: tuple, how: str, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if how == "replace":
        parent[last] = value
    elif how == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[f"unexpected_{last}"] = value
    else:
        parent.append(value)
    return doc


# --------------------------------------------------------------------------- properties

SETTINGS = settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(REPORTS)
def test_generated_reports_are_accepted_by_both(doc):
    assert schema_accepts(doc), list(VALIDATOR.iter_errors(doc))[:1]
    rep = r.report_from_dict(doc)
    assert r.report_from_dict(json.loads(json.dumps(r.to_dict(rep)))) == rep
    assert fast_decode(doc) == rep  # valid reports take the fast path
    assert report_codec.to_builtins(rep) == r.to_dict(rep)


@SETTINGS
@given(st.data())
def test_mutated_reports_get_the_same_answer(data):
    doc = data.draw(REPORTS)
    path = data.draw(st.sampled_from(paths(doc)))
    how = data.draw(st.sampled_from(["replace", "delete", "add"]))
    assume(how == "replace" or path)
    doc = _mutate(doc, path, how, data.draw(JSON_VALUES))
    # erpath.report/1 is decoded too, but the schema describes the current version only.
    assume(not (isinstance(doc, dict) and doc.get("schema") == "erpath.report/1"))
    assert decoder_accepts(doc) == schema_accepts(doc), (doc, list(VALIDATOR.iter_errors(doc)))
    fast_decode(doc)


STRINGS = st.sampled_from(NEAR_MISSES) | st.text(
    alphabet="0123456789abcdefABCDEF:.%/-TWZ+ \n", max_size=40
)


@SETTINGS
@given(st.data())
def test_strings_in_every_string_field_get_the_same_answer(data):
    """Denser than above where it matters: each string leaf (addresses, prefixes, ids, times)."""
    doc = data.draw(REPORTS)
    leaves = [p for p in paths(doc) if p and isinstance(_get(doc, p), str) and p != ("schema",)]
    path = data.draw(st.sampled_from(leaves))
    doc = _mutate(doc, path, "replace", data.draw(STRINGS))
    assert decoder_accepts(doc) == schema_accepts(doc), (path, _get(doc, path))
    fast_decode(doc)


def _get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@settings(max_examples=3000, deadline=None)
@given(
    st.text(alphabet="0123456789abcdefABCDEF:.%/ \n", max_size=45) | st.sampled_from(NEAR_MISSES)
)
def test_address_and_prefix_patterns_agree_with_ipaddress(s):
    """The patterns (not ipaddress) decide; they must mean what ipaddress means, sans zones."""
    try:
        ipaddress.ip_address(s)
        address = "%" not in s
    except ValueError:
        address = False
    assert r._CHECKS["ip"](s) == address, s
    addr, slash, length = s.partition("/")
    prefix = (
        bool(slash)
        and r._CHECKS["ip"](addr)
        and length.isascii()
        and length.isdigit()
        and str(int(length)) == length
        and int(length) <= (32 if ":" not in addr else 128)
    )
    assert r._CHECKS["prefix"](s) == prefix, s
    if prefix:
        ipaddress.ip_network(s, strict=False)  # what the collector does with it later


@pytest.mark.parametrize("value", NEAR_MISSES)
def test_near_misses_get_the_same_answer_in_every_string_field(value):
    doc = r.to_dict(
        r.report_from_dict(
            {
                "id": "7b0f3c1e-1111-4222-8333-944445555666",
                "seq": 1,
                "agent": {
                    "id": "a",
                    "site": "s",
                    "role": "branch",
                    "version": "1",
                    "hostname": "h",
                },
                "started_at": "2026-11-27T10:00:00Z",
                "duration_s": 1.0,
                "site": {
                    "circuits": [
                        {
                            "name": "c",
                            "location": "l",
                            "sku": "standard",
                            "primary_subnet": "203.0.113.0/30",
                            "secondary_subnet": "203.0.113.4/30",
                        }
                    ]
                },
                "msee_probes": [{"circuit": "c", "link": "primary", "address": "203.0.113.2"}],
            }
        )
    )
    for path in (
        ("id",),
        ("started_at",),
        ("site", "circuits", 0, "primary_subnet"),
        ("msee_probes", 0, "address"),
        ("agent", "id"),
    ):
        mutated = _mutate(doc, path, "replace", value)
        assert decoder_accepts(mutated) == schema_accepts(mutated), (path, value)
        assert (fast_decode(mutated) is not None) == schema_accepts(mutated), (path, value)
