"""Run a shipped systemd unit's ExecStart the way systemd would, without a systemd manager.

Run as root inside `unshare --mount --net --propagation private` (a fresh mount and network
namespace; nothing here is seen outside it):

    python -m tests.deploy.unitsandbox UNIT_FILE WORKDIR CONFIG_TEXT

What the unit asks for is built from its own lines: `StateDirectory=` (a directory only the
service's uid may write, under a fresh /var/lib), `ConfigurationDirectory=` (/etc/NAME, the config
written there), `ProtectSystem=strict` (every mount read-only except the state directory and the
API file systems), `PrivateTmp=`, `DynamicUser=` (an unprivileged uid), `UMask=`, an empty
`CapabilityBoundingSet=` and `NoNewPrivileges=`.  Then the collector's documented first steps run
as that uid: `token add`, `serve` (ExecStart as written, the program path mapped to this
checkout), one report posted to the default address, SIGTERM.  One JSON line on stdout says what
happened.
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
from pathlib import Path

from tests.collector.reports import er, simple

UID = 65534  # what DynamicUser= would pick is some unprivileged uid; nobody's is one
BIN = Path(sys.executable).parent


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


def sandbox(settings: dict[str, list[str]], workdir: Path, config_text: str) -> tuple[Path, Path]:
    sh("ip", "link", "set", "lo", "up")
    (state_name,) = settings["StateDirectory"]
    (conf_name,) = settings["ConfigurationDirectory"]
    # /etc as an overlay, so the config directory can exist here without touching the host's /etc.
    for d in ("etc-upper", "etc-work"):
        (workdir / d).mkdir()
    sh(
        "mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir=/etc,upperdir={workdir / 'etc-upper'},workdir={workdir / 'etc-work'}", "/etc",
    )  # fmt: skip
    conf_dir = Path("/etc") / conf_name
    conf_dir.mkdir(exist_ok=True)
    config = conf_dir / "collector.toml"
    config.write_text(config_text)
    sh("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/var/lib")
    state = Path("/var/lib") / state_name
    state.mkdir(mode=0o700)
    os.chown(state, UID, UID)
    # Its own mount, as systemd makes it: the one writable place once the rest is read-only.
    sh("mount", "--bind", str(state), str(state))
    if settings.get("PrivateTmp") == ["yes"]:
        for tmp in ("/tmp", "/var/tmp"):
            sh("mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", tmp)
    if settings.get("ProtectSystem") == ["strict"]:
        keep = ("/proc", "/sys", "/dev", str(state), "/tmp", "/var/tmp")
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4]
            if any(point == k or point.startswith(k + "/") for k in keep):
                continue
            subprocess.run(["mount", "-o", "remount,bind,ro", point], capture_output=True)
    return config, state


def as_the_unit(settings: dict[str, list[str]], argv: list[str], **kw) -> list[str]:
    prefix = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"]
    if settings.get("CapabilityBoundingSet") == [""]:
        prefix += ["--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all"]
    if settings.get("NoNewPrivileges") == ["yes"]:
        prefix.append("--no-new-privs")
    return prefix + argv


def main(unit: Path, workdir: Path, config_text: str) -> dict:
    settings = unit_settings(unit.read_text())
    # Opened before PrivateTmp hides the work directory (under /tmp).
    log = open(workdir / "serve.log", "w+")  # noqa: SIM115 (closed at the end)
    config, state = sandbox(settings, workdir, config_text)
    umask = int(settings.get("UMask", ["0022"])[0], 8)
    env = {
        "PATH": "/usr/bin:/bin",
        "STATE_DIRECTORY": str(state),
        "CONFIGURATION_DIRECTORY": str(config.parent),
    }
    (exec_start,) = settings["ExecStart"]
    argv = shlex.split(exec_start)
    argv[0] = str(BIN / Path(argv[0]).name)  # /opt/erpath/bin/X -> this checkout's X
    result: dict = {"argv": argv}
    add = subprocess.run(
        as_the_unit(settings, [argv[0], "token", "add", "br-1", *argv[2:]]),
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=lambda: os.umask(umask),
    )
    result["token_add"] = {"code": add.returncode, "stderr": add.stderr.strip()}
    if add.returncode != 0:
        log.close()
        return result
    token = add.stdout.strip().splitlines()[-1]
    serve = subprocess.Popen(
        as_the_unit(settings, argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        preexec_fn=lambda: os.umask(umask),
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and serve.poll() is None:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", 9470, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        doc = simple("br-1", 1, er())
        conn = http.client.HTTPConnection("127.0.0.1", 9470, timeout=10)
        conn.request(
            "POST",
            "/api/v1/reports",
            body=json.dumps(doc),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        result["post"] = {"status": resp.status, "body": json.loads(resp.read() or b"{}")}
        result["report_id"] = doc["id"]
        status = Path(f"/proc/{serve.pid}/status").read_text()
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        result["uid"] = fields["Uid"].split()
        result["cap_eff"] = fields["CapEff"].strip()
        db = state / "collector.db"
        result["db"] = {"path": str(db), "uid": db.stat().st_uid, "mode": db.stat().st_mode & 0o777}
        probe = subprocess.run(
            as_the_unit(settings, ["sh", "-c", "touch /var/lib/x /etc/x /work-x 2>&1; true"]),
            capture_output=True,
            text=True,
        )
        result["writes_elsewhere"] = probe.stdout
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
        try:
            result["serve_exit"] = serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
            result["serve_exit"] = serve.wait()
        log.seek(0)
        result["log"] = log.read()[-3000:]
        log.close()
    return result


if __name__ == "__main__":
    unit, workdir, config_text = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    print(json.dumps(main(unit, workdir, config_text)))
