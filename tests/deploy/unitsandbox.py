"""Run the shipped systemd units' ExecStart the way systemd would, without a systemd manager.

Run as root inside `unshare --mount --net --propagation private` (a fresh mount and network
namespace; nothing here is seen outside it):

    python -m tests.deploy.unitsandbox WORKDIR COLLECTOR_CONFIG [AGENT_CONFIG]

What each unit asks for is built from its own lines: `StateDirectory=` (a directory only the
service's uid may write, under a fresh /var/lib), `ConfigurationDirectory=` (/etc/NAME, the
config written there), `ProtectSystem=strict` (every mount read-only except the state directories
and the API file systems), `PrivateTmp=`, `DynamicUser=` (an unprivileged uid of its own),
`UMask=`, `CapabilityBoundingSet=`/`AmbientCapabilities=`, `NoNewPrivileges=`, and the agent's
`LoadCredential=` (the token under /run/credentials/UNIT/).  Then the documented first steps run
as those uids: `erpath-collector token add`, the collector's ExecStart as written (the program
path mapped to this checkout), one report posted to the default address, and, given an agent
config, the agent's ExecStart until its first report is stored; then SIGTERM to each.  One JSON
line on stdout says what happened.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.collector.reports import er, simple

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
BIN = Path(sys.executable).parent
PORT = 9470  # the collector's default


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@dataclass
class Unit:
    name: str
    uid: int  # what DynamicUser= picks is some unprivileged uid of the unit's own
    settings: dict[str, list[str]]
    state: Path
    config_dir: Path

    @classmethod
    def load(cls, name: str, uid: int) -> Unit:
        settings = unit_settings((UNITS / name).read_text())
        (state,) = settings["StateDirectory"]
        (conf,) = settings["ConfigurationDirectory"]
        return cls(name, uid, settings, Path("/var/lib") / state, Path("/etc") / conf)

    def argv(self) -> list[str]:
        (exec_start,) = self.settings["ExecStart"]
        argv = shlex.split(exec_start)
        argv[0] = str(BIN / Path(argv[0]).name)  # /opt/erpath/bin/X -> this checkout's X
        return argv

    def wrap(self, argv: list[str]) -> list[str]:
        """setpriv as the unit's identity, capabilities and no_new_privs."""
        prefix = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]
        caps = [c.lower().removeprefix("cap_") for c in self.settings["CapabilityBoundingSet"]]
        keep = ",".join(f"+{c}" for c in " ".join(caps).split())
        prefix += [f"--inh-caps=-all{',' + keep if keep else ''}"]
        prefix += [f"--ambient-caps=-all{',' + keep if keep else ''}"]
        prefix += [f"--bounding-set=-all{',' + keep if keep else ''}"]
        if self.settings.get("NoNewPrivileges") == ["yes"]:
            prefix.append("--no-new-privs")
        return prefix + argv

    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "STATE_DIRECTORY": str(self.state),
            "CONFIGURATION_DIRECTORY": str(self.config_dir),
            "CREDENTIALS_DIRECTORY": f"/run/credentials/{self.name}",
        }

    def umask(self) -> int:
        return int(self.settings.get("UMask", ["0022"])[0], 8)

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        mask = self.umask()
        return subprocess.run(
            self.wrap(argv), env=self.env(), preexec_fn=lambda: os.umask(mask), **kw
        )

    def start(self, log) -> subprocess.Popen:
        mask = self.umask()
        return subprocess.Popen(
            self.wrap(self.argv()),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env(),
            preexec_fn=lambda: os.umask(mask),
        )


def sandbox(units: list[Unit], workdir: Path, configs: dict[Path, str]) -> None:
    sh("ip", "link", "set", "lo", "up")
    # /etc as an overlay, so the config directory can exist without touching the host's /etc.
    for d in ("etc-upper", "etc-work"):
        (workdir / d).mkdir()
    sh(
        "mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir=/etc,upperdir={workdir / 'etc-upper'},workdir={workdir / 'etc-work'}", "/etc",
    )  # fmt: skip
    for path, text in configs.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    sh("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/var/lib")
    sh("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run")
    for u in units:
        u.state.mkdir(mode=0o700)
        os.chown(u.state, u.uid, u.uid)
        # Its own mount, as systemd makes it: writable once the rest is read-only.
        sh("mount", "--bind", str(u.state), str(u.state))
    if any(u.settings.get("PrivateTmp") == ["yes"] for u in units):
        for tmp in ("/tmp", "/var/tmp"):
            private_tmp(Path(tmp))
    if all(u.settings.get("ProtectSystem") == ["strict"] for u in units):
        keep = ("/proc", "/sys", "/dev", "/tmp", "/var/tmp", "/run", *(str(u.state) for u in units))
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4]
            if any(point == k or point.startswith(k + "/") for k in keep):
                continue
            subprocess.run(["mount", "-o", "remount,bind,ro", point], capture_output=True)


def private_tmp(tmp: Path) -> None:
    """A fresh tmpfs on `tmp`, as PrivateTmp= gives the unit.

    A checkout or virtual environment that itself lives under it (a CI clone
    in /tmp) stays visible: it is bound into the new tmpfs before that is
    moved into place, as the installed program would be outside /tmp.
    """
    staging = Path("/run") / f"private{str(tmp).replace('/', '-')}"
    staging.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", str(staging))
    for keep in {ROOT.resolve(), Path(sys.prefix).resolve()}:
        if keep.is_relative_to(tmp):
            inside = staging / keep.relative_to(tmp)
            inside.mkdir(parents=True, exist_ok=True)
            sh("mount", "--bind", str(keep), str(inside))
    sh("mount", "--move", str(staging), str(tmp))


def load_credentials(unit: Unit, values: dict[str, str]) -> None:
    """LoadCredential=NAME:PATH — here the value itself: a file only the unit's uid reads."""
    d = Path(f"/run/credentials/{unit.name}")
    d.mkdir(parents=True)
    for spec in unit.settings.get("LoadCredential", []):
        name = spec.split(":", 1)[0]
        path = d / name
        path.write_text(values[name] + "\n")
        os.chown(path, unit.uid, unit.uid)
        path.chmod(0o400)


def http_json(method: str, path: str, body: bytes | None = None, headers=None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if http_json("GET", "/readyz")[0] == 200:
                return
        except OSError:
            time.sleep(0.1)


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def identity(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return {"uid": fields["Uid"].split(), "cap_eff": fields["CapEff"].strip()}


def main(workdir: Path, collector_config: str, agent_config: str | None) -> dict:
    collector = Unit.load("erpath-collector.service", 61001)
    agent = Unit.load("erpath-agent.service", 61002) if agent_config is not None else None
    units = [collector, *([agent] if agent else [])]
    # Opened before PrivateTmp hides the work directory (under /tmp).
    logs = {u.name: open(workdir / f"{u.name}.log", "w+") for u in units}  # noqa: SIM115
    configs = {collector.config_dir / "collector.toml": collector_config}
    if agent:
        configs[agent.config_dir / "agent.toml"] = agent_config
    sandbox(units, workdir, configs)
    result: dict = {"argv": collector.argv()}
    tokens = {}
    for agent_id in ("manual", "br-1"):
        add = collector.run(
            [collector.argv()[0], "token", "add", agent_id, *collector.argv()[2:]],
            capture_output=True,
            text=True,
        )
        result["token_add"] = {"code": add.returncode, "stderr": add.stderr.strip()}
        if add.returncode != 0:
            return result
        tokens[agent_id] = add.stdout.strip().splitlines()[-1]
    serve = collector.start(logs[collector.name])
    procs = {collector.name: serve}
    try:
        wait_ready(serve)
        doc = simple("manual", 1, er())
        result["post"] = dict(
            zip(
                ("status", "body"),
                http_json(
                    "POST",
                    "/api/v1/reports",
                    json.dumps(doc).encode(),
                    {
                        "Authorization": f"Bearer {tokens['manual']}",
                        "Content-Type": "application/json",
                    },
                ),
                strict=True,
            )
        )
        result["report_id"] = doc["id"]
        result["collector"] = identity(serve.pid)
        db = collector.state / "collector.db"
        result["db"] = {"path": str(db), "uid": db.stat().st_uid, "mode": db.stat().st_mode & 0o777}
        probe = collector.run(
            ["sh", "-c", "touch /var/lib/x /etc/x /usr/x 2>&1; true"],
            capture_output=True,
            text=True,
        )
        result["writes_elsewhere"] = probe.stdout
        if agent:
            load_credentials(agent, {"agent.token": tokens["br-1"]})
            run = agent.start(logs[agent.name])
            procs[agent.name] = run
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and run.poll() is None:
                agents = http_json("GET", "/api/v1/agents")[1].get("agents", [])
                seen = [a for a in agents if a.get("agent") == "br-1"]
                if seen:
                    result["agent_seen"] = seen[0]
                    break
                time.sleep(0.5)
            if run.poll() is None:  # setpriv has long become the agent by now
                result["agent"] = identity(run.pid)
            result["agent_state"] = sorted(p.name for p in agent.state.iterdir())
    finally:
        for name, proc in reversed(procs.items()):
            result.setdefault("exit", {})[name] = stop(proc)
        for name, log in logs.items():
            log.seek(0)
            result.setdefault("log", {})[name] = log.read()[-3000:]
            log.close()
    return result


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(main(Path(args[0]), args[1], args[2] if len(args) > 2 else None)))
