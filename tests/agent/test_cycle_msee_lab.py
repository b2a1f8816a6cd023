"""The cycle's MSEE probes on real packets: a SYN to each link's MSEE, answered while the link is up."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

from agent.report import report_from_dict
from tests.lab.agentconfig import write_config

pytestmark = pytest.mark.lab

AGENT_BIN = str(Path(sys.executable).with_name("erpath-agent"))


def msee_answers(lab) -> dict[tuple[str, str], bool]:
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config("branch", lab.current_scenario, Path(tmp))
        argv = ["env", f"STATE_DIRECTORY={tmp}", AGENT_BIN, "probe", "once", "--json"]
        proc = lab.run("branch", [*argv, "--config", str(config), "make.powerapps.com"], timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    report = report_from_dict(json.loads(proc.stdout))
    assert len(report.site.prefer) >= 2, "the lab's branch has a failover order"
    return {(p.circuit, p.link): p.answered for p in report.msee_probes}


def test_msee_probes_follow_the_links_state(lab, lab_scenario):
    lab_scenario("er")
    up = msee_answers(lab)
    # Both links of circuit 1 are up (the secondary stands by, but answers).
    assert up[("ams-er-1", "primary")] and up[("ams-er-1", "secondary")]
    lab_scenario("er-secondary")
    down = msee_answers(lab)
    assert not down[("ams-er-1", "primary")] and down[("ams-er-1", "secondary")]
