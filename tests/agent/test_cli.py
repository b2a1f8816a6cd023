"""erpath-agent's command line: usage errors exit 2 with a message that names the fix, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

AGENT = str(Path(sys.executable).with_name("erpath-agent"))
LAB_AGENTS = Path(__file__).parents[1] / "lab" / "agents"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["probe", "once", "--port", "70000", "x.example"], "--port 70000: must be 1 to 65535"),
        (["probe", "once", "--resolver", "not-an-ip", "x.example"], "--resolver: resolver"),
        (
            ["probe", "once", "--expect", "expressroute"],
            "--expect applies to TARGETs named on the command line",
        ),
        (["probe", "once", "--config", "/nonexistent/agent.toml"], "/nonexistent/agent.toml"),
        (["probe", "once", "--trace-protocol", "gre"], "invalid choice: 'gre'"),
        (["check-config", "/nonexistent.toml"], "/nonexistent.toml"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors(args, message):
    proc = run(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_config_summarises_targets_circuits_and_edges():
    proc = run("check-config", str(LAB_AGENTS / "branch.toml"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "agent branch · site branch · role branch" in out
    assert "make.powerapps.com" in out and "content.powerapps.com" in out
    assert "ams-er-1 (Amsterdam, standard): primary 192.0.2.0/30, secondary 192.0.2.4/30" in out
    assert "ams-inet: NAT 198.51.100.10" in out


def test_version():
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("erpath-agent ")
