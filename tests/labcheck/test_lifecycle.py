"""Lifecycle: live switching, a second instance side by side, clean teardown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.lab import Lab
from tests.lab import state as lab_state

pytestmark = pytest.mark.lab

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _inode(ns: str) -> int:
    return os.stat(f"/run/netns/{ns}").st_ino


def test_switching_is_live(lab: Lab, lab_scenario) -> None:
    before = {n: _inode(lab.ns(n)) for n in ("ce1", "dccore", "mscore")}
    for name in ("er-secondary", "internet-failover", "asymmetric-nat", "er"):
        lab_scenario(name)
        assert lab.current_scenario == name
    assert {n: _inode(lab.ns(n)) for n in before} == before


def test_second_instance_coexists_and_leaves_nothing(lab: Lab) -> None:
    other = Lab(prefix=f"t{os.getpid() % 10000}")
    try:
        seconds = other.up("internet-failover")
        assert seconds < 15
        assert other.up("er") < 15  # idempotent: tears down and builds again
        assert other.status()["up"] and lab.status()["up"]
        probe = other.run(
            "branch",
            [
                "traceroute",
                "-T",
                "-p",
                "443",
                "-n",
                "-q",
                "1",
                "-w",
                "1",
                "-m",
                "8",
                "198.19.16.10",
            ],
            timeout=60,
        )
        assert "192.0.2.2" in probe.stdout
    finally:
        other.down()
    assert lab_state.lab_namespaces(other.prefix) == []
    assert not lab_state.state_dir(other.prefix).exists()
    assert lab.status()["up"]


def test_down_after_crash_mid_build_sweeps_namespaces_and_processes(lab: Lab) -> None:
    prefix = f"c{os.getpid() % 10000}"
    from pyroute2 import netns

    netns.create(f"{prefix}-branch")
    netns.create(f"{prefix}-svc")
    # A process left running inside a half-built lab, with no pid file.
    stray = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-svc", "sleep", "300"])
    deadline = time.monotonic() + 5
    while os.stat(f"/proc/{stray.pid}/ns/net").st_ino != _inode(f"{prefix}-svc"):
        assert time.monotonic() < deadline, "stray process never entered the namespace"
        time.sleep(0.01)
    try:
        removed = Lab(prefix=prefix).down()
        assert sorted(removed) == [f"{prefix}-branch", f"{prefix}-svc"]
        assert stray.wait(timeout=5) is not None
    finally:
        if stray.poll() is None:
            stray.kill()
    assert lab_state.lab_namespaces(prefix) == []


def test_cli_env_json_and_status(lab: Lab) -> None:
    env = subprocess.run(
        [sys.executable, "-m", "tests.lab", "env", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ERPATH_LAB_PREFIX": lab.prefix},
    )
    data = json.loads(env.stdout)
    assert data["up"] and data["prefix"] == lab.prefix
    status = subprocess.run(
        [sys.executable, "-m", "tests.lab", "status"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ERPATH_LAB_PREFIX": lab.prefix},
    )
    assert all(json.loads(status.stdout)["processes"].values())
    human = subprocess.run(
        [sys.executable, "-m", "tests.lab", "env"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ERPATH_LAB_PREFIX": lab.prefix},
    )
    assert "circuits:" in human.stdout and "make.powerapps.com" in human.stdout


def test_service_tags_file_is_written(lab: Lab) -> None:
    with open(lab.env()["service_tags_file"]) as f:
        doc = json.load(f)
    names = {v["name"] for v in doc["values"]}
    assert {
        "PowerPlatformInfra",
        "PowerPlatformInfra.WestEurope",
        "AzureFrontDoor.Frontend",
        "AzureCloud",
        "AzureCloud.westeurope",
    } <= names
