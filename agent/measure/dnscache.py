"""Re-resolve a name only when its records expire (the service's DNS cache).

Between probe cycles the agent keeps each name's last answer for its TTL, so
a 60 s interval does not hammer resolvers for 3600 s records, and an answer
change is still seen as soon as the records say it may happen.  Failures are
kept briefly (negative caching) so a broken resolver is retried soon.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.report import DnsResult

ResolveMany = Callable[[Sequence[str], Sequence[str], float], dict[str, DnsResult]]

NEGATIVE_TTL_S = 30.0
MIN_TTL_S = 5.0


@dataclass(frozen=True, slots=True)
class _Entry:
    result: DnsResult
    expires_at: float


class DnsCache:
    def __init__(self, resolve_many: ResolveMany, clock: Callable[[], float] = time.monotonic):
        self._resolve_many = resolve_many
        self._clock = clock
        self._entries: dict[tuple[str, tuple[str, ...]], _Entry] = {}

    def resolve_many(
        self, names: Sequence[str], resolvers: Sequence[str], timeout_s: float
    ) -> dict[str, DnsResult]:
        now = self._clock()
        key_res = tuple(resolvers)
        out: dict[str, DnsResult] = {}
        stale = []
        for name in names:
            entry = self._entries.get((name, key_res))
            if entry is not None and entry.expires_at > now:
                out[name] = entry.result
            else:
                stale.append(name)
        if stale:
            fresh = self._resolve_many(stale, resolvers, timeout_s)
            for name, result in fresh.items():
                ttl = (
                    NEGATIVE_TTL_S
                    if result.failure or result.ttl_s is None
                    else max(result.ttl_s, MIN_TTL_S)
                )
                self._entries[(name, key_res)] = _Entry(result, now + ttl)
                out[name] = result
        # Expired entries go, so names dropped by a config reload cannot
        # make the cache grow forever.
        for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[key]
        return out
