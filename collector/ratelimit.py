"""Per-agent token bucket: a burst for spool flushes, then a steady rate."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # agent -> (tokens, at)

    def take(self, agent: str) -> float:
        """0 when the agent may send now, else the seconds until it may."""
        now = self._clock()
        tokens, at = self._buckets.get(agent, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
        if tokens >= 1.0:
            self._buckets[agent] = (tokens - 1.0, now)
            return 0.0
        self._buckets[agent] = (tokens, now)
        return (1.0 - tokens) / self.rate_per_s
