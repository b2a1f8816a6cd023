"""Run an AgentService in the test's (main) thread, as `erpath-agent run` does, for a while."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.collector.realparts import free_port

from .loopback import collector_table, loopback_config, write_token


def loopback_agent_config(tmp_path: Path, agent_id: str) -> Path:
    """A config file for an agent probing 127.0.0.1 only, its collector a
    bound-and-released port (away: connections are refused)."""
    config = tmp_path / "agent.toml"
    collector = collector_table(f"http://127.0.0.1:{free_port()}", write_token(tmp_path))
    config.write_text(loopback_config(tmp_path / "spool", agent_id=agent_id, collector=collector))
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
