"""Bad days that must not stop the probing: a full disk (the oldest reports make room and are
counted) and a service tags file half-written by the weekly download (the last good copy is kept,
said in the log and in erpath_agent_service_tags_stale).

The service's cycle runs in this process against 127.0.0.1 only.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path

import pytest

from agent.service.metrics import AgentMetrics
from agent.service.runner import AgentService

from .fullfs import fill_to, small_fs  # noqa: F401  (fixture)
from .loopback import loopback_config

pytestmark = pytest.mark.timeout(120)

SAMPLE_TAGS = Path(__file__).parents[1] / "configs" / "valid" / "servicetags-sample.json"


def make_service(tmp_path: Path, spool: Path, extra: str = "") -> AgentService:
    config = tmp_path / "agent.toml"
    config.write_text(loopback_config(spool, trace_timeout_s=2) + extra)
    svc = AgentService(str(config))
    svc.metrics = AgentMetrics.create()
    return svc


def cycle(svc: AgentService) -> None:
    svc._cycle(svc.setup.config.targets())


@pytest.mark.root
def test_a_full_disk_drops_the_oldest_reports_and_the_probing_goes_on(
    tmp_path,
    small_fs,  # noqa: F811
    caplog,
):
    svc = make_service(tmp_path, small_fs / "spool")
    for _ in range(3):
        cycle(svc)
    assert len(svc.spool) == 3
    ballast = fill_to(small_fs, 0)
    for _ in range(4):
        cycle(svc)  # used to raise OSError out of the cycle: a crash loop under systemd
    assert "event=spool_full" in caplog.text and "event=seq_not_saved" in caplog.text
    newest = max(i.seq for i in svc.spool.pending())
    assert newest == 7 and len(svc.spool) >= 1  # the newest report is the one kept
    dropped = svc.spool.dropped_total
    assert dropped == 7 - len(svc.spool), dropped
    registry = svc.metrics.registry
    assert registry.get_sample_value("erpath_agent_dropped_reports_total") == dropped
    assert registry.get_sample_value("erpath_agent_spool_reports") == len(svc.spool)

    ballast.unlink()
    cycle(svc)
    assert max(i.seq for i in svc.spool.pending()) == 8
    # The in-memory count reached the disk with the next drop that fitted, or is still exact.
    saved = (small_fs / "spool" / "dropped").read_text().strip()
    assert int(saved) <= svc.spool.dropped_total == dropped
    # The seq counted in memory never goes back, and the next start is a new epoch.
    restarted = AgentService(svc.config_path)
    assert restarted.sequence.epoch != svc.sequence.epoch


def test_a_half_written_service_tags_file_keeps_the_last_good_copy(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="erpath.agent")
    tags = tmp_path / "ServiceTags_Public.json"
    shutil.copy(SAMPLE_TAGS, tags)
    svc = make_service(tmp_path, tmp_path / "spool", f'[service_tags]\nfile = "{tags}"\n')
    cycle(svc)
    good = svc._tags
    assert good is not None and not svc.tags_stale

    whole = tags.read_bytes()
    tags.write_bytes(whole[: len(whole) // 2])  # the download, half-way
    cycle(svc)  # used to raise ConfigError out of the cycle
    cycle(svc)
    assert svc.tags_stale and svc._tags is good
    assert caplog.text.count("event=service_tags_kept") == 1  # said once, not every cycle
    assert svc.metrics.registry.get_sample_value("erpath_agent_service_tags_stale") == 1
    assert len(svc.spool) == 3  # every cycle produced its report

    tags.write_bytes(whole)
    cycle(svc)
    assert not svc.tags_stale
    assert svc.metrics.registry.get_sample_value("erpath_agent_service_tags_stale") == 0
    assert "event=service_tags_readable" in caplog.text


def test_every_report_carries_the_epoch(tmp_path):
    svc = make_service(tmp_path, tmp_path / "spool")
    cycle(svc)
    (item,) = svc.spool.pending()
    doc = json.loads(gzip.decompress(item.body_gzip()))
    assert doc["agent"]["epoch"] == svc.sequence.epoch
    assert (tmp_path / "epoch").read_text().strip() == svc.sequence.epoch
