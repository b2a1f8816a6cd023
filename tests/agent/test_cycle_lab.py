"""`erpath-agent probe once` in the lab: real packets, real routes, every scenario.

Each test runs the installed command inside an agent's namespace, exactly as
a user would, and reads its JSON report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import pytest

from agent.report import json_schema, report_from_dict
from tests.lab.agentconfig import write_config

pytestmark = pytest.mark.lab

AGENT_BIN = str(Path(sys.executable).with_name("erpath-agent"))
SERVICE = "make.powerapps.com"
CDN = "content.powerapps.com"


def probe_once(lab, node: str, *args: str, config: str | None = None) -> tuple[int, dict, str]:
    """Run probe once in `node`, with that agent's config for the lab's current scenario."""
    argv = [AGENT_BIN, "probe", "once", "--json"]
    if config:
        with tempfile.TemporaryDirectory() as tmp:
            path = write_config(config, lab.current_scenario, Path(tmp))
            return _run(lab, node, [*argv, "--config", str(path), *args])
    return _run(lab, node, [*argv, *args])


def _run(lab, node: str, argv: list[str]) -> tuple[int, dict, str]:
    proc = lab.run(node, argv, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    report_from_dict(doc)  # what the collector will accept
    return proc.returncode, doc, proc.stderr


def by_target(doc: dict) -> dict[str, dict]:
    return {r["target"]: r for r in doc["results"]}


def verdict(result: dict) -> tuple:
    v = result["verdict"]
    return v["class"], v["circuit"], v["link"], v["egress"]


def kinds(result: dict) -> set[str]:
    return {f["kind"] for f in result["findings"]}


def first_replies(result: dict) -> list[str | None]:
    """The address that answered first at each TTL of a result's trace (None: no answer)."""
    return [h["replies"][0]["address"] if h["replies"] else None for h in result["trace"]["hops"]]


def without_trailing_silence(hops: list[str | None]) -> list[str | None]:
    """Hops up to the last that answered: past it, tools differ in how long they keep asking."""
    hops = list(hops)
    while hops and hops[-1] is None:
        hops.pop()
    return hops


def debian_traceroute(lab, node: str, result: dict, *family: str) -> tuple[list[str | None], str]:
    """What `traceroute -T` (one probe a TTL) sees from `node` for a result's address, port and
    flow (its source port): the hops, trailing silence dropped, and traceroute's output."""
    if not shutil.which("traceroute"):
        pytest.fail("Debian's traceroute is missing: make test installs it as root")
    argv = ["traceroute", *family, "-T", "-p", str(result["port"]), "-n", "-q", "1", "-w", "1"]
    argv += [f"--sport={result['trace']['flow']}", "-m", "16", result["address"]]
    proc = lab.run(node, argv, timeout=60)
    hops = []
    for line in proc.stdout.splitlines()[1:]:
        fields = line.split()
        hops.append(None if fields[1] == "*" else fields[1])
    return without_trailing_silence(hops), proc.stdout


def test_er_primary_with_cdn_over_the_internet(lab):
    rc, doc, _ = probe_once(
        lab, "branch", SERVICE, CDN, "login.microsoftonline.com", config="branch"
    )
    jsonschema.Draft202012Validator(json_schema()).validate(doc)
    results = by_target(doc)
    assert verdict(results[SERVICE])[:3] == ("expressroute", "ams-er-1", "primary")
    assert verdict(results["login.microsoftonline.com"])[:3] == (
        "expressroute",
        "ams-er-1",
        "primary",
    )
    assert verdict(results[CDN])[0] == "cdn"
    assert any("azureedge.net" in e["text"] for e in results[CDN]["verdict"]["evidence"])
    assert any(e["kind"] == "msee-hop" for e in results[SERVICE]["verdict"]["evidence"])
    assert all(
        not r["findings"] or {f["severity"] for f in r["findings"]} == {"info"}
        for r in results.values()
    )
    assert results[SERVICE]["tcp"]["state"] == "open"
    assert results[SERVICE]["trace"]["reached"]
    assert rc == 0


def test_er_secondary(lab, lab_scenario):
    lab_scenario("er-secondary")
    rc, doc, _ = probe_once(lab, "branch", SERVICE, config="branch")
    assert verdict(by_target(doc)[SERVICE])[:3] == ("expressroute", "ams-er-1", "secondary")
    assert rc == 0


def test_internet_failover(lab, lab_scenario):
    lab_scenario("internet-failover")
    rc, doc, _ = probe_once(lab, "branch", SERVICE, config="branch")
    r = by_target(doc)[SERVICE]
    assert verdict(r)[0] == "internet" and verdict(r)[3] == "ams-inet"
    assert r["verdict"]["matches_expected"] is False and r["verdict"]["expected"] == "expressroute"
    assert r["tcp"]["state"] == "open"
    assert rc == 1  # off the expected path


def test_asymmetric_nat(lab, lab_scenario):
    lab_scenario("asymmetric-nat")
    rc, doc, _ = probe_once(lab, "branch", SERVICE, config="branch")
    r = by_target(doc)[SERVICE]
    assert verdict(r)[0] == "internet"
    assert r["tcp"]["state"] == "filtered"
    assert {"asymmetric-nat", "handshake-blackhole"} <= kinds(r)
    nat = next(f for f in r["findings"] if f["kind"] == "asymmetric-nat")
    text = " ".join(e["text"] for e in nat["evidence"])
    assert "198.51.100.10" in text and "ams-er-1" in text
    assert nat["fix"]
    assert rc == 1
    # The command-line expectation for named targets.
    rc, _, _ = probe_once(
        lab, "branch", "--expect", "expressroute", SERVICE, "--resolver", "198.18.53.53"
    )
    assert rc == 1


def test_asymmetric_circuits(lab, lab_scenario):
    lab_scenario("asymmetric-circuits")
    _, doc, _ = probe_once(lab, "branch", SERVICE, config="branch")
    r = by_target(doc)[SERVICE]
    finding = next(f for f in r["findings"] if f["kind"] == "asymmetric-circuit")
    text = " ".join(e["text"] for e in finding["evidence"])
    assert "ams-er-1" in text and "dub-er-2" in text


# The lab's NAT addresses sit on the CEs, so a reverse trace meets the CE as
# its destination, never as a hop: the circuit shows (the MSEE before it, and
# which circuit advertises the address), the link does not.
REVERSE = {
    # scenario -> {target name in azure.toml: (class, circuit, link)}
    "er": {
        "branch-nat-ams-er-1": ("expressroute", "ams-er-1", None),
        "branch-nat-dub-er-2": ("expressroute", "dub-er-2", None),
        "branch-nat-inet": ("internet", None, None),
    },
    "er-secondary": {"branch-nat-ams-er-1": ("expressroute", "ams-er-1", None)},
    "internet-failover": {"branch-nat-inet": ("internet", None, None)},
    # The internet NAT prefix leaked onto ams-er-1: Microsoft returns over it,
    # through the CE (a hop now, since that NAT address is further in).
    "asymmetric-nat": {"branch-nat-inet": ("expressroute", "ams-er-1", "primary")},
}


@pytest.mark.parametrize("scenario", list(REVERSE))
def test_reverse_traces_from_the_azure_side(lab, lab_scenario, scenario):
    lab_scenario(scenario)
    _, doc, _ = probe_once(lab, "azure", config="azure")
    results = by_target(doc)
    for target, want in REVERSE[scenario].items():
        assert verdict(results[target])[:3] == want, (
            target,
            results[target]["verdict"]["evidence"],
        )


def test_hops_equal_debian_traceroute(lab):
    """With rate limits off, the hops probe once reports are those traceroute -T sees, flow for flow."""
    with lab.options(rate_limit=False):
        targets = [t for t in lab.env()["targets"]][:8]
        names = [t["name"] for t in targets]
        _, doc, _ = probe_once(lab, "branch", *names, "--resolver", "198.18.53.53")
        for r in doc["results"]:
            theirs, output = debian_traceroute(lab, "branch", r)
            assert first_replies(r) == theirs, (r["target"], output)


def test_without_cap_net_raw_still_measures(lab):
    """An unprivileged user: connect() timing, and a clear note that traces need the capability."""
    proc = lab.run(
        "branch",
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            AGENT_BIN,
            "probe",
            "once",
            SERVICE,
            "--resolver",
            "198.18.53.53",
        ],
        timeout=60,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "(connect)" in proc.stdout
    assert "traces need the capability" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_bad_config_is_a_clear_error(lab, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[circuit]]\nname = "x"\nlocation = "Amsterdam"\nsku = "standard"\n'
        'primary_subnet = "192.0.2.0/29"\nsecondary_subnet = "192.0.2.8/30"\n'
    )
    proc = subprocess.run(
        [AGENT_BIN, "probe", "once", "--config", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "primary_subnet" in proc.stderr and "/30" in proc.stderr
    assert "Traceback" not in proc.stderr
