"""The cycle's MSEE probes on real packets: a SYN to each link's MSEE, answered while the link is up.

A dual-stack peering has an MSEE per family on each link (the /30's and the
/126's second address): probes are keyed by (circuit, link, family) so the
IPv6 probe of a link never hides its IPv4 one.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import tempfile
from pathlib import Path

import pytest

from agent.report import report_from_dict
from tests.lab.agentconfig import write_config

pytestmark = pytest.mark.lab

AGENT_BIN = str(Path(sys.executable).with_name("erpath-agent"))


def msee_answers(lab) -> dict[tuple[str, str, int], bool]:
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config("branch", lab.current_scenario, Path(tmp))
        argv = ["env", f"STATE_DIRECTORY={tmp}", AGENT_BIN, "probe", "once", "--json"]
        proc = lab.run("branch", [*argv, "--config", str(config), "make.powerapps.com"], timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    report = report_from_dict(json.loads(proc.stdout))
    assert len(report.site.prefer) >= 2, "the lab's branch has a failover order"
    answers = {
        (p.circuit, p.link, ipaddress.ip_address(p.address).version): p.answered
        for p in report.msee_probes
    }
    assert len(answers) == len(report.msee_probes), "one probe per circuit, link and family"
    return answers


def test_msee_probes_follow_the_links_state(lab, lab_scenario):
    lab_scenario("er")
    up = msee_answers(lab)
    # Both links of circuit 1 are up (the secondary stands by, but answers).
    assert up[("ams-er-1", "primary", 4)] and up[("ams-er-1", "secondary", 4)]
    # No IPv6 peering in an IPv4 scenario: no IPv6 MSEE probes.
    assert {family for _, _, family in up} == {4}
    lab_scenario("er-secondary")
    down = msee_answers(lab)
    assert not down[("ams-er-1", "primary", 4)] and down[("ams-er-1", "secondary", 4)]


def test_msee_probes_of_both_families(lab, lab_scenario):
    """IPv6 peering: each link's IPv4 and IPv6 MSEE are probed, and both answer."""
    lab_scenario("ipv6-er")
    both = msee_answers(lab)
    for family in (4, 6):
        assert both[("ams-er-1", "primary", family)], (family, both)
        assert both[("ams-er-1", "secondary", family)], (family, both)
