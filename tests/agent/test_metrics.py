"""The agent's optional local /metrics: the same health figures its reports carry."""

import socket
import urllib.request

from agent.metrics import AgentMetrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serves_cycle_spool_and_dropped_counts():
    port = _free_port()
    metrics = AgentMetrics.serve(f"127.0.0.1:{port}")
    metrics.observe_cycle(1.25, spool_reports=3, dropped_total=2)
    metrics.observe_cycle(0.5, spool_reports=0, dropped_total=5)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "erpath_agent_cycle_seconds 0.5" in text
    assert "erpath_agent_spool_reports 0.0" in text
    assert "erpath_agent_dropped_reports_total 5.0" in text
