"""Send pacing: the global packets-per-second cap and a model of each router's ICMP budget.

Routers rate-limit the time-exceeded messages traceroute lives on.  Linux
keeps, per router and per destination of the ICMP (us), a token bucket of
`icmp_ratelimit` (1 s) per message with a burst of six (XRLIM_BURST_FACTOR):
a router answers six questions at once, then one per second.  A question
asked while the bucket is empty is simply lost.  `RouterBudget` mirrors
those buckets from what we sent and what came back, so a question that a
known router must answer waits for its token instead of being wasted.

ICMPv6 has a budget of its own (net/ipv6/icmp.c, icmpv6_xrlim_allow): the
same burst and `net.ipv6.icmp.ratelimit` (1000 ms) per message.  Older
kernels shortened it for a router whose route back to us is wider than a
/128 (halved per 32 bits of prefix); Linux 6.18 measured in our namespaces
gives one per second after the burst, like IPv4 -- the conservative
default, and a faster router is found by the credit below.  A router's
IPv4 and IPv6 addresses are different keys, so the two budgets never mix;
an IPv6 key (an address, or the TTL bucket of an IPv6 question) contains
":" and refills at `refill_v6_s`.

A router with no route to a destination answers "network unreachable" at
every TTL past its own, and Linux charges that answer twice to the same
per-destination tokens (net/ipv4/route.c ip_error's limiter, burst 5, then
icmp_send's): about two answers at once, then one per two seconds, and a
question asked with one token left spends it and gets nothing.  Questions
such a router may answer therefore cost `UNREACHABLE_COST` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    rate_per_s: float
    burst: float
    tokens: float
    updated_s: float

    def _refill(self, now_s: float) -> None:
        if now_s > self.updated_s:
            self.tokens = min(self.burst, self.tokens + (now_s - self.updated_s) * self.rate_per_s)
            self.updated_s = now_s

    def wait_s(self, now_s: float, n: float = 1.0) -> float:
        """How long until `n` tokens are there (0 if now)."""
        self._refill(now_s)
        missing = n - self.tokens
        if missing <= 1e-9:
            return 0.0
        # A wait below a microsecond (a generous router's refill) is no wait:
        # a clock that cannot tell it apart would be asked again forever.
        wait_s = missing / self.rate_per_s
        return 0.0 if wait_s < 1e-6 else wait_s

    def take(self, now_s: float, n: float = 1.0) -> None:
        self._refill(now_s)
        self.tokens -= n

    def give(self, now_s: float, n: float = 1.0) -> None:
        self._refill(now_s)
        self.tokens = min(self.burst, self.tokens + n)

    def empty(self, now_s: float) -> None:
        """The router refused just now: it has no token (even if we asked on credit)."""
        self._refill(now_s)
        self.tokens = 0.0


# Tokens an answer from a router with no route costs (ip_error + icmp_send).
UNREACHABLE_COST = 2.0

# A router proven to answer beyond the modelled bucket is not rate limited
# like Linux: it gets a bucket this large (the pps cap still applies).
GENEROUS_TOKENS = 1e6


class RouterBudget:
    """Our estimate of each router's remaining ICMP tokens, keyed by its address.

    A router that answers more than any bucket of the modelled size could
    have allowed since its first answer (its limit is higher, or off) is
    modelled as unlimited from then on.  To find out, a caller may ask on
    credit (another burst beyond the model) a router that has never been
    silent; one silence ends the credit.
    """

    def __init__(self, burst: int, refill_s: float, refill_v6_s: float | None = None):
        self.burst = float(burst)
        self.rate_per_s = 1.0 / refill_s
        self.rate_v6_per_s = 1.0 / (refill_v6_s if refill_v6_s is not None else refill_s)
        self._buckets: dict[str, TokenBucket] = {}
        self._answers: dict[str, tuple[float, int]] = {}  # router -> (first answer, answers)
        self._limited: set[str] = set()  # routers that went silent once

    def _bucket(self, router: str, now_s: float) -> TokenBucket:
        b = self._buckets.get(router)
        if b is None:
            # A router we have not asked yet is assumed rested (full bucket).
            rate = self.rate_v6_per_s if ":" in router else self.rate_per_s
            b = self._buckets[router] = TokenBucket(rate, self.burst, self.burst, now_s)
        return b

    def wait_s(
        self, routers: frozenset[str], now_s: float, credit: bool = False, cost: float = 1.0
    ) -> float:
        def need(r: str) -> float:
            return cost - self.burst if credit and r not in self._limited else cost

        return max((self._bucket(r, now_s).wait_s(now_s, need(r)) for r in routers), default=0.0)

    def tokens(self, router: str, now_s: float) -> float:
        """The modelled tokens `router` has left now."""
        b = self._bucket(router, now_s)
        b._refill(now_s)
        return b.tokens

    def reserve(self, routers: frozenset[str], now_s: float, cost: float = 1.0) -> None:
        for r in routers:
            self._bucket(r, now_s).take(now_s, cost)

    def answered(self, router: str, reserved: frozenset[str], now_s: float) -> None:
        """A reply came from `router` to a question reserved against `reserved`."""
        first_s, n = self._answers.get(router, (now_s, 0))
        self._answers[router] = (first_s, n + 1)
        rate = self.rate_v6_per_s if ":" in router else self.rate_per_s
        if n + 1 > self.burst + (now_s - first_s) * rate + 1:
            b = self._bucket(router, now_s)
            b.rate_per_s = b.burst = b.tokens = GENEROUS_TOKENS
        for r in reserved - {router}:
            self._bucket(r, now_s).give(now_s)  # the prediction was wrong: refund
        if router not in reserved:
            b = self._bucket(router, now_s)
            b.take(now_s)
            b.tokens = max(b.tokens, 0.0)  # it did answer, so it had a token
        else:
            b = self._bucket(router, now_s)
            if router in self._limited:
                b.tokens = max(b.tokens, 0.0)

    def give(self, routers: frozenset[str], now_s: float) -> None:
        """Return the tokens of questions that turned out to cost nothing."""
        for r in routers:
            self._bucket(r, now_s).give(now_s)

    def silent(self, reserved: frozenset[str], now_s: float) -> None:
        """A question reserved against `reserved` went unanswered: assume they ran dry."""
        for r in reserved:
            self._bucket(r, now_s).empty(now_s)
            self._limited.add(r)
