"""The collector tells systemd it is ready once it listens, and pings the watchdog."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.collector.realparts import free_port

COLLECTOR = str(Path(sys.executable).with_name("erpath-collector"))


def test_ready_then_watchdog(tmp_path):
    port = free_port()
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n[store]\npath = "{tmp_path}/c.db"\n'
        "[alerts]\nalertmanager_urls = []\n"
    )
    notify = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        sock.settimeout(20)
        env = os.environ | {"NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "1000000"}
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen(
            [COLLECTOR, "serve", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            seen = []
            while "READY=1" not in seen or "WATCHDOG=1" not in seen:
                seen += sock.recv(4096).decode().split("\n")
            # READY means listening: a connection now succeeds.
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
