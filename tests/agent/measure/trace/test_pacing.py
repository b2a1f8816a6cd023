"""The router ICMP budget model and the options' validation (no root)."""

import pytest

from agent.measure.trace import TraceOptions
from agent.measure.trace.pacing import RouterBudget, TokenBucket


def test_router_answers_six_then_one_per_second():
    budget = RouterBudget(burst=6, refill_s=1.0)
    r = frozenset({"198.19.0.6"})
    for _ in range(6):
        assert budget.wait_s(r, 0.0) == 0.0
        budget.reserve(r, 0.0)
    assert budget.wait_s(r, 0.0) == pytest.approx(1.0)
    assert budget.wait_s(r, 0.5) == pytest.approx(0.5)
    assert budget.wait_s(r, 1.0) == 0.0


def test_wrong_prediction_is_refunded_and_silence_empties():
    budget = RouterBudget(burst=6, refill_s=1.0)
    a, b = "10.0.0.1", "10.0.0.2"
    budget.reserve(frozenset({a}), 0.0)
    budget.answered(b, frozenset({a}), 0.0)  # b answered instead of a
    assert budget._bucket(a, 0.0).tokens == 6
    assert budget._bucket(b, 0.0).tokens == 5
    budget.silent(frozenset({a}), 0.0)  # a went quiet: assume it is out of tokens
    assert budget.wait_s(frozenset({a}), 0.0) == pytest.approx(1.0)


def test_pps_bucket():
    bucket = TokenBucket(rate_per_s=100.0, burst=2.0, tokens=2.0, updated_s=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    assert bucket.wait_s(0.0) == pytest.approx(0.01)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"protocol": "sctp"}, "protocol must be tcp, udp or icmp"),
        ({"first_ttl": 5, "max_ttl": 3}, "first_ttl <= max_ttl"),
        ({"probes_per_hop": 0}, "probes_per_hop must be 1..10"),
        ({"flows": 0}, "flows must be 1..16"),
        ({"source_port": 65535, "flows": 2}, "source_port must leave room"),
    ],
)
def test_bad_options_rejected(kw, message):
    with pytest.raises(ValueError, match=message):
        TraceOptions(**kw)


def test_router_answering_beyond_any_bucket_is_modelled_unlimited():
    budget = RouterBudget(burst=6, refill_s=1.0)
    r = "192.0.2.2"
    for i in range(7):  # 6 + 0.1 s x 1/s + 1 is the most a Linux router allows
        budget.answered(r, frozenset(), 0.1 * i / 7)
    assert budget.wait_s(frozenset({r}), 0.1) > 0.5  # so far, a Linux router run dry
    budget.answered(r, frozenset(), 0.1)  # the eighth: it is not rate limited like Linux
    for _ in range(100):
        budget.reserve(frozenset({r}), 0.1)
    assert budget.wait_s(frozenset({r}), 0.1) == 0.0


def test_credit_for_a_router_never_silent_ends_with_its_first_silence():
    budget = RouterBudget(burst=6, refill_s=1.0)
    r = frozenset({"198.19.0.6"})
    for _ in range(6):
        budget.reserve(r, 0.0)
    assert budget.wait_s(r, 0.0) > 0  # the model is dry
    assert budget.wait_s(r, 0.0, credit=True) == 0.0  # but it never went silent: ask on
    budget.reserve(r, 0.0)
    budget.silent(r, 0.0)
    assert budget.wait_s(r, 0.0, credit=True) == pytest.approx(1.0)
