"""The deployment as shipped, on loopback in a tmp dir: collector, Alertmanager, Prometheus.

Prometheus runs deploy/prometheus/prometheus.yml and its rules, and
Alertmanager deploy/alertmanager/alertmanager.yml; only addresses and
intervals are rewritten (1 s scrapes, evaluations and alert re-sends, so a test
sees data in seconds).  Receivers point at a closed loopback port: nothing leaves the host.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.collector.realparts import Process, binary, free_port
from tests.deploy.files import ALERTMANAGER_YML, PROMETHEUS_DIR

COLLECTOR_BIN = str(Path(sys.executable).with_name("erpath-collector"))


def get_json(url: str, **params: Any) -> Any:
    query = urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(f"{url}?{query}" if query else url, timeout=10) as resp:
        return json.load(resp)


def wait_for(check, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.25)


class Collector(Process):
    """`erpath-collector serve` with detection tuned for seconds, alerts to Alertmanager and a dead webhook."""

    def __init__(self, tmp: Path, alertmanager_url: str, dead_url: str):
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "collector.toml"
        self.config.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {self.port}\nshutdown_timeout_s = 2.0\n'
            f'[store]\npath = "{tmp / "collector.db"}"\n'
            # probe once reports carry no interval: silent after 3 x 5 s.
            "[ingest]\ndefault_interval_s = 5.0\ntokens_refresh_s = 0.2\n"
            # One report confirms a flip: each scenario is probed once.
            "[detection]\nflip_confirm_reports = 1\nevaluate_interval_s = 0.5\n"
            f'[alerts]\nalertmanager_urls = ["{alertmanager_url}"]\nwebhook_urls = ["{dead_url}"]\n'
            "resend_interval_s = 1.0\nbackoff_initial_s = 0.2\nbackoff_max_s = 0.5\ntimeout_s = 2.0\n"
        )
        super().__init__(
            [COLLECTOR_BIN, "serve", "--config", str(self.config)], tmp / "collector.log"
        )

    def token(self, agent: str) -> str:
        proc = subprocess.run(
            [COLLECTOR_BIN, "token", "add", agent, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return proc.stdout.strip()

    def start(self) -> None:  # type: ignore[override]
        super().start(f"{self.url}/readyz")

    def post(self, body: bytes, token: str, *, gzipped: bool = False) -> int:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        req = urllib.request.Request(
            f"{self.url}/api/v1/reports", data=body, headers=headers, method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status

    def exposition(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as resp:
            return resp.read().decode()


class Alertmanager(Process):
    def __init__(self, tmp: Path, dead_url: str):
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        text = ALERTMANAGER_YML.read_text().replace("http://alert-relay.example.net", dead_url)
        urls = re.findall(r"url: (\S+)", text)
        assert urls and all(u.startswith("http://127.0.0.1:") for u in urls), urls  # loopback only
        cfg = tmp / "alertmanager.yml"
        cfg.write_text(text)
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
    def __init__(self, tmp: Path, collector: str, alertmanager: str):
        shutil.copytree(PROMETHEUS_DIR, tmp / "etc")
        text = (tmp / "etc" / "prometheus.yml").read_text()
        for old, new in [
            ("scrape_interval: 30s", "scrape_interval: 1s"),
            ("scrape_timeout: 10s", "scrape_timeout: 1s"),
            ("evaluation_interval: 30s", "evaluation_interval: 1s"),
            ("127.0.0.1:9470", collector),
            ("127.0.0.1:9093", alertmanager),
        ]:
            assert old in text, old
            text = text.replace(old, new)
        (tmp / "etc" / "prometheus.yml").write_text(text)
        (tmp / "etc" / "erpath-agents").mkdir()  # as on a host, where the file_sd directory exists
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [
                binary("prometheus"),
                f"--config.file={tmp / 'etc' / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                # Alertmanager is discovered a few seconds after the first evaluations;
                # re-send firing alerts every second rather than every minute.
                "--rules.alert.resend-delay=1s",
                "--log.level=warn",
            ],
            tmp / "prometheus.log",
        )

    def start(self) -> None:  # type: ignore[override]
        super().start(f"{self.url}/-/ready")

    def query(self, expr: str) -> list[dict]:
        doc = get_json(f"{self.url}/api/v1/query", query=expr)
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list[dict]:
        doc = get_json(
            f"{self.url}/api/v1/query_range", query=expr, start=start, end=end, step=step
        )
        assert doc["status"] == "success", (expr, doc)
        return doc["data"]["result"]

    def alerts(self) -> list[dict]:
        return get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]
