"""Run an AgentService in the test's (main) thread, as `erpath-agent run` does, for a while."""

from __future__ import annotations

import threading
import time


def run_for(svc, seconds: float) -> tuple[int, float]:
    """Run the service in this (main) thread; SIGTERM's handler after `seconds` at the latest."""
    stopper = threading.Timer(seconds, svc._on_term, args=(None, None))
    stopper.start()
    t0 = time.monotonic()
    try:
        return svc.run(), time.monotonic() - t0
    finally:
        stopper.cancel()
