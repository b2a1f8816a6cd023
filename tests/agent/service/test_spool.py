"""The spool: durable, replayed in seq order, bounded with the oldest dropped and counted."""

import gzip
import json
import os
import time

from agent.service.spool import Spool


def _body(seq: int, pad: int = 0) -> bytes:
    return json.dumps({"seq": seq, "pad": os.urandom(pad).hex()}).encode()


def test_replay_in_seq_order_and_ack(tmp_path):
    spool = Spool(tmp_path, max_bytes=10_000_000, max_age_s=3600)
    for seq in (3, 1, 10, 2):
        spool.put(seq, f"id-{seq}", _body(seq))
    items = list(spool.pending())
    assert [i.seq for i in items] == [1, 2, 3, 10]
    assert json.loads(gzip.decompress(items[0].body_gzip()))["seq"] == 1
    spool.ack(items[0])
    assert [i.seq for i in spool.pending()] == [2, 3, 10]


def test_survives_a_new_process_and_discards_half_written_files(tmp_path):
    Spool(tmp_path, max_bytes=10_000_000, max_age_s=3600).put(5, "a", _body(5))
    (tmp_path / "00000000000000000006-b.json.gz.tmp").write_bytes(b"\x1f\x8b half")
    spool = Spool(tmp_path, max_bytes=10_000_000, max_age_s=3600)
    assert [(i.seq, i.report_id) for i in spool.pending()] == [(5, "a")]
    assert not list(tmp_path.glob("*.tmp"))


def test_size_bound_drops_oldest_and_counts(tmp_path, caplog):
    spool = Spool(tmp_path, max_bytes=5_000, max_age_s=3600)
    for seq in range(1, 11):
        spool.put(seq, f"r{seq}", _body(seq, pad=1000))  # ~2 KB each: incompressible hex
    items = list(spool.pending())
    kept = [i.seq for i in items]
    assert 1 < len(kept) < 10 and kept == list(range(11 - len(kept), 11))  # newest kept
    assert sum(i.path.stat().st_size for i in items) <= 5_000
    assert spool.dropped_total == 10 - len(kept)
    assert "event=spool_dropped" in caplog.text
    # The count survives a restart: it feeds the health block of every report.
    assert Spool(tmp_path, max_bytes=5_000, max_age_s=3600).dropped_total == 10 - len(kept)


def test_age_bound(tmp_path):
    spool = Spool(tmp_path, max_bytes=10_000_000, max_age_s=60)
    old = spool.put(1, "old", _body(1))
    os.utime(old.path, (time.time() - 120, time.time() - 120))
    spool.put(2, "new", _body(2))
    assert [i.seq for i in spool.pending()] == [2]
    assert spool.dropped_total == 1


def test_reject_counts_as_dropped(tmp_path):
    spool = Spool(tmp_path, max_bytes=10_000_000, max_age_s=3600)
    item = spool.put(1, "bad", _body(1))
    spool.reject(item)
    assert list(spool.pending()) == [] and spool.dropped_total == 1
