"""promtool: the Prometheus config, the rules and their unit tests."""

from __future__ import annotations

import re
import shutil
import subprocess

from tests.collector.realparts import binary
from tests.deploy.files import AGENTS_EXAMPLE, PROMETHEUS_DIR, RULE_TESTS, RULES, RUNBOOKS, rules


def promtool(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_config_is_valid_with_agent_targets(tmp_path):
    # A copy, so that the file_sd glob finds the example targets and promtool checks them too.
    shutil.copytree(PROMETHEUS_DIR, tmp_path / "prometheus")
    (tmp_path / "prometheus" / "erpath-agents").mkdir()
    shutil.copy(AGENTS_EXAMPLE, tmp_path / "prometheus" / "erpath-agents" / "ams.yml")
    proc = promtool("check", "config", "prometheus.yml", cwd=tmp_path / "prometheus")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout and "WARNING" not in proc.stdout + proc.stderr


def test_rules_are_valid():
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules())} rules found" in proc.stdout


def test_rule_unit_tests_pass():
    proc = promtool("test", "rules", str(RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_unit_tests_firing_and_not_firing():
    text = RULE_TESTS.read_text()
    for kind, name, _ in rules():
        if kind != "alert":
            continue
        blocks = re.findall(
            rf"alertname: {name}\n\s+exp_alerts:(.*?)(?=\n\s+- eval_time|\n  - name|\Z)", text, re.S
        )
        assert any(b.strip() == "[]" for b in blocks) or name == "ErpathWatchdog", (
            f"{name}: no not-firing case"
        )
        assert any("exp_labels" in b for b in blocks), f"{name}: no firing case"


def test_every_alert_links_its_runbook_section_and_a_dashboard():
    text = RULES.read_text()
    sections = set(re.findall(r"^## (\w+)$", RUNBOOKS.read_text(), re.M))
    for kind, name, _ in rules():
        if kind != "alert":
            continue
        block = text[text.index(f"- alert: {name}\n") :].split("- alert:", 2)[1]
        assert f"runbook_url: https://erpath.dev/runbooks/{name}\n" in block, name
        assert re.search(
            r"dashboard_url: \"?http://localhost:3000/d/erpath(-site|-agents)?[?\"\n]", block
        ), name
        assert name in sections, f"docs/runbooks.md has no section for {name}"
    # The collector's own alerts have their runbook sections too.
    assert {
        "ErpathRouteFlip",
        "ErpathUnexpectedPath",
        "ErpathPathAsymmetric",
        "ErpathCircuitRedundancyLost",
        "ErpathRouteFilterExcludes",
    } <= sections
