"""Ingest fuzzing: 10,000 hostile requests against a real `erpath-collector serve`.

Every answer must be below 500; every rejection an RFC 9457 problem+json
whose `errors` name the field (JSON pointer, `body`, `header/<name>`).  The
process must survive and its RSS stay bounded.  Counts: 6,000 mutated
reports + 3,000 hostile bodies + 1,000 hostile Authorization headers + the
explicit bombs below.
"""

from __future__ import annotations

import gzip
import http.client
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.reliability.procs import CollectorProcess, add_tokens, rss_mib

from .hostile import (
    AGENT,
    base_report,
    fresh,
    gzip_bomb,
    hostile_authorization,
    hostile_body,
    mutated_report,
)

pytestmark = pytest.mark.timeout(600)

FIELD = re.compile(r"^(/.*|body|header/[A-Za-z-]+)$", re.DOTALL)
# Body limit of the collector under test: large enough for a real report, small
# enough that the 4 MiB+ cases below are cheap to send.
BODY_LIMIT = 1 << 20
RSS_GROWTH_LIMIT_MIB = 150.0

FUZZ = settings(
    deadline=None,
    database=None,
    phases=[Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)


class Client:
    """A keep-alive HTTP/1.1 client that reconnects when the collector closes the socket."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.conn: http.client.HTTPConnection | None = None
        self.sent = 0
        self.statuses: dict[int, int] = {}

    def post(
        self,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        authorization: str | bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        hdrs: dict[str, str | bytes] = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.token}" if authorization is None else authorization,
        }
        hdrs.update(headers or {})
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request("POST", "/api/v1/reports", body=body, headers=hdrs)
                resp = self.conn.getresponse()
                out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
                if resp.will_close:
                    self.conn.close()
                    self.conn = None
                break
            except (ConnectionError, http.client.HTTPException):
                # A server may close after refusing a large body mid-upload; a real client reconnects.
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        self.sent += 1
        self.statuses[out[0]] = self.statuses.get(out[0], 0) + 1
        return out


def check(
    status: int, headers: dict[str, str], body: bytes, *, protocol_error_ok: bool = False
) -> None:
    assert status < 500, body[:2000]
    if status < 400:
        assert json.loads(body)["status"] in ("accepted", "duplicate")
        return
    if protocol_error_ok and headers["content-type"].startswith("text/plain"):
        # Not HTTP at all (a control character in a header): aiohttp's parser answers
        # 400 and closes before any handler runs; nothing of the app is reached.
        assert status == 400 and body.startswith(b"Invalid header value char"), body
        return
    assert headers["content-type"].startswith("application/problem+json"), (status, body[:500])
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["errors"], problem
    for e in problem["errors"]:
        assert FIELD.match(e["field"]) and e["message"], problem


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    tokens = add_tokens(tmp / "collector.db", [AGENT])
    proc = CollectorProcess(
        tmp,
        server=f"body_limit_bytes = {BODY_LIMIT}",
        ingest=(
            "rate_per_agent_per_s = 100000.0\nburst_per_agent = 100000\n"
            "failed_auth_per_address_per_s = 100000.0\nfailed_auth_burst_per_address = 100000"
        ),
    )
    proc.start()
    client = Client(proc.port, tokens[AGENT])
    rss_start = rss_mib(proc.pid)
    yield proc, client
    try:
        assert proc.alive(), proc.log.read_text()[-3000:]
        growth = rss_mib(proc.pid) - rss_start
        print(
            f"\nfuzz: {client.sent} requests, statuses {sorted(client.statuses.items())}, "
            f"collector RSS {rss_start:.0f} MiB -> +{growth:.0f} MiB"
        )
        assert growth < RSS_GROWTH_LIMIT_MIB
        assert "Traceback" not in proc.log.read_text()
    finally:
        proc.stop()


@settings(FUZZ, max_examples=6000)
@given(body=mutated_report())
def test_mutated_reports_get_a_4xx_naming_the_field(collector, body):
    proc, client = collector
    status, headers, answer = client.post(fresh(body))
    check(status, headers, answer)
    if status == 422:
        assert all(
            e["field"].startswith("/") or e["field"] == "body" for e in json.loads(answer)["errors"]
        )


@settings(FUZZ, max_examples=3000)
@given(case=hostile_body())
def test_hostile_bytes_get_a_4xx(collector, case):
    proc, client = collector
    body, headers = case
    if headers.get("Content-Encoding") is None:
        body = fresh(body)
    check(*client.post(body, headers))


@settings(FUZZ, max_examples=1000)
@given(authorization=hostile_authorization)
def test_hostile_authorization_is_401(collector, authorization):
    proc, client = collector
    status, headers, body = client.post(
        json.dumps(base_report()).encode(), authorization=authorization
    )
    check(status, headers, body, protocol_error_ok=True)
    assert status in (400, 401), body


@pytest.mark.parametrize(("name", "expanded"), [("bomb-16MiB", 16 << 20), ("bomb-1GiB", 1 << 30)])
def test_gzip_bombs_are_413_without_inflating(collector, name, expanded):
    proc, client = collector
    bomb = gzip_bomb(expanded)
    before = rss_mib(proc.pid)
    status, headers, body = client.post(bomb, {"Content-Encoding": "gzip"})
    check(status, headers, body)
    # 1 GiB compresses to ~1 MiB, at the body limit; either limit may fire first.
    assert status == 413, (name, status, body)
    assert rss_mib(proc.pid) - before < 50


def test_oversized_plain_and_declared_bodies_are_413(collector):
    proc, client = collector
    status, headers, body = client.post(b"[" * (BODY_LIMIT + 1))
    check(status, headers, body)
    assert status == 413
    doc = base_report()
    doc["results"] = doc["results"] * 2000  # ~2.5 MiB, compresses below the limit
    status, headers, body = client.post(
        gzip.compress(json.dumps(doc).encode()), {"Content-Encoding": "gzip"}
    )
    check(status, headers, body)
    assert status == 413


def test_a_valid_report_still_goes_in_after_the_fuzzing(collector):
    proc, client = collector
    status, headers, body = client.post(json.dumps(base_report()).encode())
    assert status == 201, body
