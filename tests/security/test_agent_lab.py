"""The agent in the lab under least privilege and against a hostile resolver.

- Least privilege: `probe once` with a trace runs as uid 65534 holding only
  CAP_NET_RAW (inheritable + ambient) and reaches the same verdict, over the
  same hops, as root.
- Hostile DNS end to end: `probe once` against the lab's misbehaving resolver
  (SERVFAIL, REFUSED, silence, CNAME loop, 100-long chain, oversized and
  truncated answers) prints failure codes and never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from agent.report import report_from_dict
from tests.lab import dnsdata, plan

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

AGENT_BIN = str(Path(sys.executable).with_name("erpath-agent"))
SERVICE = "make.powerapps.com"
NET_RAW_ONLY = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+net_raw",
    "--ambient-caps=+net_raw",
    "--bounding-set=-all,+net_raw",
]


def _probe_json(lab, argv: list[str]) -> dict:
    proc = lab.run("branch", argv, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    report_from_dict(doc)
    return doc


def test_probe_once_with_a_trace_needs_only_cap_net_raw(lab):
    probe = [
        AGENT_BIN,
        "probe",
        "once",
        "--json",
        SERVICE,
        "--resolver",
        plan.DNS_PUBLIC,
        "--trace-protocol",
        "icmp",
    ]
    # What the unprivileged process really holds, from its own /proc/self/status.
    status = lab.run("branch", [*NET_RAW_ONLY, "cat", "/proc/self/status"]).stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["Uid"].split()[0] == "65534"
    assert int(fields["CapEff"], 16) == 1 << 13  # CAP_NET_RAW and nothing else
    assert int(fields["CapBnd"], 16) == 1 << 13

    unprivileged = _probe_json(lab, [*NET_RAW_ONLY, *probe])
    root = _probe_json(lab, probe)
    (mine,), (theirs,) = unprivileged["results"], root["results"]
    assert mine["trace"]["hops"], mine["trace"]
    assert mine["trace"].get("failure") is None, mine["trace"]
    assert mine["tcp"]["method"] != "connect", mine["tcp"]  # the raw-socket probe, not the fallback
    assert mine["verdict"]["class"] == theirs["verdict"]["class"] == "expressroute"
    assert (mine["verdict"]["circuit"], mine["verdict"]["link"]) == (
        theirs["verdict"]["circuit"],
        theirs["verdict"]["link"],
    )


BAD_NAMES = {
    f"servfail.{dnsdata.BAD_ZONE}": "dns.servfail",
    f"refused.{dnsdata.BAD_ZONE}": "dns.refused",
    f"silent.{dnsdata.BAD_ZONE}": "dns.timeout",
    f"loop.{dnsdata.BAD_ZONE}": "dns.cname-loop",
    f"chain.{dnsdata.BAD_ZONE}": "dns.cname-loop",
    f"nothing-here.{dnsdata.BAD_ZONE}": "dns.nxdomain",
}


def test_probe_once_against_the_misbehaving_resolver_prints_failure_codes(lab):
    names = [*BAD_NAMES, f"big.{dnsdata.BAD_ZONE}", f"tc.{dnsdata.BAD_ZONE}"]
    argv = [AGENT_BIN, "probe", "once", *names, "--resolver", plan.DNS_BAD, "--no-trace"]
    text = lab.run("branch", argv, timeout=120)
    assert text.returncode in (0, 1), text.stderr
    assert "Traceback" not in text.stderr + text.stdout
    for code in set(BAD_NAMES.values()):
        assert code in text.stdout, (code, text.stdout)
    doc = _probe_json(lab, [*argv, "--json"])
    by_target = {r["target"]: r for r in doc["results"]}
    for name, code in BAD_NAMES.items():
        r = by_target[name]
        assert r["dns"]["failure"] == code, r["dns"]
        assert (
            r.get("trace") is None and r["verdict"]["class"] == "unknown"
        )  # no address: never a hop
    # Oversized and truncated answers still resolve (TCP retry; addresses capped).
    assert by_target[f"big.{dnsdata.BAD_ZONE}"]["dns"]["addresses"]
    assert by_target[f"tc.{dnsdata.BAD_ZONE}"]["dns"]["addresses"] == ["198.19.16.10"]
