"""The collector's unit as shipped, without a systemd manager (CI has none): its ExecStart, run
as the unit would run it (an unprivileged uid, no capabilities, / read-only except its
StateDirectory, private /tmp), with the default config, opens its default database and takes a
report.  It could not before: the default database was /var/lib/erpath/collector.db while the
unit's only writable place is /var/lib/erpath-collector.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from collector.config import StoreConfig

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"


def run_unit(unit: str, config_text: str) -> dict:
    # Outside pytest's root-only tmp: the overlay's upper directory needs no special place,
    # but the unit's uid must be able to reach the checkout (it does: /work is world-readable).
    with tempfile.TemporaryDirectory(prefix="erpath-unit-") as workdir:
        proc = subprocess.run(
            [
                "unshare",
                "--mount",
                "--net",
                "--propagation",
                "private",
                sys.executable,
                "-m",
                "tests.deploy.unitsandbox",
                str(UNITS / unit),
                workdir,
                config_text,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=100,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.splitlines()[-1])


def test_the_default_database_is_in_the_units_state_directory():
    unit = (UNITS / "erpath-collector.service").read_text()
    assert "StateDirectory=erpath-collector\n" in unit
    assert StoreConfig().path == "/var/lib/erpath-collector/collector.db"


def test_the_collector_unit_as_shipped_serves_with_the_default_config():
    result = run_unit("erpath-collector.service", "")  # every key at its default
    assert result["token_add"]["code"] == 0, result
    assert result["post"]["status"] == 201, result
    assert result["post"]["body"]["id"] == result["report_id"]
    assert result["uid"] == ["65534"] * 4 and int(result["cap_eff"], 16) == 0
    assert result["db"] == {
        "path": "/var/lib/erpath-collector/collector.db",
        "uid": 65534,
        "mode": 0o600,  # UMask=0077
    }
    # Everything else is read-only to the service, as ProtectSystem=strict makes it.
    assert (
        result["writes_elsewhere"].count("Read-only file system")
        + result["writes_elsewhere"].count("Permission denied")
        == 3
    ), result["writes_elsewhere"]
    assert result["serve_exit"] == 0, result["log"]
    assert "Traceback" not in result["log"]
