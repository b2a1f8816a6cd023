"""Real ExpressRoute designs in the lab, proven with Debian's traceroute and dig.

Active-active links (flows hashed over both links in both directions, one link
shut and restored live), a flaky MSEE, a failover order that is not followed,
a CDN off every suffix list, a Traffic Manager name behind an MSEE, and the
kernel's default ICMP rate limits on every router.
"""

from __future__ import annotations

import ipaddress
import json
import time

import pytest

from tests.lab import Lab
from tests.lab.nsenter import read_sysctl

from .tools import dig, flow_links, matches, tcp_connect, traceroute, trim

pytestmark = pytest.mark.lab

SERVICE = "198.19.16.10"  # make.powerapps.com
SPORTS = range(41000, 41012)
# Ports no traceroute used: a leftover conntrack entry would make the CE's NAT
# pick another port, and the reply would hash differently.
CONNECT_SPORTS = range(45000, 45012)
TM_NAME = "global.api.powerplatform.com"
OFF_LIST_CDN = "static.powerpages.microsoft.com"
BUCKET_REFILL_S = 6.5  # icmp_ratelimit 1000 ms, burst 6: a full bucket after 6 s


@pytest.fixture
def switch(lab: Lab, lab_scenario):
    """Switch scenario with ICMP rate limiting off (hop lists are compared)."""
    lab.set_rate_limit(False)
    return lab_scenario


def _circuit(lab: Lab, name: str = "ams-er-1") -> dict:
    return next(c for c in lab.env()["circuits"] if c["name"] == name)


def _flat(hops: list[frozenset[str]]) -> list[str | None]:
    return [next(iter(h)) if h else None for h in hops]


# --------------------------------------------------------------------------- active-active


def test_active_active_ce_hashes_flows_over_both_links(switch, lab: Lab) -> None:
    switch("er-active-active")
    c = _circuit(lab)
    assert c["links"] == "active-active"
    msee = {c["msee_addresses"]["primary"], c["msee_addresses"]["secondary"]}
    used = set()
    for sport in SPORTS:
        expected = lab.expected_hops(None, "branch", SERVICE, sport=sport)
        got = _flat(traceroute(lab, "branch", SERVICE, sport=sport))
        assert got == expected, sport
        used |= set(got) & msee
    assert used == msee, "twelve flows should spread over both links of the circuit"


def test_active_active_reply_may_come_back_on_the_other_link(switch, lab: Lab) -> None:
    """Microsoft hashes the replies over both links too: a flow that left on one
    link and came back on the other still works (same circuit, same CE)."""
    switch("er-active-active")
    ports = ("msee1p", "msee1s")  # ce1's interfaces, named after the MSEEs
    drops = lab.firewall_drops()
    flows = []  # (link the SYN left on, link the SYN-ACK came back on)
    with flow_links(lab, "ce1", ports, CONNECT_SPORTS) as links:
        for sport in CONNECT_SPORTS:
            assert tcp_connect(lab, "branch", SERVICE, sport=sport) == "open", sport
        for sport in CONNECT_SPORTS:
            out, back = links(sport)
            assert len(out) == 1 and len(back) == 1, (sport, out, back)
            flows.append((out.pop(), back.pop()))
    assert {o for o, _ in flows} == set(ports), flows
    assert {b for _, b in flows} == set(ports), flows
    assert any(o != b for o, b in flows), f"no reply came back on the other link: {flows}"
    assert lab.firewall_drops() == drops


def test_shut_one_link_live_then_restore(switch, lab: Lab) -> None:
    switch("er-active-active-link-down")
    c = _circuit(lab)
    assert c["links_up"] == {"primary": True, "secondary": False}
    assert c["shut_at"] == {"secondary": "ce1"}
    # Shut at the CE only: the MSEE's port is still up and has lost its carrier.
    ce_port = json.loads(lab.run("ce1", ["ip", "-j", "link", "show", "dev", "msee1s"]).stdout)[0]
    msee_port = json.loads(lab.run("msee1s", ["ip", "-j", "link", "show", "dev", "ce1"]).stdout)[0]
    assert "UP" not in ce_port["flags"]
    assert "UP" in msee_port["flags"] and "NO-CARRIER" in msee_port["flags"]
    for sport in SPORTS:
        got = _flat(traceroute(lab, "branch", SERVICE, sport=sport))
        assert c["msee_addresses"]["primary"] in got
        assert c["msee_addresses"]["secondary"] not in got
    assert tcp_connect(lab, "branch", SERVICE) == "open"
    # Restored live: both links carry flows again.
    switch("er-active-active")
    seen = set()
    for sport in SPORTS:
        seen |= set(_flat(traceroute(lab, "branch", SERVICE, sport=sport)))
    assert {c["msee_addresses"]["primary"], c["msee_addresses"]["secondary"]} <= seen


# --------------------------------------------------------------------------- flaky MSEE


def test_flaky_msee_drops_about_half_of_its_time_exceeded(switch, lab: Lab) -> None:
    switch("er-flaky-msee")
    env = lab.env()
    assert env["flaky_routers"] == ["msee1p"]
    msee = _circuit(lab)["msee_addresses"]["primary"]
    ttl = lab.expected_hops(None, "branch", SERVICE).index(msee) + 1
    answered = asked = 0
    for _ in range(4):
        out = lab.run(
            "branch",
            ["traceroute", "-T", "-p", "443", "-n", "-q", "10", "-w", "0.5"]
            + ["-f", str(ttl), "-m", str(ttl), SERVICE],
            timeout=60,
        ).stdout
        assert msee in out or " ms" not in out
        # One line for the TTL: the address once, then a time per answered probe.
        answered += out.count(" ms")
        asked += 10
    # Binomial(40, 1/2): outside 8..32 once in ~10^5 runs.
    assert 8 <= answered <= 32, f"{answered} of {asked} time-exceeded from the flaky MSEE"
    assert lab.time_exceeded_dropped("msee1p") >= asked - answered
    # The hop before it answers every probe; forwarding is untouched.
    out = lab.run(
        "branch",
        ["traceroute", "-T", "-p", "443", "-n", "-q", "10", "-w", "0.5"]
        + ["-f", str(ttl - 1), "-m", str(ttl - 1), SERVICE],
        timeout=60,
    ).stdout
    assert _circuit(lab)["ce_addresses"]["inside"] in out and out.count(" ms") == 10
    assert tcp_connect(lab, "branch", SERVICE) == "open"
    switch("er")
    assert lab.env()["flaky_routers"] == []
    assert lab.run("msee1p", ["nft", "list", "table", "ip", "erpath_flaky"]).returncode != 0


# --------------------------------------------------------------------------- failover order


def test_failover_order_traffic_on_circuit_2_while_circuit_1_is_up(switch, lab: Lab) -> None:
    switch("failover-order")
    env = lab.env()
    assert env["prefer"][:2] == ["ams-er-1", "dub-er-2"]
    c1, c2 = _circuit(lab), _circuit(lab, "dub-er-2")
    got = _flat(traceroute(lab, "branch", SERVICE))
    assert got == lab.expected_hops(None, "branch", SERVICE)
    assert c2["ce_addresses"]["inside"] in got and c2["msee_addresses"]["primary"] in got
    assert not set(got) & set(c1["msee_addresses"].values())
    assert tcp_connect(lab, "branch", SERVICE) == "open"
    # Circuit 1 is up: both its MSEEs answer from the branch (RST: nothing listens there).
    assert c1["links_up"] == {"primary": True, "secondary": True}
    for msee in c1["msee_addresses"].values():
        assert tcp_connect(lab, "branch", msee) == "refused", msee
        assert _flat(traceroute(lab, "branch", msee))[-1] == msee


def test_msees_answer_direct_probes_only_while_their_link_is_up(switch, lab: Lab) -> None:
    c1 = _circuit(switch("er"))
    assert tcp_connect(lab, "branch", c1["msee_addresses"]["primary"]) == "refused"
    switch("er-secondary")
    assert tcp_connect(lab, "branch", c1["msee_addresses"]["primary"], timeout_s=1) in (
        "unreachable",
        "timeout",
    )
    assert tcp_connect(lab, "branch", c1["msee_addresses"]["secondary"]) == "refused"


# --------------------------------------------------------------------------- CDN and Traffic Manager


def _target(lab: Lab, name: str) -> dict:
    return next(t for t in lab.env()["targets"] if t["name"] == name)


def _tagged(lab: Lab, address: str) -> list[str]:
    with open(lab.env()["service_tags_file"]) as f:
        doc = json.load(f)
    a = ipaddress.ip_address(address)
    return [
        v["name"]
        for v in doc["values"]
        if any(a in ipaddress.ip_network(p) for p in v["properties"]["addressPrefixes"])
    ]


def test_cdn_off_the_list_is_served_from_the_internet_outside_microsoft(switch, lab: Lab) -> None:
    switch("er")
    env = lab.env()
    public = env["dns_servers"]["public"]["address"]
    answer = [a.rstrip(".") for a in dig(lab, "branch", public, "+short", OFF_LIST_CDN).split()]
    assert answer[-2].endswith(".akamaiedge.net")
    address = answer[-1]
    assert address == env["third_party_cdn"]["address"] == _target(lab, OFF_LIST_CDN)["address"]
    assert _tagged(lab, address) == []  # in no service tag, not even AzureCloud
    origin = ".".join(reversed(address.split("."))) + ".origin.asn.cymru.com"
    asn = dig(lab, "branch", public, "+short", "TXT", origin).strip().strip('"').split(" | ")[0]
    assert asn and asn not in ("8075", "12076")
    hops = traceroute(lab, "branch", address)
    assert matches(hops, trim(lab.expected_hop_sets(None, "branch", address)))
    seen = set().union(*hops)
    assert seen & set(env["internet_edges"][0]["hop_addresses"])
    microsoft = set(env["microsoft_hops"]["msedge"]) | set(env["microsoft_hops"]["mscore"])
    for c in env["circuits"]:
        microsoft |= set(c["msee_addresses"].values())
    assert not seen & microsoft
    assert tcp_connect(lab, "branch", address) == "open"


def test_traffic_manager_name_crosses_an_msee(switch, lab: Lab) -> None:
    switch("er")
    env = lab.env()
    public = env["dns_servers"]["public"]["address"]
    answer = [a.rstrip(".") for a in dig(lab, "branch", public, "+short", TM_NAME).split()]
    assert any(a.endswith(".trafficmanager.net") for a in answer[:-1])
    address = answer[-1]
    assert address == _target(lab, TM_NAME)["address"]
    assert "PowerPlatformInfra" in _tagged(lab, address)
    got = _flat(traceroute(lab, "branch", address))
    assert got == lab.expected_hops(None, "branch", address)
    assert _circuit(lab)["msee_addresses"]["primary"] in got
    assert tcp_connect(lab, "branch", address) == "open"


# --------------------------------------------------------------------------- rate limits


def test_every_router_keeps_the_kernel_default_icmp_rate_limit(lab: Lab) -> None:
    """The lab's default (and the fixture's): burst ~6, then 1 per second, as real routers."""
    assert lab.env()["rate_limit"] is True
    for node in ("wan", "dccore", "ce1", "ce2", "msee1p", "msee1s", "msee2", "mscore", "inet"):
        assert read_sysctl(lab.ns(node), "net.ipv4.icmp_ratelimit") == "1000", node
        assert read_sysctl(lab.ns(node), "net.ipv4.icmp_ratemask") == "6168", node


def test_rate_limited_msee_answers_a_burst_then_one_per_second(lab_scenario, lab: Lab) -> None:
    lab_scenario("er")
    assert lab.rate_limit
    msee = _circuit(lab)["msee_addresses"]["primary"]
    time.sleep(BUCKET_REFILL_S)  # earlier probes may have spent the MSEE's tokens
    # 10 probes at once to the MSEE's TTL: the token bucket lets a burst through, not all.
    out = lab.run(
        "branch",
        ["traceroute", "-T", "-p", "443", "-n", "-q", "10", "-w", "0.5", "-f", "4", "-m", "4"]
        + ["--sport=43000", SERVICE],
        timeout=60,
    ).stdout
    assert msee in out and 1 <= out.count(" ms") < 10, out
