"""A route change triggers a quick probe (route and TCP), its quick confirmation, then traces.

The agent runs against a collector of an older release (it answers 422 with
the schemas it supports), so every report stays in the spool, in order, for
the test to read.
"""

from __future__ import annotations

import gzip
import json
import threading

import pytest

from agent.service.runner import AgentService

from .answers import Answer, AnswerServer
from .loopback import collector_table, loopback_config, write_token
from .running import run_for

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]


def test_route_change_reports_route_and_tcp_first_and_traces_after(tmp_path):
    older = Answer.problem(
        422,
        detail="the report is not a valid erpath.report/1 document",
        supported_schemas=["erpath.report/1"],
    )
    config = tmp_path / "agent.toml"
    with AnswerServer(older) as server:
        config.write_text(
            loopback_config(
                tmp_path / "spool",
                agent_id="br-1",
                site="ams",
                collector=collector_table(server.url, write_token(tmp_path)),
                interval_s=600,
                trace_timeout_s=1,
            )
        )
        svc = AgentService(str(config))
        # After the first (interval) cycle has seen where the target resolves.
        threading.Timer(2.5, svc.on_route_change, args=("127.0.0.0/8",)).start()
        code, _ = run_for(svc, 6.0)
    assert code == 0
    reports = sorted(
        (json.loads(gzip.decompress(item.body_gzip())) for item in svc.spool.pending()),
        key=lambda r: r["seq"],
    )
    traced = [r["results"][0]["trace"] is not None for r in reports]
    tcp = [r["results"][0]["tcp"]["state"] for r in reports]
    # The interval's cycle, the triggered probe, its confirmation, then the trace.
    assert traced == [True, False, False, True]
    assert tcp == ["closed"] * 4
