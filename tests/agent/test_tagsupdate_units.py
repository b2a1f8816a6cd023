"""deploy/systemd/erpath-service-tags-update.{service,timer}: verified by systemd-analyze, and their
ExecStart lines run as written (CI has no systemd manager), as an unprivileged uid, against a
download page on loopback."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.agent.test_tagsupdate import REAL, SAMPLE, needs_real_file, server  # noqa: F401 (fixture)

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
SERVICE = UNITS / "erpath-service-tags-update.service"
TIMER = UNITS / "erpath-service-tags-update.timer"
AGENT = Path(sys.executable).with_name("erpath-agent")

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def exec_starts() -> list[list[str]]:
    return [
        shlex.split(line.partition("=")[2])
        for line in SERVICE.read_text().splitlines()
        if line.startswith("ExecStart=")
    ]


@needs_systemd_analyze
def test_units_verify_with_the_binary_where_it_is_installed(tmp_path):
    # verify insists that ExecStart's binary exists: point it at this install's
    (tmp_path / SERVICE.name).write_text(
        SERVICE.read_text().replace("/opt/erpath/bin/erpath-agent", str(AGENT))
    )
    shutil.copy(TIMER, tmp_path / TIMER.name)
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / TIMER.name), str(tmp_path / SERVICE.name)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


@needs_systemd_analyze
def test_the_timer_is_weekly():
    (line,) = [x for x in TIMER.read_text().splitlines() if x.startswith("OnCalendar=")]
    spec = line.partition("=")[2]
    proc = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=3", spec], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    elapses = [
        x.split(":", 1)[1].strip()
        for x in proc.stdout.splitlines()
        if "Iter." in x or "Next elapse" in x
    ]
    days = [x.split()[1] for x in elapses]  # "Tue 2026-12-08 06:00:00 UTC" -> the date
    from datetime import date

    dates = [date.fromisoformat(d) for d in days]
    assert [(b - a).days for a, b in zip(dates, dates[1:], strict=False)] == [7, 7]
    assert all(x.startswith("Tue ") for x in elapses)
    assert "Persistent=true" in TIMER.read_text()


def test_the_service_runs_as_the_agents_user_in_its_state_directory():
    text = SERVICE.read_text()
    for line in ("Type=oneshot", "DynamicUser=yes", "User=erpath-agent", "StateDirectory=erpath"):
        assert line in text.splitlines()
    agent_unit = (UNITS / "erpath-agent.service").read_text().splitlines()
    # the agent's dynamic user is named after its unit, and shares the state directory
    assert "StateDirectory=erpath" in agent_unit
    assert not [x for x in agent_unit if x.startswith("User=")]


@needs_real_file
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="runs ExecStart as another uid (needs root)")
def test_exec_start_lines_as_written_update_the_tags_unprivileged(server):  # noqa: F811
    """Each ExecStart with the installed paths swapped for this checkout's, run as uid 65534."""
    work = Path(tempfile.mkdtemp(prefix="erpath-tags-unit-"))
    try:
        work.chmod(0o755)
        state = work / "state"
        state.mkdir()
        tags = state / "ServiceTags_Public.json"
        tags.write_bytes(SAMPLE.read_bytes())
        shutil.chown(state, 65534, 65534)
        shutil.chown(tags, 65534, 65534)
        config = work / "agent.toml"
        config.write_text(
            f'[service_tags]\nfile = "{tags}"\nurl = "{server}/details.aspx?id=56519"\n'
        )
        config.chmod(0o644)
        outputs = []
        for argv in exec_starts():
            assert argv[0] == "/opt/erpath/bin/erpath-agent"
            argv = [
                str(AGENT),
                *[str(config) if a == "/etc/erpath/agent.toml" else a for a in argv[1:]],
            ]
            proc = subprocess.run(
                [
                    "setpriv",
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "--no-new-privs",
                    "--inh-caps=-all",
                    *argv,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
                preexec_fn=lambda: os.umask(0o077),  # the unit's UMask
            )
            assert proc.returncode == 0, proc.stderr
            outputs.append(proc.stdout)
        assert "updated from" in outputs[0] and "changeNumber 376" in outputs[0]
        assert outputs[1] == f"{config}: no [bgp_communities] file: nothing to update\n"
        assert tags.read_bytes() == REAL.read_bytes()
        assert tags.stat().st_uid == 65534 and tags.stat().st_mode & 0o777 == 0o644
    finally:
        shutil.rmtree(work)
