"""Run an AgentService in the test's (main) thread, as `erpath-agent run` does, for a while."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.collector.realparts import free_port

# An agent probing 127.0.0.1 only, its collector a bound-and-released port
# (away: connections are refused).
LOOPBACK_AGENT = """
[agent]
id = "{agent_id}"
site = "lab"
[probe]
builtin_targets = false
interval_s = 10
jitter_s = 0
[collector]
url = "http://127.0.0.1:{port}"
token_file = "{token}"
allow_plaintext = true
[spool]
dir = "{spool}"
[[target]]
name = "loopback"
address = "127.0.0.1"
port = 9
"""


def loopback_agent_config(tmp_path: Path, agent_id: str) -> Path:
    """A config file (and its token) for an agent of LOOPBACK_AGENT."""
    token = tmp_path / "token"
    token.write_text("tok\n")
    token.chmod(0o600)
    config = tmp_path / "agent.toml"
    config.write_text(
        LOOPBACK_AGENT.format(
            agent_id=agent_id, port=free_port(), token=token, spool=tmp_path / "spool"
        )
    )
    return config


def run_for(svc, seconds: float) -> tuple[int, float]:
    """Run the service in this (main) thread; SIGTERM's handler after `seconds` at the latest."""
    stopper = threading.Timer(seconds, svc._on_term, args=(None, None))
    stopper.start()
    t0 = time.monotonic()
    try:
        return svc.run(), time.monotonic() - t0
    finally:
        stopper.cancel()
