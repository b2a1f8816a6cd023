"""The report model: round trip, validation errors that name the field, and the committed schema."""

import json
from pathlib import Path

import jsonschema
import pytest

from agent import report as r

SCHEMA_FILE = Path(r.__file__).with_name("report.schema.json")


def _sample() -> r.Report:
    hop = r.Hop(
        ttl=3,
        replies=(
            r.Reply(
                address="203.0.113.2",
                rtt_s=0.0012,
                icmp_type=11,
                icmp_code=0,
                mpls=(r.MplsLabel(label=16001, tc=0, bottom=True, ttl=1),),
                ptr="msee1.ntwk.msn.net",
                asn=12076,
            ),
        ),
    )
    result = r.Result(
        target="make.powerapps.com",
        role="service",
        port=443,
        address="198.18.10.10",
        dns=r.DnsResult(
            cname_chain=("x.trafficmanager.net",),
            addresses=("198.18.10.10",),
            ttl_s=60,
            duration_s=0.003,
            answers=(r.DnsAnswer(resolver="198.18.53.53", addresses=("198.18.10.10",)),),
        ),
        route=r.RouteResult(
            interface="eth0", gateway="10.0.0.1", source="10.0.0.2", table=254, protocol="bgp"
        ),
        tcp=r.TcpResult(
            port=443, state="open", method="raw", connect_s=0.004, reply_ttl=58, return_hops=6
        ),
        trace=r.Trace(protocol="tcp", flow=33434, reached=True, hops=(r.Hop(ttl=1), hop)),
        verdict=r.Verdict(
            path_class="expressroute",
            confidence=0.95,
            circuit="ams-1",
            link="primary",
            evidence=("hop 3 203.0.113.2 is the MSEE of circuit ams-1 (primary link)",),
            expected="expressroute",
            matches_expected=True,
        ),
        findings=(r.Finding(kind="return-hops-mismatch", severity="info", evidence=("5 vs 6",)),),
    )
    return r.Report(
        id="7b0f3c1e-1111-4222-8333-944445555666",
        seq=7,
        agent=r.AgentInfo(
            id="br-1", site="branch-ams", role="branch", version="0.1.0", hostname="h"
        ),
        started_at="2026-11-27T10:00:00.000Z",
        duration_s=1.25,
        site=r.SiteFacts(
            circuits=(
                r.Circuit(
                    name="ams-1",
                    location="Amsterdam",
                    sku="standard",
                    primary_subnet="203.0.113.0/30",
                    secondary_subnet="203.0.113.4/30",
                    advertised_prefixes=("192.0.2.0/27",),
                ),
            )
        ),
        health=r.Health(cycle_s=1.3),
        results=(result,),
    )


def test_round_trip_through_json():
    rep = _sample()
    doc = json.loads(json.dumps(r.to_dict(rep)))
    assert doc["results"][0]["verdict"]["class"] == "expressroute"
    assert r.report_from_dict(doc) == rep


def test_output_validates_against_committed_schema():
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(
        r.to_dict(_sample())
    )


def test_committed_schema_is_current():
    assert json.loads(SCHEMA_FILE.read_text()) == r.json_schema(), "run: python -m agent.report"


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda d: d.pop("seq"), "/seq", "is required"),
        (lambda d: d.update(seq="7"), "/seq", "must be an integer"),
        (
            lambda d: d.update(duration_s=float("nan")),
            "/duration_s",
            "must be a finite, non-negative number",
        ),
        (lambda d: d.update(duration_s=-1), "/duration_s", "must be a finite, non-negative number"),
        (
            lambda d: d["results"][0]["verdict"].update({"class": "satellite"}),
            "/results/0/verdict/class",
            "must be one of expressroute, internet, cdn, unknown",
        ),
        (
            lambda d: d["results"][0]["trace"]["hops"][1]["replies"][0].update(address="not-an-ip"),
            "/results/0/trace/hops/1/replies/0/address",
            "'not-an-ip' is not an IP address",
        ),
        (lambda d: d.update(extra=1), "/extra", "is not a known field"),
        (
            lambda d: d["agent"].update(id="x" * 5000),
            "/agent/id",
            "is 5000 characters long, at most 1024",
        ),
        (lambda d: d.update(results={}), "/results", "must be an array"),
        (lambda d: d.update(seq=True), "/seq", "must be an integer"),
    ],
)
def test_invalid_documents_name_the_field(mutate, field, message):
    doc = r.to_dict(_sample())
    mutate(doc)
    with pytest.raises(r.ReportError) as e:
        r.report_from_dict(doc)
    assert r.FieldError(field, message) in e.value.errors


def test_unknown_schema_names_the_supported_ones():
    doc = r.to_dict(_sample()) | {"schema": "erpath.report/9"}
    with pytest.raises(r.ReportError) as e:
        r.report_from_dict(doc)
    assert e.value.errors == [
        r.FieldError(
            "/schema",
            "unsupported schema 'erpath.report/9'; this collector supports erpath.report/1",
        )
    ]


def test_not_an_object():
    with pytest.raises(r.ReportError) as e:
        r.report_from_dict([1, 2])
    assert e.value.errors == [r.FieldError("/", "must be an object")]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("id", "nope", "'nope' is not a UUID"),
        ("started_at", "yesterday", "'yesterday' is not an RFC 3339 time with a zone"),
        (
            "started_at",
            "2026-11-27T10:00:00",
            "'2026-11-27T10:00:00' is not an RFC 3339 time with a zone",
        ),
    ],
)
def test_identity_and_time_formats(key, value, message):
    doc = r.to_dict(_sample()) | {key: value}
    with pytest.raises(r.ReportError) as e:
        r.report_from_dict(doc)
    assert e.value.errors == [r.FieldError(f"/{key}", message)]
