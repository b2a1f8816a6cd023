"""amtool: the example Alertmanager config is valid and routes as documented."""

from __future__ import annotations

import subprocess

import pytest

from tests.collector.realparts import binary
from tests.deploy.files import ALERTMANAGER_YML


def amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary("amtool"), *args], capture_output=True, text=True, timeout=30)


def test_config_is_valid():
    proc = amtool("check-config", str(ALERTMANAGER_YML))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        # The dead man's switch gets the heartbeat and nothing else.
        ("alertname=ErpathWatchdog severity=none", "deadman"),
        ("alertname=ErpathCollectorDown severity=critical instance=c:9470", "erpath-owners"),
        ("alertname=ErpathAlertDeliveriesFailing severity=critical receiver=x", "erpath-owners"),
        (
            "alertname=ErpathRouteFlip severity=critical site=ams agent=a target=t from=expressroute/ams-er-1 "
            "to=internet/ams-inet",
            "network-pager,network-team",
        ),
        (
            "alertname=ErpathRouteFlip severity=warning site=ams agent=a target=t from=internet/ams-inet "
            "to=expressroute/ams-er-1",
            "network-team",
        ),
        (
            "alertname=ErpathPathAsymmetric severity=critical site=ams circuit=ams-er-1",
            "network-pager,network-team",
        ),
        (
            "alertname=ErpathSiteOffExpressRoute severity=critical site=ams",
            "network-pager,network-team",
        ),
        (
            "alertname=ErpathUnexpectedPath severity=warning site=ams agent=a target=t expected=expressroute",
            "network-team",
        ),
        (
            "alertname=ErpathCircuitRedundancyLost severity=warning site=ams circuit=ams-er-1",
            "network-team",
        ),
        (
            "alertname=ErpathRouteFilterExcludes severity=warning site=ams circuit=ams-er-1 "
            "community=12076:51003",
            "network-team",
        ),
        (
            "alertname=ErpathAgentSilent severity=warning site=ams agent=a role=branch",
            "network-team",
        ),
    ],
)
def test_routes(labels, receivers):
    proc = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_YML}", *labels.split())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == receivers


def test_grouping_by_circuit_and_site():
    """The tree as amtool prints it: flips by the circuit left, asymmetry by circuit, the rest by site."""
    text = ALERTMANAGER_YML.read_text()
    flip = text[text.index('matchers: [alertname="ErpathRouteFlip"]') :]
    assert flip.split("\n", 2)[1].strip() == "group_by: [alertname, from]"
    asym = text[text.index('matchers: [alertname="ErpathPathAsymmetric"]') :]
    assert asym.split("\n", 2)[1].strip() == "group_by: [alertname, circuit]"
    rf = text[text.index('matchers: [alertname="ErpathRouteFilterExcludes"]') :]
    assert rf.split("\n", 2)[1].strip() == "group_by: [alertname, circuit, community]"
    assert "  group_by: [alertname, site]\n" in text.split("routes:")[0]
