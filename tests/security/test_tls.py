"""TLS end to end: the collector serves TLS, the agent's sender verifies it with
its CA file (a wrong CA fails, the report stays spooled and goes once the CA is
right), and with mutual TLS a verified client certificate must name the
report's agent (CN or SAN), else 403 — a stolen token alone is not enough.
"""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path

import pytest

from agent.service.sender import CollectorEndpoint, Sender
from agent.service.spool import Spool
from collector import queries
from collector.config import ConfigError, from_dict
from collector.store import Store
from tests.collector.reports import er, simple
from tests.reliability.procs import CollectorProcess, add_tokens

from . import pki

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tls_collector(tmp_path_factory):
    tmp: Path = tmp_path_factory.mktemp("tls")
    certs = pki.make(tmp)
    tokens = add_tokens(tmp / "collector.db", ["br-1", "br-2"])
    proc = CollectorProcess(
        tmp,
        server=(
            f'tls_cert_file = "{certs["server.crt"]}"\ntls_key_file = "{certs["server.key"]}"\n'
            f'client_ca_file = "{certs["ca"]}"'
        ),
    )
    proc.tls = ssl.create_default_context(cafile=str(certs["ca"]))
    # Every client presents a certificate now, the readiness probe too.
    proc.tls.load_cert_chain(str(certs["br-1.crt"]), str(certs["br-1.key"]))
    proc.start()
    yield proc, certs, tokens
    try:
        assert "Traceback" not in proc.log.read_text()
    finally:
        proc.stop()


def post(
    proc: CollectorProcess, certs: dict, token: str, doc: dict, cert: str | None
) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    if cert:
        ctx.load_cert_chain(str(certs[f"{cert}.crt"]), str(certs[f"{cert}.key"]))
    conn = http.client.HTTPSConnection("127.0.0.1", proc.port, timeout=10, context=ctx)
    try:
        conn.request(
            "POST",
            "/api/v1/reports",
            body=json.dumps(doc),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_certificate_naming_the_agent_is_accepted_by_cn_or_san(tls_collector):
    proc, certs, tokens = tls_collector
    assert post(proc, certs, tokens["br-1"], simple("br-1", 1, er()), "br-1")[0] == 201
    assert post(proc, certs, tokens["br-1"], simple("br-1", 2, er()), "san")[0] == 201


def test_certificate_of_another_agent_is_403_even_with_the_right_token(tls_collector):
    proc, certs, tokens = tls_collector
    status, problem = post(proc, certs, tokens["br-1"], simple("br-1", 10, er()), "br-2")
    assert status == 403, problem
    assert problem["errors"] == [
        {"field": "/agent/id", "message": "must equal the client certificate's CN or a DNS/URI SAN"}
    ]
    assert "'br-2'" in problem["detail"]
    # And br-2's own token with br-2's certificate cannot report as br-1 either (token binding).
    assert post(proc, certs, tokens["br-2"], simple("br-1", 11, er()), "br-2")[0] == 403


def test_certificate_from_an_untrusted_ca_fails_the_handshake(tls_collector):
    proc, certs, tokens = tls_collector
    with pytest.raises((ssl.SSLError, ConnectionError)):
        post(proc, certs, tokens["br-1"], simple("br-1", 20, er()), "rogue")


def test_without_a_certificate_the_handshake_fails_the_token_alone_is_not_enough(tls_collector):
    """client_ca_file implies a required certificate (issue 14, item 6): before, a client
    sending none was let in on its token alone."""
    proc, certs, tokens = tls_collector
    with pytest.raises((ssl.SSLError, ConnectionError)):
        post(proc, certs, tokens["br-2"], simple("br-2", 1, er()), None)
    assert post(proc, certs, tokens["br-2"], simple("br-2", 1, er()), "br-2")[0] == 201


def test_client_cert_required_false_with_a_client_ca_is_refused_at_load(tmp_path):
    certs = pki.make(tmp_path)
    doc = {
        "server": {
            "tls_cert_file": str(certs["server.crt"]),
            "tls_key_file": str(certs["server.key"]),
            "client_ca_file": str(certs["ca"]),
            "client_cert_required": False,
        }
    }
    with pytest.raises(ConfigError) as caught:
        from_dict(doc, "c.toml")
    assert list(caught.value.problems) == [
        "c.toml: [server] client_cert_required = false: with client_ca_file every client must"
        " present a certificate that names its agent; remove client_cert_required"
        " (or client_ca_file to go without client certificates)"
    ]
    del doc["server"]["client_cert_required"]
    assert from_dict(doc, "c.toml").server.client_cert_required


def _spool_one(tmp: Path, agent: str, seq: int) -> Spool:
    spool = Spool(tmp / f"spool-{agent}-{seq}", max_bytes=10_000_000, max_age_s=3600)
    doc = simple(agent, seq, er())
    spool.put(seq, doc["id"], json.dumps(doc).encode())
    return spool


def _stored_seqs(proc: CollectorProcess, agent: str) -> list[int]:
    store = Store(proc.db)  # a second reader on the live WAL database
    try:
        return sorted(o["seq"] for o in store.read_sync(queries.observations, agent, 1000))
    finally:
        store.close()


def test_agent_sender_verifies_the_collector_with_its_ca_file(tls_collector, tmp_path):
    proc, certs, tokens = tls_collector
    token_file_agent = "br-2"
    spool = _spool_one(tmp_path, token_file_agent, 100)
    (item,) = spool.pending()

    for ca_file in (str(certs["other-ca"]), None):  # a wrong CA, then the system store
        wrong = Sender(
            CollectorEndpoint(url=proc.url, token=tokens[token_file_agent], ca_file=ca_file)
        )
        d = wrong.deliver(item)
        assert d.outcome == "retry" and "CERTIFICATE_VERIFY_FAILED" in d.detail, d
    assert len(spool) == 1  # nothing acknowledged, nothing lost
    assert 100 not in _stored_seqs(proc, token_file_agent)

    right = Sender(
        CollectorEndpoint(
            url=proc.url,
            token=tokens[token_file_agent],
            ca_file=str(certs["ca"]),
            client_cert=str(certs["br-2.crt"]),  # mTLS: this collector requires one
            client_key=str(certs["br-2.key"]),
        )
    )
    d = right.deliver(item)
    assert d.outcome == "acked" and d.status == 201, d
    spool.ack(item)
    assert len(spool) == 0 and _stored_seqs(proc, token_file_agent).count(100) == 1


def test_agent_sender_with_a_client_certificate(tls_collector, tmp_path):
    proc, certs, tokens = tls_collector
    spool = _spool_one(tmp_path, "br-1", 200)
    (item,) = spool.pending()
    ok = Sender(
        CollectorEndpoint(
            url=proc.url,
            token=tokens["br-1"],
            ca_file=str(certs["ca"]),
            client_cert=str(certs["br-1.crt"]),
            client_key=str(certs["br-1.key"]),
        )
    )
    assert ok.deliver(item).outcome == "acked"
    # Another agent's certificate: 403 is a set-up problem; the agent keeps the report and retries.
    spool2 = _spool_one(tmp_path, "br-1", 201)
    (item2,) = spool2.pending()
    bad = Sender(
        CollectorEndpoint(
            url=proc.url,
            token=tokens["br-1"],
            ca_file=str(certs["ca"]),
            client_cert=str(certs["br-2.crt"]),
            client_key=str(certs["br-2.key"]),
        )
    )
    d = bad.deliver(item2)
    assert (d.outcome, d.status) == ("retry", 403) and "br-2" in d.detail
    assert len(spool2) == 1
