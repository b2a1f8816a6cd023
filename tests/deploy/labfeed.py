"""Real reports from the lab's branch agent, delivered to a collector on loopback.

The lab's agents reach only the lab's networks, so the test host relays: it
runs the agent in its namespace and POSTs the reports it produced, byte for
byte.  Two ways, as an operator would run them:

- `probe once --json` per scenario (path, TCP, DNS and trace figures);
- `erpath-agent run` (the service) for two cycles, whose reports also carry
  the agent's interval and health block (cycle time, spool, dropped, the
  service tags' changeNumber and age: the lab's file, copied with an mtime 15
  days ago, so ErpathStaleServiceTags has data), read from its spool since the lab has no
  route to the collector.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.deploy.stack import Collector, wait_for
from tests.lab.agentconfig import write_config

AGENT_BIN = str(Path(sys.executable).with_name("erpath-agent"))
# A portal, sign-in and a CDN name: ExpressRoute, ExpressRoute and CDN when
# healthy.  Few targets keep the routers' ICMP rate limits out of the verdicts.
TARGETS = ["make.powerapps.com", "login.microsoftonline.com", "content.powerapps.com"]
# The service agent's service tags: installed this long ago (past ErpathStaleServiceTags' 14 days).
TAGS_AGE_S = 15 * 86400.0
# The [service_tags] file line (comments may come between).
_TAGS_FILE = re.compile(r'^(\[service_tags\]\n(?:#.*\n)*file\s*=\s*)"([^"]+)"', re.M)


def stale_service_tags(source: Path, directory: Path) -> Path:
    """A copy of the lab's service tags file (the same verdicts), installed TAGS_AGE_S ago."""
    path = directory / source.name
    shutil.copyfile(source, path)
    installed = time.time() - TAGS_AGE_S
    os.utime(path, (installed, installed))
    return path


def probe_once(lab, scenario_dir: Path, state_dir: Path) -> bytes:
    config = write_config("branch", lab.current_scenario, scenario_dir)
    proc = lab.run(
        "branch",
        [
            "env",
            f"STATE_DIRECTORY={state_dir}",
            AGENT_BIN,
            "probe",
            "once",
            "--json",
            "--config",
            str(config),
            *TARGETS,
        ],
        timeout=60,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout.encode()


def service_config(lab, directory: Path, agent: str) -> Path:
    """The branch config for the current scenario, as a second agent of the site probing TARGETS."""
    text = write_config("branch", lab.current_scenario, directory).read_text()
    text = re.sub(r'^id = "branch"$', f'id = "{agent}"', text, count=1, flags=re.M)
    text = text.split("\n[[target]]")[0]  # the lab's targets are last; keep only ours
    text = text.replace("[probe]\n", "[probe]\ninterval_s = 10.0\njitter_s = 0.0\n", 1)
    text += "".join(f'\n[[target]]\nname = "{t}"\n' for t in TARGETS)
    text += f'\n[spool]\ndir = "{directory / "spool"}"\n'
    text = _TAGS_FILE.sub(
        lambda m: f'{m.group(1)}"{stale_service_tags(Path(m.group(2)), directory)}"', text, count=1
    )
    path = directory / f"{agent}.toml"
    path.write_text(text)
    return path


def run_service(
    lab, directory: Path, agent: str, cycles: int = 2, timeout_s: float = 40.0
) -> list[Path]:
    """`erpath-agent run` in the branch namespace until `cycles` reports are spooled; their files."""
    config = service_config(lab, directory, agent)
    spool = directory / "spool"
    env = {**os.environ, "STATE_DIRECTORY": str(directory / "state")}
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns("branch"), AGENT_BIN, "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(directory / "agent.log").open("wb"),
    )
    try:
        wait_for(
            lambda: len(list(spool.glob("*.json.gz"))) >= cycles or proc.poll() is not None,
            timeout_s,
            "agent service cycles",
        )
        assert proc.poll() is None, (directory / "agent.log").read_text()[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    return sorted(spool.glob("*.json.gz"))


def relay(collector: Collector, token: str, body: bytes, *, gzipped: bool = False) -> None:
    status = collector.post(body, token, gzipped=gzipped)
    assert status in (200, 201), status
