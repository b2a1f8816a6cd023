"""A real `erpath-collector serve` process on loopback, for tests that kill it,
starve it of disk, drop its privileges or measure its memory.

Tokens are written straight into the store before the process starts (the
same `auth.add` the CLI runs), which is much faster than one CLI run each.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from collector import auth
from collector.store import Store
from tests.collector.realparts import free_port

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "collector.cli"]


def add_tokens(db: Path | str, agents: Iterable[str], *, passfile: str = "") -> dict[str, str]:
    """A token per agent, written straight into the store (what `token add` does): an
    SQLite file, or a PostgreSQL URL with its passfile."""
    store = Store(db, passfile=passfile)
    store.open()
    try:
        futures = {a: store.submit(auth.add, a, time.time()) for a in agents}
        return {a: f.result()[1] for a, f in futures.items()}
    finally:
        store.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CollectorProcess:
    """`erpath-collector serve` with a config written here; start/kill/stop any number of times."""

    def __init__(
        self,
        tmp: Path,
        *,
        db: Path | None = None,
        server: str = "",
        ingest: str = "",
        prefix: Sequence[str] = (),
        log_name: str = "collector.log",
    ):
        self.tmp = tmp
        self.db = db or tmp / "collector.db"
        self.port = free_port()
        self.url = f"{'https' if 'tls_cert_file' in server else 'http'}://127.0.0.1:{self.port}"
        self.config = tmp / "collector.toml"
        ingest = ingest or "rate_per_agent_per_s = 100000.0\nburst_per_agent = 100000"
        self.config.write_text(
            f"[server]\nport = {self.port}\n{server}\n"
            f'[store]\npath = "{self.db}"\n'
            f"[ingest]\n{ingest}\n"
        )
        self.prefix = list(prefix)
        self.tls: ssl.SSLContext | None = None  # set for a TLS collector: requests then use HTTPS
        self.log = tmp / log_name
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 30.0) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*self.prefix, *CLI, "serve", "--config", str(self.config)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"collector exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if self.request("GET", "/readyz", timeout_s=1.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(
            f"collector not ready after {timeout_s} s:\n{self.log.read_text()[-3000:]}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> int | None:
        if not self.alive():
            return self.proc.returncode if self.proc else None
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> tuple[int, dict, bytes]:
        conn = (
            http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout_s, context=self.tls)
            if self.tls
            else http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        )
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> Any:
        status, _, body = self.request("GET", path)
        assert status == 200, body
        return json.loads(body)
