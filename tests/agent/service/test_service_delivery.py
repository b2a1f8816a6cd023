"""The service's delivery loop with final and non-final refusals: a 409 (this seq is taken under
this epoch) removes that report at once, counted and logged, and the next report goes through —
it used to be retried for 24 h, blocking every newer one; a collector of an older release keeps
every report spooled and says so.

The service runs in this process (probing 127.0.0.1 only) against a real collector, or a
loopback server answering as an older collector does.
"""

from __future__ import annotations

import json
import logging
import re
import threading

import pytest

from agent.service.runner import AgentService
from agent.service.sender import CollectorEndpoint, Sender
from agent.service.spool import Spool
from tests.collector.reports import er, simple
from tests.reliability.procs import CollectorProcess, add_tokens

from .answers import Answer, AnswerServer
from .loopback import collector_table, loopback_config, write_token
from .running import run_for

pytestmark = pytest.mark.timeout(120)


def make_service(tmp_path, url: str, token: str) -> AgentService:
    config = tmp_path / "agent.toml"
    config.write_text(
        loopback_config(
            tmp_path / "spool",
            agent_id="br-1",
            site="ams",
            collector=collector_table(url, write_token(tmp_path, token)),
            trace_timeout_s=1,
        )
    )
    return AgentService(str(config))


def test_a_409_is_final_and_the_next_report_goes_through(tmp_path, caplog):
    proc = CollectorProcess(tmp_path)
    token = add_tokens(proc.db, ["br-1"])["br-1"]
    proc.start()
    try:
        svc = make_service(tmp_path, proc.url, token)
        # Seq 1 of this epoch is already taken by another report (an older copy of the state
        # directory, restored from a backup): the service's own seq 1 is a conflict.
        taken = simple("br-1", 1, er())
        taken["agent"]["epoch"] = svc.sequence.epoch
        other = Spool(tmp_path / "other", max_bytes=10**7, max_age_s=3600)
        other.put(1, taken["id"], json.dumps(taken).encode())
        (item,) = other.pending()
        assert Sender(CollectorEndpoint(url=proc.url, token=token)).deliver(item).outcome == "acked"

        again = threading.Timer(2.0, svc._trigger_again, args=(["loopback"],))
        again.start()  # a second cycle, as a route change triggers one
        code, _ = run_for(svc, 5.0)
        assert code == 0
        assert "event=report_dropped seq=1" in caplog.text and "code=seq-conflict" in caplog.text
        assert svc.spool.dropped_total == 1 and len(svc.spool) == 0
        stored = [a["last_seq"] for a in proc.get_json("/api/v1/agents")["agents"]]
        assert stored and stored[0] >= 2, stored
    finally:
        proc.stop()


def test_a_collector_of_an_older_release_keeps_every_report_and_says_so(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="erpath.agent")
    older = Answer.problem(
        422,
        detail="the report is not a valid erpath.report/1 document",
        supported_schemas=["erpath.report/1"],
    )
    with AnswerServer(older) as server:
        svc = make_service(tmp_path, server.url, "tok")
        threading.Timer(2.0, svc._trigger_again, args=(["loopback"],)).start()
        code, _ = run_for(svc, 5.0)
    assert code == 0
    assert len(svc.spool) >= 2 and svc.spool.dropped_total == 0
    assert "collector does not support erpath.report/2 yet; keeping 1 reports" in caplog.text
    # The route-change trigger adds a quick report and then a traced one.
    assert re.search(r"erpath\.report/2 yet; keeping [23] reports", caplog.text)
