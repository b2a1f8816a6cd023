"""Token buckets: per agent (a burst for spool flushes, then a steady rate) and
per client address for failed authentications (token guessing, junk floods);
the ingest admission limits; and the agents that ignore a Retry-After."""

from __future__ import annotations

import time
from collections.abc import Callable

# Keys are bounded: an attacker with many addresses must not grow memory without end.
MAX_KEYS = 100_000


class RateLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ):
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate_per_s)

    def take(self, key: str) -> float:
        """0 when the key may send now, else the seconds until it may."""
        now = self._clock()
        tokens = self._level(key, now)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return 0.0
        self._store(key, tokens, now)
        return (1.0 - tokens) / self.rate_per_s

    def charge(self, key: str, tokens: float) -> None:
        """Spend `tokens` more, into debt if need be: a costly request already in
        progress is never refused half-way; the key's next requests wait for it."""
        if tokens <= 0:
            return
        now = self._clock()
        self._store(key, self._level(key, now) - tokens, now)

    def give_back(self, key: str) -> None:
        """Return the token `take` spent on a request that was then not served (the
        collector at capacity): shedding load costs the agent nothing."""
        now = self._clock()
        self._store(key, min(self.burst, self._level(key, now) + 1.0), now)

    def wait_s(self, key: str) -> float:
        """Like `take` without spending: 0 when the key has a token left."""
        tokens = self._level(key, self._clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate_per_s

    def _store(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            # Full buckets carry no state worth keeping; drop them, else the oldest half.
            full = [k for k in self._buckets if self._level(k, now) >= self.burst]
            victims = (
                full
                or sorted(self._buckets, key=lambda k: self._buckets[k][1])[: self._max_keys // 2]
            )
            for k in victims:
                del self._buckets[k]
        self._buckets[key] = (tokens, now)

    def __len__(self) -> int:
        return len(self._buckets)


class Admission:
    """At most `limit` reports in progress (body read, validation, commit).

    Beyond that the collector is over capacity: a request that waits in line
    only times out at the client after costing memory and CPU (the work is
    wasted, and the retry comes anyway).  Shedding it at once with 503 and
    Retry-After keeps latency and memory bounded; the agent's spool holds the
    report until it is accepted.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.in_flight = 0

    def admit(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1


class PerKey:
    """At most `limit` requests in progress per key (an agent).

    An agent sends its reports one at a time; more than a couple in progress
    at once is a loop or an attack, and each one holds an admission slot (a
    body trickling in, a large decode): one agent must not take the slots
    every other agent needs.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._in_flight: dict[str, int] = {}

    def admit(self, key: str) -> bool:
        n = self._in_flight.get(key, 0)
        if n >= self.limit:
            return False
        self._in_flight[key] = n + 1
        return True

    def leave(self, key: str) -> None:
        n = self._in_flight.pop(key, 1) - 1
        if n > 0:
            self._in_flight[key] = n

    def __len__(self) -> int:
        return len(self._in_flight)


# Connections held unread at once, all agents together; beyond it they are closed at once.
# Each held connection costs a socket and its buffers (aiohttp reads ~128 KiB ahead).
MAX_HELD = 128


class RetryAfterWatch:
    """Agents that ignore the Retry-After of a refusal, and the requests held for it.

    An agent refused by its bucket is told when to come back.  An agent that
    sends again before then, and is refused again, ignores it: answering each
    such request costs the collector its whole body (aiohttp reads and
    discards the unread body of every answered request so that the client
    sees the answer), so a hostile agent resending large reports from many
    connections makes the collector drain gigabytes.  Its requests are held
    unread until the Retry-After ends instead, then closed without an answer.

    `allowance` refusals per window are answered: an agent may have that many
    requests in progress (the per-agent in-flight limit), each refused before
    its sender saw the first refusal.  Only a bucket refusal opens a window:
    the in-flight limit's Retry-After is a hint (the report in progress may
    end sooner), and requests sent together before any answer ignored nothing.
    """

    def __init__(
        self,
        allowance: int,
        max_held: int = MAX_HELD,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ):
        self.allowance = allowance
        self.max_held = max_held
        self.held = 0
        self._clock = clock
        self._max_keys = max_keys
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (until, refusals in it)

    def refused(self, key: str, retry_after_s: float) -> float:
        """Count a refusal of `key` that asks it to wait `retry_after_s` (0: opens no
        window).  0 when it is to be answered; else the seconds left of the earlier
        refusal's Retry-After that the key ignores (hold the request that long)."""
        now = self._clock()
        until, count = self._windows.get(key, (0.0, 0))
        if now >= until:
            if retry_after_s > 0:
                self._store(key, now + retry_after_s, 1, now)
            else:
                self._windows.pop(key, None)
            return 0.0
        count += 1
        if count > self.allowance:
            self._windows[key] = (until, count)
            return until - now
        self._windows[key] = (max(until, now + retry_after_s), count)
        return 0.0

    def hold(self) -> bool:
        """Take one of the `max_held` places for a held request; False when all are taken."""
        if self.held >= self.max_held:
            return False
        self.held += 1
        return True

    def release(self) -> None:
        self.held -= 1

    def _store(self, key: str, until: float, count: int, now: float) -> None:
        if key not in self._windows and len(self._windows) >= self._max_keys:
            # Ended windows carry nothing; drop them, else the half that ends soonest.
            ended = [k for k, (u, _) in self._windows.items() if u <= now]
            victims = (
                ended
                or sorted(self._windows, key=lambda k: self._windows[k][0])[: self._max_keys // 2]
            )
            for k in victims:
                del self._windows[k]
        self._windows[key] = (until, count)

    def __len__(self) -> int:
        return len(self._windows)
