"""Address selection in a real cycle: which family users get, in a throw-away namespace.

The namespace holds one service host address per family on its loopback
(198.18.10.5 and 2001:db8:ff::10, both global: RFC 6724 puts IPv6 first), a
real DNS server answering A and AAAA for the name, TCP listeners, and an
nftables rule that drops IPv6 SYNs on arrival (the input hook: the SYN is
sent, nothing answers) when a test wants IPv6 to blackhole.  Real kernel routes, real handshakes; no trace (the trace engine
has its own tests).
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from pyroute2 import netns

from agent.config import loads
from agent.cycle import ProbePlan, run_cycle
from agent.report import Report
from tests.agent.measure.test_dns import AuthServer

V4, V6, NAME = "198.18.10.5", "2001:db8:ff::10", "crm.erpath.test"
V4_ONLY = "v4only.erpath.test"
PORT = 8443

pytestmark = pytest.mark.root


def _sh(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


class Host:
    """The namespace, its DNS server and listeners (created inside it)."""

    def __init__(self, name: str):
        self.name = name
        netns.pushns(name)
        try:
            self.dns = AuthServer(
                {
                    (f"{NAME}.", "A"): (60, [V4]),
                    (f"{NAME}.", "AAAA"): (60, [V6]),
                    (f"{V4_ONLY}.", "A"): (60, [V4]),
                }
            )
            self.listeners = []
            for family, address in ((socket.AF_INET, V4), (socket.AF_INET6, V6)):
                s = socket.socket(family, socket.SOCK_STREAM)
                s.bind((address, PORT))
                s.listen(64)
                self.listeners.append(s)
        finally:
            netns.popns()

    @contextmanager
    def ipv6_syns_dropped(self) -> Iterator[None]:
        """An IPv6 blackhole while inside: the service's address drops every SYN to its port."""
        try:
            _sh("ip", "netns", "exec", self.name, "nft", "add", "table", "inet", "v6hole")
            _sh(
                "ip", "netns", "exec", self.name, "nft", "add", "chain", "inet", "v6hole", "in",
                "{ type filter hook input priority 0 ; }",
            )  # fmt: skip
            _sh(
                "ip", "netns", "exec", self.name, "nft", "add", "rule", "inet", "v6hole", "in",
                "ip6", "daddr", V6, "tcp", "dport", str(PORT), "drop",
            )  # fmt: skip
            yield
        finally:
            subprocess.run(
                ["ip", "netns", "exec", self.name, "nft", "delete", "table", "inet", "v6hole"],
                capture_output=True,
            )

    def cycle(self, addresses: str, family: int | None = None, name: str = NAME) -> Report:
        config = loads(
            f'[dns]\nresolvers = ["127.0.0.1:{self.dns.port}"]\ntimeout_s = 1.0\n'
            f'[probe]\naddresses = "{addresses}"\ntimeout_s = 0.5\nport = {PORT}\n'
            f"builtin_targets = false\n"
            f'[[target]]\nname = "{name}"\n'
        )
        plan = ProbePlan(targets=config.targets(), trace=False, name_hops=False, family=family)
        netns.pushns(self.name)
        try:
            return run_cycle(config, plan, seq=1)
        finally:
            netns.popns()


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    name = f"v6sel-{uuid.uuid4().hex[:8]}"
    _sh("ip", "netns", "add", name)
    try:
        for line in (
            "ip link set lo up",
            f"ip addr add {V4}/32 dev lo",
            f"ip -6 addr add {V6}/128 dev lo nodad",
        ):
            _sh("ip", "-n", name, *line.split()[1:])
        h = Host(name)
        yield h
        h.dns.close()
        for s in h.listeners:
            s.close()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _family_evidence(r):
    return [(e.name, e.address) for e in r.verdict.evidence if e.kind == "family"]


def test_preferred_reports_ipv6_when_it_answers(host: Host) -> None:
    report = host.cycle("preferred")
    (r,) = report.results
    assert (r.address, r.family, r.tcp.state) == (V6, "ipv6", "open")
    assert _family_evidence(r) == [("ipv6", V6)]
    assert "first in RFC 6724 order" in next(
        e.text for e in r.verdict.evidence if e.kind == "family"
    )
    assert [f.kind for f in r.findings] == []


def test_preferred_falls_back_to_ipv4_when_ipv6_blackholes(host: Host) -> None:
    with host.ipv6_syns_dropped():
        report = host.cycle("preferred")
    (r,) = report.results
    assert (r.address, r.family, r.tcp.state) == (V4, "ipv4", "open")
    assert _family_evidence(r) == [("ipv4", V4)]
    (f,) = [f for f in r.findings if f.kind == "ipv6-blackhole"]
    assert [(e.kind, e.name, e.address) for e in f.evidence] == [
        ("family", "ipv6", V6),
        ("tcp", "filtered", V6),
        ("family", "ipv4", V4),
    ]


def test_both_reports_each_family_and_which_one_users_get(host: Host) -> None:
    with host.ipv6_syns_dropped():
        report = host.cycle("both")
    by_family = {r.family: r for r in report.results}
    assert sorted(by_family) == ["ipv4", "ipv6"]
    assert by_family["ipv6"].tcp.state == "filtered"
    for r in report.results:
        assert _family_evidence(r) == [("ipv4", V4)]
    assert [f.kind for f in by_family["ipv4"].findings] == ["ipv6-blackhole"]


def test_one_family_asked_for_is_not_a_choice(host: Host) -> None:
    (r,) = host.cycle("preferred", family=6).results
    assert (r.address, r.family) == (V6, "ipv6")
    assert _family_evidence(r) == []
    (r,) = host.cycle("first").results
    assert (r.address, r.family) == (V4, "ipv4")
    assert _family_evidence(r) == []
    # a name of one family: nothing to choose, the result's family says it
    (r,) = host.cycle("preferred", name=V4_ONLY).results
    assert (r.address, r.family, r.tcp.state) == (V4, "ipv4", "open")
    assert _family_evidence(r) == []


def test_probe_once_family_and_explain(host: Host, tmp_path) -> None:
    import sys
    from pathlib import Path

    config = tmp_path / "agent.toml"
    config.write_text(
        f'[dns]\nresolvers = ["127.0.0.1:{host.dns.port}"]\n'
        f"[probe]\ntimeout_s = 0.5\nport = {PORT}\nbuiltin_targets = false\n"
    )
    agent = str(Path(sys.executable).with_name("erpath-agent"))

    def probe_once(*args: str, name: str = NAME) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", host.name, agent, "probe", "once", "--config", str(config),
             "--no-trace", "--explain", *args, name],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode in (0, 1), done.stderr
        return done.stdout

    out = probe_once("--family", "both")
    assert f"{NAME} ({V6}):" in out and f"{NAME} ({V4}):" in out
    assert f"  family IPv6: the family users get ({V6})" in out
    assert f"  family IPv4: users get IPv6 ({V6})" in out
    out = probe_once("--family", "4")
    assert "  family IPv4; which family users get was not measured" in out
    assert V6 not in out
    out = probe_once(name=V4_ONLY)
    assert "  family IPv4: the name has addresses of no other family" in out
