"""The agent's optional local /metrics: the same health figures its reports carry."""

import urllib.request

from agent.service.metrics import AgentMetrics
from agent.settings import ListenAddress
from tests.collector.realparts import free_port


def test_serves_cycle_spool_and_dropped_counts():
    port = free_port()
    metrics = AgentMetrics.serve(ListenAddress("127.0.0.1", port))
    metrics.observe_cycle(1.25, spool_reports=3, dropped_total=2)
    metrics.observe_cycle(0.5, spool_reports=0, dropped_total=5)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "erpath_agent_cycle_seconds 0.5" in text
    assert "erpath_agent_spool_reports 0.0" in text
    assert "erpath_agent_dropped_reports_total 5.0" in text
