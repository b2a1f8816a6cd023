"""The service's set-up checks: token file permissions, units that systemd accepts."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.service.runner import ServiceError, read_token

UNITS = Path(__file__).parents[3] / "deploy" / "systemd"


def test_token_file_must_not_be_world_readable(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    os.chmod(token, 0o644)
    with pytest.raises(
        ServiceError, match=r"accessible to every user \(mode 644\); run: chmod 600"
    ):
        read_token(str(token))
    os.chmod(token, 0o640)  # like ssh with a private key: the group is refused too
    with pytest.raises(ServiceError, match=r"accessible to its group \(mode 640\); run: chmod 600"):
        read_token(str(token))
    os.chmod(token, 0o600)
    assert read_token(str(token)) == "s3cret"


def test_a_token_file_with_a_second_line_is_refused(tmp_path):
    """A line break in the token used to kill the sender thread (an invalid header)."""
    token = tmp_path / "token"
    token.write_text("s3cret\nsecond-line\n")
    os.chmod(token, 0o600)
    with pytest.raises(ServiceError, match="holds more than the token"):
        read_token(str(token))


def test_missing_and_empty_token_files(tmp_path):
    with pytest.raises(ServiceError, match="erpath-collector token add"):
        read_token(str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    os.chmod(empty, 0o600)
    with pytest.raises(ServiceError, match="is empty"):
        read_token(str(empty))


@pytest.mark.parametrize("unit", ["erpath-agent.service", "erpath-collector.service"])
def test_units_pass_systemd_analyze_verify(tmp_path, unit):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd")
    # verify checks that ExecStart exists: point it at this checkout's programs.
    program = Path(sys.executable).with_name(unit.removesuffix(".service"))
    text = (UNITS / unit).read_text().replace(f"/opt/erpath/bin/{program.name}", str(program))
    (tmp_path / unit).write_text(text)
    proc = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / unit)], capture_output=True, text=True
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def _write_config(tmp_path, collector: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f'[agent]\nid = "br-1"\nsite = "ams"\n[collector]\n{collector}\n')
    return path


def test_plain_http_collector_is_refused_unless_allowed(tmp_path):
    """Checked when the service sets up (start and SIGHUP): the token would travel in clear."""
    from agent.config import ConfigError, load
    from agent.service.runner import _setup

    path = _write_config(tmp_path, 'url = "http://collector.example.net:9470"')
    # The config reader may refuse it already (check-config); the service refuses it anyway.
    with pytest.raises((ConfigError, ServiceError)) as info:
        _setup(load(path))
    assert str(info.value) == (
        f'{path}: [collector] url = "http://collector.example.net:9470": plain HTTP sends the '
        "agent's token in clear; use https://, or set allow_plaintext = true in [collector] "
        "(a lab, or a collector on this host)"
    )
    allowed = _write_config(tmp_path, 'url = "http://127.0.0.1:9470"\nallow_plaintext = true')
    assert _setup(load(allowed)).sender is not None
    assert _setup(load(_write_config(tmp_path, 'url = "https://c.example:9470"'))).sender
