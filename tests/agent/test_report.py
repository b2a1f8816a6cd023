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
            evidence=(
                r.Evidence(
                    kind="msee-hop",
                    text="hop 3 203.0.113.2 is the MSEE of circuit ams-1 (primary link)",
                    circuit="ams-1",
                    link="primary",
                    ttl=3,
                    address="203.0.113.2",
                ),
                r.Evidence(
                    kind="advertised",
                    text="192.0.2.0/27 is advertised over circuit ams-1",
                    circuit="ams-1",
                    prefix="192.0.2.0/27",
                ),
            ),
            expected="expressroute",
            matches_expected=True,
            links_seen=(r.LinkSeen(link="primary", flows=6),),
            msee_flows=6,
        ),
        findings=(
            r.Finding(
                kind="return-hops-mismatch",
                severity="info",
                evidence=(r.Evidence(kind="note", text="5 hops out, 6 back"),),
            ),
        ),
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
        msee_probes=(
            r.MseeProbe(circuit="ams-1", link="primary", address="203.0.113.2", answered=True),
        ),
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
            "'not-an-ip' is not an IP address (e.g. 192.0.2.1 or 2001:db8::1, no zone index)",
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
            "unsupported schema 'erpath.report/9'; "
            "this collector supports erpath.report/1, erpath.report/2",
        )
    ]


def test_not_an_object():
    with pytest.raises(r.ReportError) as e:
        r.report_from_dict([1, 2])
    assert e.value.errors == [r.FieldError("/", "must be an object")]


TIME_HELP = "is not an RFC 3339 time with a zone (e.g. 2026-11-27T10:00:00Z)"
UUID_HELP = "is not a UUID (8-4-4-4-12 hex digits)"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("id", "nope", f"'nope' {UUID_HELP}"),
        ("id", "not-a-uuid", f"'not-a-uuid' {UUID_HELP}"),
        # uuid.UUID() takes these; a report id is the canonical form only.
        ("id", "7b0f3c1e11114222833394444555566", f"'7b0f3c1e11114222833394444555566' {UUID_HELP}"),
        (
            "id",
            "{7b0f3c1e-1111-4222-8333-944445555666}",
            f"'{{7b0f3c1e-1111-4222-8333-944445555666}}' {UUID_HELP}",
        ),
        (
            "id",
            "00000000-0000-0000-0000-0000000000-00",
            f"'00000000-0000-0000-0000-0000000000-00' {UUID_HELP}",
        ),
        ("id", "7b0f3c1e-1111-4222-8333-944445555666\n", None),
        ("started_at", "yesterday", f"'yesterday' {TIME_HELP}"),
        ("started_at", "2026-11-27T10:00:00", f"'2026-11-27T10:00:00' {TIME_HELP}"),
        # datetime.fromisoformat accepted all of these.
        ("started_at", "2026-W01-1", f"'2026-W01-1' {TIME_HELP}"),
        ("started_at", "2026-W01-1T10:00:00Z", None),
        ("started_at", "20261127T100000Z", None),
        ("started_at", "2026-11-27 10:00:00Z", None),
        ("started_at", "2026-11-27T10:00Z", None),
        ("started_at", "2026-11-27T10:00:00+0100", None),
        ("started_at", "2026-11-27T10:00:00,5Z", None),
        ("started_at", "2026-11-27", None),
        ("started_at", "2026-331T10:00:00Z", None),
        # The pattern allows day 30; the calendar does not.
        ("started_at", "2026-02-29T10:00:00Z", None),
        ("started_at", "2026-04-31T10:00:00Z", None),
        ("started_at", "0000-01-01T00:00:00Z", None),
        ("started_at", "2026-11-27T23:59:60Z", None),
        ("started_at", "2026-11-27T10:00:00Z\n", None),
    ],
)
def test_identity_and_time_formats(key, value, message):
    doc = r.to_dict(_sample()) | {key: value}
    with pytest.raises(r.ReportError) as e:
        r.report_from_dict(doc)
    help_ = UUID_HELP if key == "id" else TIME_HELP
    assert e.value.errors == [r.FieldError(f"/{key}", message or f"{value!r} {help_}")]


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-27T10:00:00Z",
        "2026-11-27T10:00:00.123456789Z",
        "2026-11-27T10:00:00+01:00",
        "2026-11-27T10:00:00-00:00",
        "2024-02-29T00:00:00Z",
        "2026-12-31T23:59:59.9-23:59",
    ],
)
def test_rfc3339_times_are_accepted(value):
    assert r.report_from_dict(r.to_dict(_sample()) | {"started_at": value}).started_at == value


def _reply_address(doc, value):
    doc["results"][0]["trace"]["hops"][1]["replies"][0]["address"] = value


def _subnet(doc, value):
    doc["site"]["circuits"][0]["primary_subnet"] = value


def _gateway(doc, value):
    doc["results"][0]["route"]["gateway"] = value


def _dns_address(doc, value):
    doc["results"][0]["dns"]["addresses"].append(value)


def _advertised(doc, value):
    doc["site"]["circuits"][0]["advertised_prefixes"].append(value)


@pytest.mark.parametrize(
    ("set_", "value", "ok"),
    [
        (_reply_address, "192.0.2.1", True),
        (_reply_address, "2001:db8::1", True),
        (_reply_address, "::ffff:192.0.2.1", True),
        (_reply_address, "192.0.2.01", False),  # leading zero: octal to some parsers
        (_reply_address, "fe80::1%eth0", False),  # a zone index means nothing off the host
        (_reply_address, "192.0.2.1/32", False),
        (_reply_address, "2001:db8::1::2", False),
        (_reply_address, " 192.0.2.1", False),
        (_subnet, "203.0.113.0/30", True),
        (_subnet, "203.0.113.1/30", True),  # host bits: a CE's view of its /30
        (_subnet, "2001:db8:1::/126", True),
        (_subnet, "0.0.0.0/0", True),
        (_subnet, "203.0.113.0", False),
        (_subnet, "203.0.113.0/33", False),
        (_subnet, "203.0.113.0/030", False),
        (_subnet, "203.0.113.0/255.255.255.252", False),  # ipaddress took netmasks
        (_subnet, "2001:db8::/129", False),
        (_subnet, "fe80::%eth0/64", False),
        # Every field that carries an address or a prefix, not only hops.
        (_gateway, "10.0.0.1", True),
        (_gateway, "eth0", False),
        (_dns_address, "2001:db8::10", True),
        (_dns_address, "make.powerapps.com", False),
        (_advertised, "198.51.100.0/28", True),
        (_advertised, "198.51.100.0", False),
    ],
)
def test_address_and_prefix_formats(set_, value, ok):
    doc = r.to_dict(_sample())
    set_(doc, value)
    if ok:
        r.report_from_dict(doc)
        return
    with pytest.raises(r.ReportError) as e:
        r.report_from_dict(doc)
    (error,) = e.value.errors
    assert error.message.startswith(repr(value)), error


def test_integral_numbers_are_integers_as_in_json_schema():
    doc = r.to_dict(_sample()) | {"seq": 7.0}
    rep = r.report_from_dict(doc)
    assert rep.seq == 7 and type(rep.seq) is int
    for bad, message in ((7.5, "must be an integer"), (2**63, "non-negative 64-bit")):
        with pytest.raises(r.ReportError) as e:
            r.report_from_dict(doc | {"seq": bad})
        assert message in e.value.errors[0].message


def test_every_error_is_named_not_just_the_first():
    doc = r.to_dict(_sample()) | {"id": "x", "seq": -1, "colour": "red"}
    del doc["agent"]["site"]
    with pytest.raises(r.ReportError) as e:
        r.report_from_dict(doc)
    assert sorted(err.field for err in e.value.errors) == [
        "/agent/site",
        "/colour",
        "/id",
        "/seq",
    ]


def test_pointer_escapes_odd_keys():
    doc = r.to_dict(_sample()) | {"a/b~c": 1}
    with pytest.raises(r.ReportError) as e:
        r.report_from_dict(doc)
    assert e.value.errors == [r.FieldError("/a~1b~0c", "is not a known field")]


# --------------------------------------------------------------------------- erpath.report/1


def _v1() -> dict:
    """A report as an agent of schema /1 sent it: evidence as sentences."""
    doc = r.to_dict(_sample())
    doc["schema"] = "erpath.report/1"
    verdict = doc["results"][0]["verdict"]
    for key in ("links_seen", "msee_flows"):
        del verdict[key]
    verdict["evidence"] = ["hop 3 203.0.113.2 is the MSEE of circuit ams-1 (primary link)"]
    finding = doc["results"][0]["findings"][0]
    del finding["circuit"], finding["predicted_only"]
    finding["evidence"] = ["5 hops out, 6 back"]
    del doc["msee_probes"]
    return doc


def test_report_1_decodes_into_the_current_model():
    rep = r.report_from_dict(_v1())
    assert rep.schema == r.SCHEMA
    (result,) = rep.results
    assert result.verdict.evidence == (
        r.Evidence(
            kind="note", text="hop 3 203.0.113.2 is the MSEE of circuit ams-1 (primary link)"
        ),
    )
    assert result.findings[0].evidence == (r.Evidence(kind="note", text="5 hops out, 6 back"),)
    assert result.verdict.links_seen == () and rep.msee_probes == ()


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (
            lambda d: d["results"][0]["verdict"]["evidence"].append({"kind": "note", "text": "x"}),
            "/results/0/verdict/evidence/1",
            "must be a string",
        ),
        (
            lambda d: d["results"][0]["findings"][0].update(kind="asymmetry.x"),
            "/results/0/findings/0/kind",
            "must be one of asymmetric-nat, asymmetric-circuit, handshake-blackhole, "
            "return-hops-mismatch, nat-pool-on-internet, premium-required",
        ),
        (  # a kind added in /2 is not a /1 finding
            lambda d: d["results"][0]["findings"][0].update(kind="ipv6-blackhole"),
            "/results/0/findings/0/kind",
            "must be one of asymmetric-nat, asymmetric-circuit, handshake-blackhole, "
            "return-hops-mismatch, nat-pool-on-internet, premium-required",
        ),
        (
            lambda d: d["results"][0]["findings"][0]["evidence"].append("x" * 2000),
            "/results/0/findings/0/evidence/1",
            "is 2000 characters long, at most 1024",
        ),
        (lambda d: d.update(id="not-a-uuid"), "/id", f"'not-a-uuid' {UUID_HELP}"),
    ],
)
def test_report_1_is_checked_by_the_same_rules(mutate, field, message):
    doc = _v1()
    mutate(doc)
    with pytest.raises(r.ReportError) as e:
        r.report_from_dict(doc)
    assert e.value.errors == [r.FieldError(field, message)]


def test_report_2_evidence_must_be_facts_not_sentences():
    doc = r.to_dict(_sample())
    doc["results"][0]["verdict"]["evidence"] = ["hop 3 is the MSEE"]
    with pytest.raises(r.ReportError) as e:
        r.report_from_dict(doc)
    assert e.value.errors == [r.FieldError("/results/0/verdict/evidence/0", "must be an object")]
