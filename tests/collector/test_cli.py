"""The erpath-collector command: tokens, bad config, TLS serve, graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from collector.ingest import report_id_of

from .realparts import binary, free_port
from .reports import er, simple

CLI = [sys.executable, "-m", "collector.cli"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def write_config(tmp_path: Path, port: int, extra: str = "") -> Path:
    cfg = tmp_path / "collector.toml"
    cfg.write_text(f'[server]\nport = {port}\n{extra}\n[store]\npath = "{tmp_path / "c.db"}"\n')
    return cfg


def test_token_add_binds_a_site_and_role(tmp_path):
    cfg = write_config(tmp_path, 9470)
    added = run("token", "add", "br-1", "--site", "ams", "--role", "branch", "--config", str(cfg))
    assert "bound to site 'ams', role 'branch'" in added.stderr
    token_id = added.stdout.strip().split("_")[1]
    (row,) = [
        ln
        for ln in run("token", "list", "--config", str(cfg)).stdout.splitlines()
        if token_id in ln
    ]
    assert row.split()[1:4] == ["br-1", "ams", "branch"]
    bad = run("token", "add", "br-2", "--role", "router", "--config", str(cfg), check=False)
    assert bad.returncode == 2 and "invalid choice: 'router'" in bad.stderr


def test_token_add_list_revoke(tmp_path):
    cfg = write_config(tmp_path, 9470)
    added = run("token", "add", "br-1", "--config", str(cfg))
    token = added.stdout.strip()
    assert token.startswith("erp_") and "shown once" in added.stderr
    token_id = token.split("_")[1]
    listed = run("token", "list", "--config", str(cfg)).stdout
    assert token_id in listed and "br-1" in listed and "active" in listed and token not in listed
    assert "revoked 1" in run("token", "revoke", token_id, "--config", str(cfg)).stdout
    assert "revoked" in run("token", "list", "--config", str(cfg)).stdout.splitlines()[1]
    assert run("token", "revoke", token_id, "--config", str(cfg), check=False).returncode == 1
    bad = run("token", "add", "bad id!", "--config", str(cfg), check=False)
    assert bad.returncode == 2 and "not valid" in bad.stderr


def test_bad_config_exits_2_without_traceback(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[server]\nport = 'http'\nlisten = 1\n")
    proc = run("serve", "--config", str(cfg), check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{cfg}: [server] listen: unknown key" in proc.stderr
    assert f'{cfg}: [server] port = "http": must be an integer' in proc.stderr
    missing = run("check-config", "--config", str(tmp_path / "nope.toml"), check=False)
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def _openssl(*args: str) -> None:
    subprocess.run([binary("openssl"), *args], check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> dict[str, Path]:
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.crt"),
        "-days",
        "1",
        "-subj",
        "/CN=erpath test CA",
    )
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl(
            "req",
            *ec,
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
            # The client certificate names the agent: the collector binds CN to agent.id.
            "-subj",
            f"/CN={'br-1' if name == 'client' else name}",
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.crt"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-out",
            str(d / f"{name}.crt"),
            "-days",
            "1",
            "-extfile",
            str(d / f"{name}.ext"),
        )
    return {n: d / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


async def _wait_up(url: str, ssl_ctx=None, proc=None) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(100):
            if proc is not None and proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode())
            try:
                async with s.get(f"{url}/readyz", ssl=ssl_ctx) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


def _serve(cfg: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, "serve", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


async def test_tls_with_required_client_certificates(tmp_path):
    pki = make_pki(tmp_path)
    port = free_port()
    cfg = write_config(
        tmp_path,
        port,
        (
            f'tls_cert_file = "{pki["server.crt"]}"\ntls_key_file = "{pki["server.key"]}"\n'
            f'client_ca_file = "{pki["ca.crt"]}"\nclient_cert_required = true\n'
        ),
    )
    token = run("token", "add", "br-1", "--config", str(cfg)).stdout.strip()
    proc = _serve(cfg)
    try:
        with_cert = ssl.create_default_context(cafile=str(pki["ca.crt"]))
        with_cert.load_cert_chain(str(pki["client.crt"]), str(pki["client.key"]))
        url = f"https://127.0.0.1:{port}"
        await _wait_up(url, with_cert, proc)
        async with aiohttp.ClientSession() as s:
            async with s.post(
                f"{url}/api/v1/reports",
                json=simple("br-1", 1, er()),
                ssl=with_cert,
                headers={"Authorization": f"Bearer {token}"},
            ) as r:
                assert r.status == 201, await r.text()
            no_cert = ssl.create_default_context(cafile=str(pki["ca.crt"]))
            with pytest.raises((aiohttp.ClientError, ssl.SSLError, OSError)):
                async with s.get(f"{url}/healthz", ssl=no_cert) as r:
                    await r.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


async def test_sigterm_loses_nothing_acknowledged(tmp_path):
    port = free_port()
    cfg = write_config(
        tmp_path,
        port,
        "[ingest]\nrate_per_agent_per_s = 1000.0\nburst_per_agent = 1000\n"
        "max_in_flight_per_agent = 1000\n",  # one agent id, 200 reports at once
    )
    token = run("token", "add", "br-1", "--config", str(cfg)).stdout.strip()
    proc = _serve(cfg)
    url = f"http://127.0.0.1:{port}"
    await _wait_up(url, proc=proc)
    acked: list[str] = []

    async def post(s: aiohttp.ClientSession, seq: int) -> None:
        doc = simple("br-1", seq, er())
        try:
            async with s.post(
                f"{url}/api/v1/reports", json=doc, headers={"Authorization": f"Bearer {token}"}
            ) as r:
                if r.status == 201:
                    acked.append(doc["id"])
        except (aiohttp.ClientError, OSError):
            pass

    async with aiohttp.ClientSession() as s:
        tasks = [asyncio.create_task(post(s, seq)) for seq in range(1, 201)]
        while len(acked) < 20:
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)
    assert proc.wait(30) == 0
    db = sqlite3.connect(tmp_path / "c.db")
    stored = {report_id_of(r[0]) for r in db.execute("SELECT report_id FROM observations")}
    assert set(acked) <= stored and len(acked) >= 20
    db.close()


def test_check_config_ok(tmp_path):
    cfg = write_config(tmp_path, 9470)
    assert "OK" in run("check-config", "--config", str(cfg)).stdout


def test_openapi_json_is_json():
    path = Path(__file__).parents[2] / "collector" / "openapi.json"
    assert json.loads(path.read_text())["openapi"] == "3.1.0"
    time.sleep(0)
