"""A reinstalled agent starts a new epoch and its order restarts (issue 14, item 7).

The agent's seq lives in its state directory; a reinstall (or a new disk)
starts again at 1.  The collector ordered reports by seq alone, so every
report of the new install was "late" behind the old last seq (or a 409 when
its seq had been used): paths and alerts froze while the agent looked alive.
The report carries `agent.epoch`, random per state directory: a new epoch
restarts the ordering; the old history is kept, below the new one.
"""

from __future__ import annotations

from collector.keys import STORE

from .conftest import API
from .reports import er, inet, simple


def _with_epoch(doc: dict, epoch: str | None) -> dict:
    if epoch is not None:
        doc["agent"]["epoch"] = epoch
    return doc


async def _seqs(c, agent: str) -> list[int]:
    return await c.app[STORE].read(
        lambda conn: [
            r[0]
            for r in conn.execute(
                "SELECT o.seq FROM observations o JOIN agents a ON a.ref=o.agent_ref"
                " WHERE a.id=? ORDER BY o.seq",
                (agent,),
            )
        ]
    )


async def test_a_new_epoch_restarts_the_order_and_keeps_the_history(start_collector):
    c = await start_collector()
    for seq in (1, 2, 3):
        resp = await c.post(_with_epoch(simple("br-1", seq, er()), "install-1"))
        assert resp.status == 201
    # Reinstalled: seq 1 again, a new epoch, and the path moved to the internet.
    for seq in (1, 2):
        resp = await c.post(_with_epoch(simple("br-1", seq, inet()), "install-2"))
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        assert body["status"] == "accepted" and body["applied"] is True
    (path,) = (await c.get(f"{API}/paths"))["paths"]
    assert path["path"].startswith("internet")
    (agent,) = (await c.get(f"{API}/agents"))["agents"]
    assert agent["last_seq"] == 2
    seqs = await _seqs(c, "br-1")
    assert len(seqs) == 5 and seqs[-2:] == [1, 2] and max(seqs[:3]) < 0  # old ones kept, below
    # Within an epoch the rules stay: a reused seq with a new id is 409, a replay a duplicate.
    resp = await c.post(_with_epoch(simple("br-1", 2, inet()), "install-2"))
    assert resp.status == 409
    resp = await c.post(_with_epoch(simple("br-1", 1, inet()), "install-2"))
    assert resp.status == 409
    # A third install keeps all history in order.
    resp = await c.post(_with_epoch(simple("br-1", 1, er()), "install-3"))
    assert resp.status == 201 and (await resp.json())["applied"] is True
    seqs = await _seqs(c, "br-1")
    assert len(seqs) == 6 and seqs[-1] == 1 and max(seqs[:5]) < 0


async def test_reports_without_an_epoch_keep_the_order_they_had(start_collector):
    c = await start_collector()
    for seq in (1, 2, 3):
        assert (await c.post(simple("br-1", seq, er()))).status == 201
    late = await c.post(simple("br-1", 2, er()))  # a new id for a used seq: still 409
    assert late.status == 409
    # An upgraded agent's first epoch is adopted; its seq continues, nothing restarts.
    resp = await c.post(_with_epoch(simple("br-1", 4, er()), "install-1"))
    assert (await resp.json())["applied"] is True
    resp = await c.post(_with_epoch(simple("br-1", 3, inet()), "install-1"))
    assert resp.status == 409
    assert await _seqs(c, "br-1") == [1, 2, 3, 4]
