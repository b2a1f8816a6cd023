"""The sender against real HTTP servers: nothing acknowledged by mistake, nothing dropped that
could still be accepted, and the token never sent anywhere but the configured collector.

Answers from a real `erpath-collector serve` where it can give them (acknowledged, duplicate,
409, 422, its own 413); a scripted loopback server for what stands between an agent and its
collector (a redirect, a proxy's 413, a captive portal's 200, a collector of an older release).
"""

from __future__ import annotations

import json

import pytest

from agent.report import SCHEMA
from agent.service.sender import CollectorEndpoint, Sender
from agent.service.spool import Spool
from tests.collector.reports import er, simple
from tests.reliability.procs import CollectorProcess, add_tokens

from .answers import Answer, AnswerServer

pytestmark = pytest.mark.timeout(120)


def spool_one(tmp_path, doc: dict, name: str = "spool") -> Spool:
    spool = Spool(tmp_path / name, max_bytes=10_000_000, max_age_s=3600)
    spool.put(doc["seq"], doc["id"], json.dumps(doc).encode())
    return spool


def deliver_once(url: str, spool: Spool, token: str = "tok"):
    (item,) = spool.pending()
    return Sender(CollectorEndpoint(url=url, token=token)).deliver(item)


def test_a_redirect_is_not_followed_and_the_token_stays_home(tmp_path):
    """302 → GET 200 used to be an acknowledgement (report deleted) with the token sent along."""
    with AnswerServer(Answer(200, b'{"ok": true}')) as elsewhere:
        for status in (301, 302, 303, 307, 308):
            redirect = Answer(status, headers={"Location": f"{elsewhere.url}/api/v1/reports"})
            with AnswerServer(redirect) as collector:
                spool = spool_one(tmp_path, simple("br-1", 1, er()), f"spool-{status}")
                d = deliver_once(collector.url, spool, token="s3cret")
                assert (d.outcome, d.code, d.status) == ("retry", "redirect", status), d
                assert elsewhere.url in d.detail and "[collector] url" in d.detail
                assert len(spool) == 1
                assert [r.method for r in collector.requests] == ["POST"]
        assert elsewhere.requests == []  # neither the report nor the token went there


def test_a_200_that_does_not_name_this_report_is_no_acknowledgement(tmp_path):
    doc = simple("br-1", 1, er())
    portal = Answer(200, b"<html>Welcome to the hotel wifi</html>", {"Content-Type": "text/html"})
    other = Answer(201, json.dumps({"id": "another-report", "status": "accepted"}).encode())
    for answer in (portal, other):
        with AnswerServer(answer) as server:
            spool = spool_one(tmp_path, doc, f"spool-{answer.status}")
            d = deliver_once(server.url, spool)
            assert (d.outcome, d.code) == ("retry", "bad-answer"), d
            assert len(spool) == 1


def test_a_collector_of_an_older_release_keeps_the_reports_spooled(tmp_path):
    """Its 422 lists supported_schemas without ours: an upgrade in progress, not a bad report."""
    older = Answer.problem(
        422,
        detail="the report is not a valid erpath.report/1 document",
        supported_schemas=["erpath.report/1"],
        errors=[{"field": "/schema", "message": "unsupported"}],
    )
    with AnswerServer(older) as server:
        spool = spool_one(tmp_path, simple("br-1", 1, er()))
        d = deliver_once(server.url, spool)
    assert (d.outcome, d.code) == ("retry", "schema-unsupported"), d
    assert d.detail == f"collector does not support {SCHEMA} yet (it takes erpath.report/1)"
    assert len(spool) == 1


@pytest.mark.parametrize(
    "answer",
    [
        Answer(413, b"<html>413 Request Entity Too Large</html>", {"Content-Type": "text/html"}),
        Answer(400, b"Bad Request", {"Content-Type": "text/plain"}),
        Answer(422, b""),
        Answer.problem(415, detail="Content-Encoding br is not supported"),
    ],
    ids=["proxy-413", "proxy-400", "bare-422", "collector-415"],
)
def test_answers_that_do_not_judge_the_report_keep_it(tmp_path, answer):
    with AnswerServer(answer) as server:
        spool = spool_one(tmp_path, simple("br-1", 1, er()))
        d = deliver_once(server.url, spool)
    assert d.outcome == "retry" and d.status == answer.status, d
    assert len(spool) == 1


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sender")
    tokens = add_tokens(tmp / "collector.db", ["br-1"])
    proc = CollectorProcess(tmp, server="body_limit_bytes = 20000")
    proc.start()
    yield proc, tokens["br-1"]
    proc.stop()


def test_the_real_collector_acknowledges_by_id_duplicates_too(collector, tmp_path):
    proc, token = collector
    doc = simple("br-1", 1, er())
    for name, code, status in (("first", "accepted", 201), ("again", "duplicate", 200)):
        spool = spool_one(tmp_path, doc, name)
        d = deliver_once(proc.url, spool, token)
        assert (d.outcome, d.code, d.status) == ("acked", code, status), d


def test_the_real_collectors_final_answers(collector, tmp_path):
    proc, token = collector
    assert (
        deliver_once(proc.url, spool_one(tmp_path, simple("br-1", 2, er()), "a"), token).outcome
        == "acked"
    )
    # The same seq under another id: 409 is final for that report.
    d = deliver_once(proc.url, spool_one(tmp_path, simple("br-1", 2, er()), "b"), token)
    assert (d.outcome, d.code, d.status) == ("conflict", "seq-conflict", 409), d
    # A report the collector's validator refuses: it can never be accepted.
    bad = simple("br-1", 3, er())
    bad["duration_s"] = -1
    d = deliver_once(proc.url, spool_one(tmp_path, bad, "c"), token)
    assert (d.outcome, d.code, d.status) == ("refused", "invalid-report", 422), d
    # Larger than this collector's body_limit_bytes (its own problem+json 413).
    big = simple("br-1", 4, er())
    big["agent"]["hostname"] = "h" * 1000
    big["results"] = big["results"] * 40
    d = deliver_once(proc.url, spool_one(tmp_path, big, "d"), token)
    assert (d.outcome, d.code, d.status) == ("refused", "too-large", 413), d
    # A wrong token: the admin's problem, the report stays.
    d = deliver_once(proc.url, spool_one(tmp_path, simple("br-1", 5, er()), "e"), "wrong")
    assert (d.outcome, d.code, d.status) == ("retry", "unauthorized", 401), d


def test_a_report_dropped_by_the_spool_meanwhile_is_gone_not_a_crash(tmp_path):
    spool = spool_one(tmp_path, simple("br-1", 1, er()))
    (item,) = spool.pending()
    item.path.unlink()
    with AnswerServer(Answer(500)) as server:
        d = Sender(CollectorEndpoint(url=server.url, token="t")).deliver(item)
    assert d.outcome == "gone" and server.requests == []
