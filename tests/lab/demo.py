"""The whole system in the lab, walked through every scenario: `make demo`.

Real processes: the collector in the lab's collector namespace with
Prometheus (the rules from deploy/) and Alertmanager (the example config)
beside it on that namespace's loopback; agents at the branch, the datacenter
host, the datacenter core router (edge-host mode: it sees route changes
itself) and the azure-side host (reverse traces to the sites' NAT
addresses), all reporting over the management network.

Each scenario step switches the lab, lets the agents' site facts follow what
the CE now advertises (their configs are rewritten and reloaded with SIGHUP,
as an engineer keeps the facts in step with the router), and waits until what
a user should see is visible in Alertmanager: the detection time is printed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .fleet import Fleet
from .lab import Lab

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
WORKDIR = Path("/run/erpath-demo")
INTERVAL_S = 10.0
AGENTS = ("branch", "dchost", "dccore", "azure")
ALERTMANAGER = "http://127.0.0.1:9093"
PROMETHEUS = "http://127.0.0.1:9090"
# Alertmanager's example receivers post to chat/paging webhooks; in the lab
# they point at a closed port on the namespace's own loopback.
DEAD_WEBHOOK = "http://127.0.0.1:9"

Alert = dict


@dataclass(frozen=True)
class Step:
    scenario: str
    expect: str  # what a user should see, in words
    seen: Callable[[list[Alert]], bool]  # given the alerts that started since the switch
    quiet: bool = False  # a recovery step: judged on every active alert instead


def _started_since(alerts: list[Alert], wall_s: float) -> list[Alert]:
    from datetime import datetime

    return [
        a
        for a in alerts
        if datetime.fromisoformat(a["startsAt"].replace("Z", "+00:00")).timestamp() >= wall_s - 1.0
    ]


def _firing(alerts: list[Alert], name: str, **labels: str) -> list[Alert]:
    return [
        a
        for a in alerts
        if a["labels"].get("alertname") == name
        and all(v in a["labels"].get(k, "") for k, v in labels.items())
    ]


def _quiet(alerts: list[Alert]) -> bool:
    return not [
        a
        for a in alerts
        if a["labels"]["alertname"].startswith("Erpath")
        and a["labels"]["alertname"] not in ("ErpathWatchdog",)
    ]


STEPS = (
    Step(
        "er",
        "every Power Platform target on ams-er-1 (primary link; the secondary stands by), "
        "CDN over the internet, no alert",
        _quiet,
        quiet=True,
    ),
    Step(
        "er-secondary",
        "the primary link fails: no route flip (same circuit); ErpathCircuitRedundancyLost "
        "ams-er-1, the standby link carries the traffic",
        lambda a: (
            bool(_firing(a, "ErpathCircuitRedundancyLost", circuit="ams-er-1"))
            and not _firing(a, "ErpathRouteFlip")
        ),
    ),
    Step("er", "both links back: every erpath alert resolved", _quiet, quiet=True),
    Step(
        "er-active-active",
        "the circuit redesigned active-active: flows hashed over both links both ways "
        "(a reply may return on the other link), no alert",
        _quiet,
        quiet=True,
    ),
    Step(
        "er-active-active-link-down",
        "one link shut at the CE: ErpathCircuitRedundancyLost ams-er-1, no route flip",
        lambda a: (
            bool(_firing(a, "ErpathCircuitRedundancyLost", circuit="ams-er-1"))
            and not _firing(a, "ErpathRouteFlip")
        ),
    ),
    Step("er-active-active", "the link restored: resolved", _quiet, quiet=True),
    Step(
        "failover-order",
        "traffic on dub-er-2 while ams-er-1 (first in the failover order) is up: "
        "ErpathRouteFlip ams-er-1 → dub-er-2 and ErpathUnexpectedPath naming the order",
        lambda a: (
            bool(_firing(a, "ErpathRouteFlip", to="dub-er-2"))
            and bool(_firing(a, "ErpathUnexpectedPath"))
        ),
    ),
    Step(
        "internet-failover",
        "ErpathRouteFlip expressroute → internet and ErpathUnexpectedPath",
        lambda a: (
            bool(_firing(a, "ErpathRouteFlip", to="internet"))
            and bool(_firing(a, "ErpathUnexpectedPath"))
        ),
    ),
    Step(
        "asymmetric-nat",
        "ErpathPathAsymmetric: out via the internet edge, back over ams-er-1",
        lambda a: bool(_firing(a, "ErpathPathAsymmetric")),
    ),
    Step(
        "asymmetric-circuits",
        "ErpathPathAsymmetric: out over ams-er-1, back over dub-er-2",
        lambda a: any("dub-er-2" in json.dumps(x) for x in _firing(a, "ErpathPathAsymmetric")),
    ),
    Step("er", "back to normal: every erpath alert resolved", _quiet, quiet=True),
)


class Observability:
    """Prometheus and Alertmanager from Debian, in the collector namespace, shipped configs."""

    def __init__(self, lab: Lab, workdir: Path):
        self.lab, self.workdir = lab, workdir
        self.procs: dict[str, subprocess.Popen] = {}

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "a")  # noqa: SIM115 - owned by the process
        self.procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", self.lab.ns("collector"), *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_alertmanager(self) -> None:
        cfg = self.workdir / "alertmanager.yml"
        cfg.write_text(
            (DEPLOY / "alertmanager" / "alertmanager.yml")
            .read_text()
            .replace("http://alert-relay.example.net", DEAD_WEBHOOK)
        )
        self._spawn(
            "alertmanager",
            [
                _binary("prometheus-alertmanager"),
                f"--config.file={cfg}",
                f"--storage.path={self.workdir / 'alertmanager'}",
                "--web.listen-address=127.0.0.1:9093",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
        )
        self._ready(f"{ALERTMANAGER}/-/ready")

    def start_prometheus(self, collector: str, read_token_file: Path | None = None) -> None:
        etc = self.workdir / "prometheus"
        shutil.rmtree(etc, ignore_errors=True)
        shutil.copytree(DEPLOY / "prometheus", etc)
        (etc / "erpath-agents").mkdir(exist_ok=True)
        text = (etc / "prometheus.yml").read_text()
        text = text.replace("127.0.0.1:9470", collector).replace(
            "scrape_interval: 30s", "scrape_interval: 5s"
        )
        text = text.replace("scrape_timeout: 10s", "scrape_timeout: 5s")
        if read_token_file:  # the collector's /metrics off loopback wants the read token
            text = text.replace(
                "    honor_labels: true\n",
                f"    honor_labels: true\n    authorization:\n"
                f"      credentials_file: {read_token_file}\n",
                1,
            )
        text = text.replace("evaluation_interval: 30s", "evaluation_interval: 5s")
        (etc / "prometheus.yml").write_text(text)
        self._spawn(
            "prometheus",
            [
                _binary("prometheus"),
                f"--config.file={etc / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                "--web.listen-address=127.0.0.1:9090",
                "--log.level=warn",
            ],
        )
        self._ready(f"{PROMETHEUS}/-/ready")

    def stop(self, name: str | None = None) -> None:
        for n in [name] if name else list(self.procs):
            proc = self.procs.pop(n, None)
            if proc and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)

    def get(self, url: str):
        with self.lab.netns("collector"), urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)

    def alerts(self) -> list[Alert]:
        """Active alerts, inhibited ones included: the demo shows everything that fired."""
        return self.get(f"{ALERTMANAGER}/api/v2/alerts?active=true&silenced=false&inhibited=true")

    def _ready(self, url: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with self.lab.netns("collector"), urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{url} did not become ready; see {self.workdir}")


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise RuntimeError(f"{name} is missing: run as root so make installs Debian's package")
    return path


class Demo:
    def __init__(
        self,
        lab: Lab,
        workdir: Path = WORKDIR,
        interval_s: float = INTERVAL_S,
        say: Callable[[str], None] = print,
    ):
        self.lab, self.workdir, self.say = lab, workdir, say
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        self.obs = Observability(lab, workdir)
        self.fleet = Fleet(
            lab, workdir / "fleet", interval_s=interval_s, alertmanager_urls=(ALERTMANAGER,)
        )

    def start(self) -> None:
        self.obs.start_alertmanager()
        self.fleet.start_collector()
        self.obs.start_prometheus(
            f"{self.fleet.collector_address}:9470", self.fleet.read_token_file
        )
        for node in AGENTS:
            self.fleet.start_agent(node)

    def stop(self) -> None:
        self.fleet.stop()
        self.obs.stop()

    def switch(self, scenario: str) -> float:
        """Switch the lab and the agents' site facts; return the switch time (monotonic)."""
        t0 = time.monotonic()
        self.lab.scenario(scenario)
        self.fleet.reload_agents()
        return t0

    def wait(self, step: Step, since_wall_s: float, timeout_s: float) -> tuple[bool, list[Alert]]:
        """Poll Alertmanager until the step's alerts are seen (or the timeout)."""
        t0 = time.monotonic()
        while True:
            alerts = self.obs.alerts()
            seen = step.seen(alerts if step.quiet else _started_since(alerts, since_wall_s))
            if seen or time.monotonic() - t0 > timeout_s:
                return seen, alerts
            time.sleep(0.5)

    def wait_until_reported(self, reports: int = 2, timeout_s: float = 90.0) -> None:
        """Every agent's reports are in and the collector has applied them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            agents = {a["agent"]: a for a in self.fleet.get("/api/v1/agents")["agents"]}
            counts = [len(self.fleet.received_seqs(a)) for a in AGENTS]
            if len(agents) >= len(AGENTS) and min(counts) >= reports:
                return
            time.sleep(0.5)
        raise RuntimeError(f"agents did not report in {timeout_s} s; logs in {self.fleet.workdir}")

    # ------------------------------------------------------------------ what a user sees

    def table(self) -> str:
        rows = [("SITE", "AGENT", "TARGET", "PATH", "EXPECTED", "TCP")]
        for p in self.fleet.get("/api/v1/paths")["paths"]:
            if p["role"] not in ("service", "reverse") and p["target"] not in (
                "content.powerapps.com",
                # A CDN off every suffix list, and a Traffic Manager name behind an MSEE.
                "static.powerpages.microsoft.com",
                "global.api.powerplatform.com",
            ):
                continue
            mark = "" if p["verdict"]["matches_expected"] is not False else "  ✗"
            rows.append(
                (
                    p["site"],
                    p["agent"],
                    p["target"],
                    p["path"] + mark,
                    str(p["verdict"]["expected"] or "-"),
                    str(p["tcp_state"] or "-"),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join(
            "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        )

    def alert_lines(self, alerts: list[Alert]) -> str:
        """Alerts as an engineer wants them: one line per kind of trouble, with its evidence."""
        groups: dict[tuple, list[Alert]] = {}
        for a in alerts:
            labels = a["labels"]
            if labels["alertname"] == "ErpathWatchdog":
                continue
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "target"))
            groups.setdefault(key, []).append(a)
        lines = []
        for key, members in sorted(groups.items()):
            labels = dict(key)
            name = labels.pop("alertname")
            targets = sorted(
                m["labels"].get("target", "") for m in members if m["labels"].get("target")
            )
            what = " ".join(f"{k}={v}" for k, v in labels.items())
            lines.append(
                f"  {name} {what}"
                + (
                    f"  [{len(targets)} targets: {', '.join(targets[:3])}"
                    + (", …" if len(targets) > 3 else "")
                    + "]"
                    if targets
                    else ""
                )
            )
            evidence = members[0].get("annotations", {}).get("evidence", "")
            lines += [f"      {line}" for line in evidence.splitlines()[:4]]
        return "\n".join(lines) or "  (none)"

    def walk(self, timeout_s: float = 90.0) -> list[tuple[str, float, bool]]:
        """Every scenario step; (scenario, detection seconds, seen) per step."""
        results = []
        for i, step in enumerate(STEPS):
            wall = time.time()
            t_switch = self.switch(step.scenario) if i else time.monotonic()
            if i == 0:
                self.wait_until_reported()
            seen, alerts = self.wait(step, wall, timeout_s)
            took = time.monotonic() - t_switch
            results.append((step.scenario, took, seen))
            self.say(f"\n━━ scenario {step.scenario}: {step.expect}")
            self.say(f"   {'seen' if seen else 'NOT seen'} {took:.1f} s after the switch\n")
            self.say(self.table())
            self.say("\n  alerts in Alertmanager:")
            self.say(self.alert_lines(alerts))
        return results


def run(lab: Lab) -> int:
    """`make demo`: bring everything up, walk the scenarios, stay up until Ctrl-C."""
    lab.up("er")
    demo = Demo(lab)
    try:
        demo.start()
        print(
            f"erpath demo: lab {lab.prefix} up; collector, Prometheus, Alertmanager and 4 agents started "
            f"(probe interval {INTERVAL_S:.0f} s, flip confirmed after 2 reports)"
        )
        demo.walk()
        ns = lab.ns("collector")
        print("\nStaying up. From this host (the services live in the lab's collector namespace):")
        print(f"  collector API   ip netns exec {ns} curl -s {demo.fleet.url}/api/v1/paths")
        print(
            f"  Prometheus      ip netns exec {ns} curl -s '{PROMETHEUS}/api/v1/query?query=erpath_path_info'"
        )
        print(f"  Alertmanager    ip netns exec {ns} curl -s {ALERTMANAGER}/api/v2/alerts")
        print(f"  logs            {WORKDIR}")
        print("Ctrl-C to stop and clean up.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        demo.stop()
        lab.down()
