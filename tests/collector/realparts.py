"""Start Debian's real Alertmanager and Prometheus on loopback, in a tmp dir."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package; `make test` installs it as root)")
    return path


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s} s")


class Process:
    """A child process with its log in the tmp dir; stop() is idempotent."""

    def __init__(self, args: list[str], log: Path):
        self.args = args
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, ready_url: str) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            wait_ready(ready_url, self.proc)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n{self.log.read_text()[-2000:]}") from None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


ALERTMANAGER_CONFIG = """\
route:
  receiver: capture
  group_by: [alertname, site, agent, target, circuit]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: capture
    webhook_configs:
      - url: {webhook}
        send_resolved: true
"""


class Alertmanager(Process):
    def __init__(self, tmp: Path, webhook: str, port: int | None = None):
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = tmp / "alertmanager.yml"
        cfg.write_text(ALERTMANAGER_CONFIG.format(webhook=webhook))
        super().__init__(
            [
                binary("prometheus-alertmanager"),
                f"--config.file={cfg}",
                f"--storage.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            tmp / "alertmanager.log",
        )

    def start(self) -> None:  # type: ignore[override]
        super().start(f"{self.url}/-/ready")


class Prometheus(Process):
    def __init__(self, tmp: Path, target: str, scrape_interval_s: float = 1.0):
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = tmp / "prometheus.yml"
        cfg.write_text(
            "global:\n"
            f"  scrape_interval: {int(scrape_interval_s * 1000)}ms\n"
            f"  scrape_timeout: {int(scrape_interval_s * 1000)}ms\n"
            "scrape_configs:\n"
            "  - job_name: erpath-collector\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        super().__init__(
            [
                binary("prometheus"),
                f"--config.file={cfg}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            tmp / "prometheus.log",
        )

    def start(self) -> None:  # type: ignore[override]
        super().start(f"{self.url}/-/ready")
