"""A simulated agent that delivers through the agent's real Spool and Sender.

Every report enters the spool first; the spool then drains oldest first until
the collector says retry — the same order and outcomes as
`agent.service.AgentService._send_loop`, without probing or threads.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.service.sender import CollectorEndpoint, Sender
from agent.service.spool import Spool, SpooledReport
from tests.collector.reports import er, simple


class SimAgent:
    def __init__(
        self,
        agent: str,
        spool_dir: Path,
        endpoint: CollectorEndpoint,
        *,
        max_bytes: int = 50_000_000,
        max_age_s: float = 86_400,
    ):
        self.agent = agent
        self.spool = Spool(spool_dir, max_bytes=max_bytes, max_age_s=max_age_s)
        self.sender = Sender(endpoint)
        self.seq = 0
        self.acked: dict[int, str] = {}
        self.retries: list[tuple[int | None, float | None, str]] = []

    def measure(self) -> SpooledReport:
        """One cycle's report, into the spool (nothing sent yet)."""
        self.seq += 1
        doc = simple(self.agent, self.seq, er())
        return self.spool.put(self.seq, doc["id"], json.dumps(doc).encode())

    def cycle(self) -> None:
        self.measure()
        self.drain()

    def drain(self) -> None:
        for item in list(self.spool.pending()):
            d = self.sender.deliver(item)
            if d.outcome != "acked":
                assert d.outcome == "retry", d  # never "refused": that would drop the report
                self.retries.append((d.status, d.retry_after_s, d.detail))
                return
            self.acked[item.seq] = item.report_id
            self.spool.ack(item)
