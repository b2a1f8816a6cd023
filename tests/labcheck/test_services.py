"""Service hosts: TLS on 443 for every target, a closed and a filtered address."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.lab import Lab, plan

from .tools import tcp_connect

pytestmark = pytest.mark.lab


def test_tls_on_every_target(lab: Lab) -> None:
    env = lab.env()
    ctx = ssl.create_default_context(cafile=env["tls"]["cert_file"])
    for t in env["targets"]:
        with lab.netns("branch"):
            raw = socket.socket()
        raw.settimeout(3)
        raw.connect((t["address"], t["port"]))
        with ctx.wrap_socket(raw, server_hostname=t["name"]) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {t['name']}\r\n\r\n".encode())
            body = tls.recv(4096).decode()
        assert "200 OK" in body and t["address"] in body and t["name"] in body
        # Front Door's CDN host, the third-party CDN's edge, or the service host.
        host = plan.owner_of(t["address"])
        assert host in (("cdn", "extcdn") if t["role"] == "cdn" else ("svc",)), t["name"]
        assert f"erpath-lab {host} " in body


def test_openssl_s_client_handshake(lab: Lab) -> None:
    cert = lab.env()["tls"]["cert_file"]
    r = lab.run(
        "dchost",
        [
            "openssl",
            "s_client",
            "-connect",
            "198.19.20.10:443",
            "-servername",
            "login.microsoftonline.com",
            "-CAfile",
            cert,
            "-verify_return_error",
        ],
        input="",
        timeout=15,
    )
    assert "Verify return code: 0 (ok)" in r.stdout


def test_closed_and_filtered_addresses(lab: Lab) -> None:
    probes = lab.env()["probe_addresses"]
    assert tcp_connect(lab, "branch", probes["open"]) == "open"
    assert tcp_connect(lab, "branch", probes["closed"]) == "refused"
    assert tcp_connect(lab, "branch", probes["filtered"], timeout_s=1.5) == "timeout"


def test_at_least_25_service_targets(lab: Lab) -> None:
    targets = lab.env()["targets"]
    service = [t for t in targets if t["role"] != "cdn"]
    assert len({t["address"] for t in service}) >= 25
    assert {t["role"] for t in targets} == {"service", "api", "auth", "cdn", "telemetry"}


def test_management_network_is_off_path(lab: Lab) -> None:
    env = lab.env()
    collector = env["collector"]["mgmt_address"]
    with lab.netns("collector"):
        listener = socket.create_server((collector, 8080))
    try:
        for agent in env["agents"]:
            assert tcp_connect(lab, agent, collector, 8080) == "open", agent
    finally:
        listener.close()
    for agent in env["agents"]:
        route = lab.run(agent, ["ip", "-o", "route", "get", "198.19.16.10"]).stdout
        assert "mgmt0" not in route
    # The collector cannot reach the measured network at all.
    r = lab.run("collector", ["ip", "-o", "route", "get", "198.19.16.10"])
    assert r.returncode != 0
