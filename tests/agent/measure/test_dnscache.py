"""The service's DNS cache honours record TTLs and retries failures soon."""

from agent.measure.dnscache import NEGATIVE_TTL_S, DnsCache
from agent.report import DnsResult


class _Clock:
    now = 1000.0

    def __call__(self):
        return self.now


def test_honours_ttl_and_negative_caching():
    calls = []

    def resolve_many(names, resolvers, timeout_s):
        calls.append(tuple(names))
        return {
            n: (
                DnsResult(failure="dns.servfail")
                if n == "bad"
                else DnsResult(addresses=("198.18.1.1",), ttl_s=300)
            )
            for n in names
        }

    clock = _Clock()
    cache = DnsCache(resolve_many, clock)
    cache.resolve_many(["a", "bad"], ["system"], 1.0)
    clock.now += NEGATIVE_TTL_S + 1
    cache.resolve_many(["a", "bad"], ["system"], 1.0)  # only the failure is asked again
    clock.now += 300
    out = cache.resolve_many(["a"], ["system"], 1.0)  # now the record expired too
    assert calls == [("a", "bad"), ("bad",), ("a",)]
    assert out["a"].addresses == ("198.18.1.1",)
    # Another resolver set is another question.
    cache.resolve_many(["a"], ["198.18.53.53"], 1.0)
    assert calls[-1] == ("a",) and len(calls) == 4
