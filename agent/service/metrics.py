"""The agent's optional local /metrics ([metrics] listen), for agents that can be scraped.

The same figures travel in every report's health block, so the collector
exports them for agents behind NAT; names match the collector's series.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

if TYPE_CHECKING:
    from agent.settings import ListenAddress


@dataclass
class AgentMetrics:
    registry: CollectorRegistry
    cycle_seconds: Gauge
    spool_reports: Gauge
    dropped_reports: Counter
    service_tags_stale: Gauge
    _dropped_seen: int = 0

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> AgentMetrics:
        registry = registry or CollectorRegistry()
        return cls(
            registry=registry,
            cycle_seconds=Gauge(
                "erpath_agent_cycle_seconds", "Duration of the last probe cycle.", registry=registry
            ),
            spool_reports=Gauge(
                "erpath_agent_spool_reports", "Reports waiting in the spool.", registry=registry
            ),
            dropped_reports=Counter(
                "erpath_agent_dropped_reports", "Reports dropped from the spool.", registry=registry
            ),
            service_tags_stale=Gauge(
                "erpath_agent_service_tags_stale",
                "1 while the service tags file cannot be read and the last good copy is used.",
                registry=registry,
            ),
        )

    @classmethod
    def serve(cls, listen: ListenAddress) -> AgentMetrics:
        """Start the HTTP endpoint on [metrics] listen (host "" is all addresses)."""
        metrics = cls.create()
        start_http_server(listen.port, addr=listen.bind_host, registry=metrics.registry)
        return metrics

    def observe_cycle(self, cycle_s: float, spool_reports: int, dropped_total: int) -> None:
        self.cycle_seconds.set(cycle_s)
        self.spool_reports.set(spool_reports)
        if dropped_total > self._dropped_seen:
            self.dropped_reports.inc(dropped_total - self._dropped_seen)
            self._dropped_seen = dropped_total
