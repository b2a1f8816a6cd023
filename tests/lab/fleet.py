"""The whole erpath system running in the lab: a collector and agents as real processes.

The collector runs in the lab's collector namespace and listens on the
management network; each agent runs in its own namespace (`erpath-agent run`)
and reports over that network, never over the paths it measures.  Used by the
service and end-to-end tests and by the demo.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .agentconfig import config_text
from .lab import Lab
from .plan import AGENT_NODES

BIN = Path(sys.executable).parent
COLLECTOR_PORT = 9470


@dataclass
class Fleet:
    lab: Lab
    workdir: Path
    interval_s: float = 10.0
    alertmanager_urls: tuple[str, ...] = ()
    flip_confirm_reports: int = 2
    collector: subprocess.Popen | None = None
    agents: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.collector_address = self.lab.env()["collector"]["mgmt_address"]
        self.url = f"http://{self.collector_address}:{COLLECTOR_PORT}"
        self.collector_config = self.workdir / "collector.toml"
        self.db = self.workdir / "collector.db"
        # The collector listens on the management network, not loopback: its
        # read API and /metrics want a read token (Prometheus gets the file too).
        self.read_token_file = self.workdir / "read.token"
        if not self.read_token_file.exists():
            self.read_token_file.write_text(secrets.token_hex(32) + "\n")
            self.read_token_file.chmod(0o600)
        ams = ", ".join(f'"{u}"' for u in self.alertmanager_urls)
        self.collector_config.write_text(
            f'[server]\nhost = "{self.collector_address}"\nport = {COLLECTOR_PORT}\n'
            f'shutdown_timeout_s = 5.0\nread_token_file = "{self.read_token_file}"\n'
            f'[store]\npath = "{self.db}"\n'
            f"[ingest]\ndefault_interval_s = {self.interval_s}\nburst_per_agent = 600\n"
            f"[detection]\nflip_confirm_reports = {self.flip_confirm_reports}\nevaluate_interval_s = 1.0\n"
            f"[alerts]\nalertmanager_urls = [{ams}]\nresend_interval_s = 10.0\n"
            f"backoff_initial_s = 0.5\nbackoff_max_s = 2.0\n"
        )

    # ------------------------------------------------------------------ collector

    def start_collector(self, timeout_s: float = 20.0) -> None:
        try:
            self.get("/readyz")
        except (OSError, urllib.error.URLError):
            pass  # nobody there: good
        else:
            raise RuntimeError(f"another collector already answers on {self.url}; stop it first")
        # Every lab agent's token first: the collector reads its token table at
        # start and then only every few seconds.
        for node in AGENT_NODES:
            self.token(_agent_id(config_text(node, "er")))
        log = open(self.workdir / "collector.log", "a")  # noqa: SIM115 - owned by the process
        self.collector = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.lab.ns("collector"),
                str(BIN / "erpath-collector"),
                "serve",
                "--config",
                str(self.collector_config),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.get("/readyz")
                return
            except (OSError, urllib.error.URLError):
                if self.collector.poll() is not None:
                    raise RuntimeError(
                        f"collector exited: {(self.workdir / 'collector.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.1)
        raise RuntimeError("collector did not become ready")

    def stop_collector(self, kill: bool = False) -> None:
        _stop(self.collector, kill)
        self.collector = None

    def token(self, agent_id: str) -> Path:
        """A token for the agent (created once), in a file only root may read."""
        path = self.workdir / f"{agent_id}.token"
        if not path.exists():
            out = (
                subprocess.run(
                    [
                        str(BIN / "erpath-collector"),
                        "token",
                        "add",
                        agent_id,
                        "--config",
                        str(self.collector_config),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            path.write_text(out + "\n")
            path.chmod(0o600)
        return path

    def get(self, path: str):
        """GET from the collector's API, from inside its namespace."""
        token = self.read_token_file.read_text().strip()
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {token}"}
        )
        with (
            self.lab.netns("collector"),
            urllib.request.urlopen(request, timeout=5) as resp,
        ):
            body = resp.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()

    # ------------------------------------------------------------------ agents

    def agent_config(
        self, node: str, scenario: str | None = None, *, interval_s: float | None = None
    ) -> Path:
        scenario = scenario or self.lab.current_scenario or "er"
        text = config_text(
            node, scenario, probe={"interval_s": interval_s or self.interval_s, "jitter_s": 0}
        )
        agent_id = _agent_id(text)
        state = self.workdir / f"{node}-state"
        text += (
            f'\n[collector]\nurl = "{self.url}"\ntoken_file = "{self.token(agent_id)}"\n'
            # The lab's management network is plain HTTP.
            "allow_plaintext = true\n"
            f'\n[spool]\ndir = "{state / "spool"}"\n'
        )
        path = self.workdir / f"{node}.toml"
        path.write_text(text)
        return path

    def start_agent(
        self,
        node: str,
        scenario: str | None = None,
        *,
        interval_s: float | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen:
        config = self.agent_config(node, scenario, interval_s=interval_s)
        log = open(self.workdir / f"{node}.log", "a")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.lab.ns(node),
                str(BIN / "erpath-agent"),
                "run",
                "--config",
                str(config),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=os.environ | {"STATE_DIRECTORY": str(self.workdir / f"{node}-state")} | (env or {}),
        )
        self.agents[node] = proc
        return proc

    def cycle(self, node: str, scenario: str | None = None, *, deliver: bool = True) -> dict:
        """One agent cycle now, for tests that cannot wait for intervals.

        `erpath-agent probe once` measures from the node's namespace with the
        config `run` would use; the report then goes through the agent's own
        spool and sender, from the node's namespace over the management
        network, exactly as the service delivers it (unless `deliver` is
        False: measuring only).  Returns the report.
        """
        from agent.service.sender import CollectorEndpoint, Sender
        from agent.service.spool import Spool

        config = self.agent_config(node, scenario)
        state = self.workdir / f"{node}-state"
        proc = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.lab.ns(node),
                str(BIN / "erpath-agent"),
                "probe",
                "once",
                "--config",
                str(config),
                "--json",
            ],
            capture_output=True,
            text=True,
            env=os.environ | {"STATE_DIRECTORY": str(state)},
            timeout=120,
            check=False,
        )
        if proc.returncode not in (0, 1):  # 1: measured, and a path needs attention
            raise RuntimeError(
                f"{node}: probe once exited {proc.returncode}: {proc.stderr[-2000:]}"
            )
        body = proc.stdout.encode()
        report = json.loads(body)
        if not deliver:
            return report
        spool = Spool(state / "cycles", max_bytes=64_000_000, max_age_s=86400)
        item = spool.put(report["seq"], report["id"], body)
        agent_id = report["agent"]["id"]
        sender = Sender(CollectorEndpoint(self.url, self.token(agent_id).read_text().strip()))
        with self.lab.netns(node):  # the HTTP socket is made here, on the node's mgmt0
            delivery = sender.deliver(item)
        if delivery.outcome != "acked":
            raise RuntimeError(f"{node}: report seq {report['seq']} not acked: {delivery}")
        spool.ack(item)
        return report

    def cycles(
        self, nodes: tuple[str, ...], scenario: str | None = None, *, deliver: bool = True
    ) -> dict[str, dict]:
        """One cycle of each node, all at once (as agents on their own hosts would)."""
        from concurrent.futures import ThreadPoolExecutor

        for node in nodes:  # tokens one at a time: `token add` writes the collector's database
            self.token(_agent_id(config_text(node, "er")))
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            futures = {n: pool.submit(self.cycle, n, scenario, deliver=deliver) for n in nodes}
        return {n: f.result() for n, f in futures.items()}

    def stop_agent(self, node: str, kill: bool = False) -> None:
        _stop(self.agents.pop(node, None), kill)

    def reload_agents(self) -> None:
        """Rewrite every running agent's config for the lab's scenario, then SIGHUP it."""
        for node, proc in self.agents.items():
            self.agent_config(node)
            proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        for node in list(self.agents):
            self.stop_agent(node)
        self.stop_collector()

    # ------------------------------------------------------------------ reading the store

    def reports_since(self, agent_id: str, wall_s: float) -> int:
        """How many of an agent's reports the collector stored after a wall-clock time."""
        import sqlite3

        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            (n,) = db.execute(
                "SELECT count(*) FROM observations o JOIN agents a ON a.ref = o.agent_ref "
                "WHERE a.id = ? AND o.received_s > ?",
                (agent_id, int(wall_s)),  # received_s is whole seconds: a later second
            ).fetchone()
        return n

    def received_seqs(self, agent_id: str) -> list[int]:
        """Every seq the collector stored for an agent (one row per report)."""
        import sqlite3

        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT o.seq FROM observations o JOIN agents a ON a.ref = o.agent_ref "
                "WHERE a.id = ? ORDER BY o.seq",
                (agent_id,),
            ).fetchall()
        return [r[0] for r in rows]


def _agent_id(config: str) -> str:
    import tomllib

    return tomllib.loads(config)["agent"]["id"]


def _stop(proc: subprocess.Popen | None, kill: bool) -> None:
    if proc is None or proc.poll() is not None:
        return
    # `ip netns exec` execs the program: the pid is the program's own.
    proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
