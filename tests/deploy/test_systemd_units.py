"""The units as shipped, without a systemd manager (CI has none): each ExecStart run as its unit
would run it — an unprivileged uid of its own, the unit's capabilities only (none for the
collector, CAP_NET_RAW for the agent), NoNewPrivileges, UMask, / read-only except the unit's
StateDirectory, a private /tmp, the agent's token as a credential — with the default collector
config.  The collector opens its default database and takes a report; the agent's reports reach
it.  The collector could not before: its default database was /var/lib/erpath/collector.db while
the unit's only writable place is /var/lib/erpath-collector.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from collector.config import StoreConfig

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"

AGENT_CONFIG = """
[agent]
id = "br-1"
site = "ams"
[probe]
builtin_targets = false
interval_s = 10
jitter_s = 0
trace_timeout_s = 2
[collector]
url = "http://127.0.0.1:9470"
token_file = "/run/credentials/erpath-agent.service/agent.token"
allow_plaintext = true
[[target]]
name = "collector-port"
address = "127.0.0.1"
port = 9470
"""


def run_units(collector_config: str, agent_config: str | None = None) -> dict:
    # A work directory outside pytest's root-only tmp (the overlay's upper /etc lives there).
    with tempfile.TemporaryDirectory(prefix="erpath-unit-") as workdir:
        proc = subprocess.run(
            ["unshare", "--mount", "--net", "--propagation", "private"]
            + [sys.executable, "-m", "tests.deploy.unitsandbox", workdir, collector_config]
            + ([agent_config] if agent_config is not None else []),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=150,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.splitlines()[-1])


def test_the_default_database_is_in_the_units_state_directory():
    unit = (UNITS / "erpath-collector.service").read_text()
    assert "StateDirectory=erpath-collector\n" in unit
    assert StoreConfig().path == "/var/lib/erpath-collector/collector.db"


def test_the_units_as_shipped_serve_and_report_with_the_default_config():
    result = run_units("", AGENT_CONFIG)  # the collector's every key at its default
    logs = result.get("log", {})
    assert result["token_add"]["code"] == 0, result
    assert result["post"]["status"] == 201, result
    assert result["post"]["body"]["id"] == result["report_id"]
    assert result["collector"] == {"uid": ["61001"] * 4, "cap_eff": "0000000000000000"}
    assert result["db"] == {
        "path": "/var/lib/erpath-collector/collector.db",
        "uid": 61001,
        "mode": 0o600,  # UMask=0077
    }
    # Everything but its state directory is read-only to it, as ProtectSystem=strict makes it.
    writes = result["writes_elsewhere"]
    assert writes.count("cannot touch") == 3, writes  # /var/lib, /etc, /usr
    assert writes.count("Read-only file system") >= 2, writes  # /var/lib, /etc
    # The agent: CAP_NET_RAW only, its token from the credential, its spool in its state directory.
    assert result["agent"]["uid"] == ["61002"] * 4
    assert int(result["agent"]["cap_eff"], 16) == 1 << 13, result["agent"]  # CAP_NET_RAW
    assert result.get("agent_seen", {}).get("agent") == "br-1", logs
    assert {"epoch", "seq", "spool"} <= set(result["agent_state"]), result["agent_state"]
    assert result["exit"] == {"erpath-agent.service": 0, "erpath-collector.service": 0}, logs
    assert not any("Traceback" in text for text in logs.values()), logs
