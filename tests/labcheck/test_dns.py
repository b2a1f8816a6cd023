"""The lab's DNS servers, queried with dig from the branch."""

from __future__ import annotations

import pytest

from tests.lab import Lab

from .tools import dig

pytestmark = pytest.mark.lab


def test_every_target_resolves_on_the_public_resolver(lab: Lab) -> None:
    env = lab.env()
    public = env["dns_servers"]["public"]["address"]
    for t in env["targets"]:
        answer = dig(lab, "branch", public, "+short", t["name"]).split()
        assert answer[-1] == t["address"], t["name"]
        assert [a.rstrip(".") for a in answer[:-1]] == t["cname_chain"], t["name"]


def test_cdn_name_is_a_cname_chain_to_azureedge(lab: Lab) -> None:
    answer = dig(
        lab,
        "branch",
        lab.env()["dns_servers"]["public"]["address"],
        "+short",
        "content.powerapps.com",
    ).split()
    assert any(a.rstrip(".").endswith(".azureedge.net") for a in answer[:-1])
    assert answer[-1] == "198.19.128.10"


def test_ptr_and_cymru_asn(lab: Lab) -> None:
    public = lab.env()["dns_servers"]["public"]["address"]
    assert (
        dig(lab, "branch", public, "+short", "-x", "198.19.0.2").strip()
        == "ae21-0.ams-96cbe-1b.ntwk.msn.net."
    )
    txt = dig(lab, "branch", public, "+short", "TXT", "2.0.19.198.origin.asn.cymru.com")
    assert txt.strip().strip('"').startswith("8075 | 198.19.0.0/16 |")
    msee = dig(lab, "branch", public, "+short", "TXT", "2.2.0.192.origin.asn.cymru.com")
    assert msee.strip().strip('"').startswith("12076 |")
    isp = dig(lab, "branch", public, "+short", "TXT", "1.16.18.198.origin.asn.cymru.com")
    assert isp.strip().strip('"').startswith("64501 |")
    assert "NXDOMAIN" in dig(lab, "branch", public, "TXT", "1.1.10.10.origin.asn.cymru.com")


def test_split_horizon_answers_differently(lab: Lab) -> None:
    env = lab.env()
    split = env["dns_servers"]["split"]
    for name, address in split["overrides"].items():
        assert dig(lab, "dchost", split["address"], "+short", name).split()[-1] == address
        public = dig(lab, "dchost", env["dns_servers"]["public"]["address"], "+short", name)
        assert public.split()[-1] != address


def test_bad_resolver_triggers(lab: Lab) -> None:
    bad = lab.env()["dns_servers"]["bad"]["address"]
    assert "status: SERVFAIL" in dig(lab, "branch", bad, "servfail.bad.test")
    assert "status: REFUSED" in dig(lab, "branch", bad, "refused.bad.test")
    assert "timed out" in dig(lab, "branch", bad, "silent.bad.test")
    loop = dig(lab, "branch", bad, "+short", "loop.bad.test").split()
    assert loop == ["loop-b.bad.test.", "loop.bad.test."]
    chain = dig(lab, "branch", bad, "chain.bad.test")
    assert "Truncated, retrying in TCP mode" in chain and "ANSWER: 101" in chain
    tc = dig(lab, "branch", bad, "+ignore", "+noedns", "tc.bad.test")
    assert " tc " in tc.split("flags:")[1].split(";")[0] + " "
    assert dig(lab, "branch", bad, "+tcp", "+short", "tc.bad.test").strip() == "198.19.16.10"
    big = dig(lab, "branch", bad, "+noedns", "+ignore", "big.bad.test")
    size = int(big.split("MSG SIZE  rcvd: ")[1].split()[0])
    assert size > 512  # oversized: more than the client offered, and no TC


def test_bad_resolver_modes(lab: Lab) -> None:
    bad = lab.env()["dns_servers"]["bad"]["address"]
    try:
        assert dig(lab, "branch", bad, "+short", "make.powerapps.com").strip() == "198.19.16.10"
        lab.set_dns_mode("servfail")
        assert "status: SERVFAIL" in dig(lab, "branch", bad, "make.powerapps.com")
        lab.set_dns_mode("silent")
        assert "timed out" in dig(lab, "branch", bad, "make.powerapps.com")
    finally:
        lab.set_dns_mode("normal")
    assert dig(lab, "branch", bad, "+short", "make.powerapps.com").strip() == "198.19.16.10"
