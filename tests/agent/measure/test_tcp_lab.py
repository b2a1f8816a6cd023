"""TCP probe states, RTT and return hops in the lab (raw SYN and connect())."""

from __future__ import annotations

import pytest

from agent.measure import tcp
from tests.lab import plan

pytestmark = pytest.mark.lab

OPEN = "198.19.16.10"


@pytest.mark.parametrize("method", ["raw", "connect"])
def test_states(lab, method):
    targets = [(OPEN, 443), (plan.CLOSED_ADDRESS, 443), (plan.FILTERED_ADDRESS, 443)]
    with lab.netns("branch"):
        got = tcp.probe_tcp(targets, 1.0, method=method)
    o, c, f = (got[t] for t in targets)
    assert (o.state, o.failure, o.method) == ("open", None, method)
    assert 0 < o.connect_s < 0.5
    assert (c.state, c.failure) == ("closed", "tcp.refused")
    assert (f.state, f.failure) == ("filtered", "tcp.filtered")
    if method == "raw":
        # the service host is 6 hops out: 5 routers decrement the SYN-ACK's TTL
        assert (o.reply_ttl, o.return_hops) == (59, 5)
    else:
        assert o.reply_ttl is None


def test_return_hops():
    assert tcp.return_hops(59) == 5
    assert tcp.return_hops(120) == 8
    assert tcp.return_hops(250) == 5
