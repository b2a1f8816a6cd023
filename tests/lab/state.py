"""Lab state on disk and the processes the lab starts.

Everything lives in /run/erpath-lab-<prefix>/ (state.json, pid files, logs,
certificate, service tags).  Teardown trusts nothing: it kills the recorded
pids, then every process still inside a namespace named <prefix>-*, then
removes those namespaces, so a crash mid-build leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .nsenter import NETNS_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]


def state_dir(prefix: str) -> Path:
    return Path(f"/run/erpath-lab-{prefix}")


def read_state(prefix: str) -> dict:
    try:
        return json.loads((state_dir(prefix) / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_state(prefix: str, **values) -> None:
    current = read_state(prefix)
    current.update(values)
    path = state_dir(prefix) / "state.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2) + "\n")
    tmp.replace(path)


def lab_namespaces(prefix: str) -> list[str]:
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(f"{prefix}-"))


def spawn(prefix: str, name: str, namespace: str, module: str, args: list[str]) -> subprocess.Popen:
    """Start `python -m module` inside a namespace; its pid is recorded at once."""
    d = state_dir(prefix)
    (d / "pids").mkdir(parents=True, exist_ok=True)
    (d / "logs").mkdir(parents=True, exist_ok=True)
    ready = d / f"{name}.ready"
    ready.unlink(missing_ok=True)
    with open(d / "logs" / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                namespace,
                sys.executable,
                "-m",
                module,
                *args,
                "--ready",
                str(ready),
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on the CLI must not kill the lab's servers
        )
    (d / "pids" / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc


def wait_ready(prefix: str, procs: dict[str, subprocess.Popen], timeout_s: float = 15.0) -> None:
    d = state_dir(prefix)
    deadline = time.monotonic() + timeout_s
    pending = dict(procs)
    while pending:
        for name, proc in list(pending.items()):
            if (d / f"{name}.ready").exists():
                del pending[name]
            elif proc.poll() is not None:
                log = (d / "logs" / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"lab process {name} exited with {proc.returncode}:\n{log}")
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"lab processes not ready after {timeout_s}s: {', '.join(pending)}")
        time.sleep(0.01)


def _netns_inode(namespace: str) -> int | None:
    try:
        return os.stat(os.path.join(NETNS_DIR, namespace)).st_ino
    except OSError:
        return None


def _pids_in_namespaces(inodes: set[int]) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def _is_ours(pid: int, prefix: str) -> bool:
    """A recorded pid is only killed if it still runs one of our lab modules."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(arg.startswith(b"tests.lab.") for arg in cmdline) and any(
        arg.startswith(f"{prefix}-".encode()) or f"{state_dir(prefix)}/".encode() in arg
        for arg in cmdline
    )


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 2.0
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _zombie(p)]
        time.sleep(0.02)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def teardown(prefix: str) -> list[str]:
    """Kill the lab's processes and remove its namespaces; returns what was removed."""
    d = state_dir(prefix)
    recorded = []
    for pidfile in (d / "pids").glob("*.pid") if (d / "pids").exists() else []:
        with contextlib.suppress(ValueError, OSError):
            pid = int(pidfile.read_text().strip())
            if _is_ours(pid, prefix):
                recorded.append(pid)
    _kill(recorded)
    namespaces = lab_namespaces(prefix)
    inodes = {i for i in (_netns_inode(n) for n in namespaces) if i is not None}
    own = os.getpid()
    _kill([p for p in _pids_in_namespaces(inodes) if p != own])
    from pyroute2 import netns as p2netns  # local: only teardown needs it

    for name in namespaces:
        with contextlib.suppress(OSError):
            p2netns.remove(name)
    shutil.rmtree(d, ignore_errors=True)
    return namespaces


def alive(prefix: str) -> dict[str, bool]:
    d = state_dir(prefix)
    out = {}
    for pidfile in sorted((d / "pids").glob("*.pid")) if (d / "pids").exists() else []:
        try:
            pid = int(pidfile.read_text().strip())
        except (ValueError, OSError):
            out[pidfile.stem] = False
            continue
        out[pidfile.stem] = _is_ours(pid, prefix) and not _zombie(pid)
    return out
