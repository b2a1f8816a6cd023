"""`erpath-agent run` as systemd drives it: READY, SIGHUP reloads (or refuses), SIGTERM exits 0.

Only loopback is probed: one address target, 127.0.0.1.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .loopback import loopback_config, write_token

AGENT = str(Path(sys.executable).with_name("erpath-agent"))


def _wait_for(path: Path, text: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path}: {content[-2000:]}")


def test_ready_reload_refuse_and_terminate(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(loopback_config(tmp_path / "spool"))
    log = tmp_path / "agent.log"
    notify = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, open(log, "w") as out:
        sock.bind(str(notify))
        sock.settimeout(30)
        env = os.environ | {
            "NOTIFY_SOCKET": str(notify),
            "STATE_DIRECTORY": str(tmp_path / "state"),
        }
        proc = subprocess.Popen(
            [AGENT, "run", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
        try:
            assert sock.recv(4096).decode().startswith("READY=1")
            _wait_for(log, "event=cycle seq=1")
            # A valid change is taken; an invalid one is refused and the old config kept.
            config.write_text(loopback_config(tmp_path / "spool", target_port=10))
            proc.send_signal(signal.SIGHUP)
            _wait_for(log, "event=reloaded")
            config.write_text("[probe]\ninterval_s = 1\n")
            proc.send_signal(signal.SIGHUP)
            text = _wait_for(log, "event=reload_refused")
            assert "interval_s" in text
            assert proc.poll() is None
            # A CA file that is not there: refused like any bad config (it used to crash).
            config.write_text(missing_ca(tmp_path))
            proc.send_signal(signal.SIGHUP)
            text = _wait_for(log, "ca_file")
            assert "no such file; fix the path or remove the key" in text
            time.sleep(0.5)
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert "event=stopped" in text and "Traceback" not in text
    # The report of the cycle is in the spool (no collector configured).
    assert list((tmp_path / "spool").glob("*.json.gz"))


def missing_ca(tmp_path: Path) -> str:
    """The loopback config with a collector over HTTPS whose CA file is not there."""
    https = {
        "url": "https://127.0.0.1:9",
        "token_file": str(write_token(tmp_path)),
        "ca_file": str(tmp_path / "nope.pem"),
    }
    return loopback_config(tmp_path / "spool", collector=https)


def test_a_missing_ca_file_at_start_is_exit_2_with_the_fix(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(missing_ca(tmp_path))
    env = os.environ | {"STATE_DIRECTORY": str(tmp_path / "state")}
    proc = subprocess.run(
        [AGENT, "run", "--config", str(config)], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"erpath-agent: [collector] ca_file = '{tmp_path / 'nope.pem'}': no such file; "
        "fix the path or remove the key"
    )
