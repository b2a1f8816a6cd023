"""The report's health carries the service tags' changeNumber and age (issue 16 item 4):
the age is the file's, so `service-tags update` installing a new file starts it again."""

from __future__ import annotations

import json
import os
import time

from agent.cycle import _with_tags_age
from agent.report import Health
from agent.verdict.servicetags import ServiceTags
from tests.agent.servicetags_doc import tag_entry, tags_document

DAY_S = 86400.0


def _tags_file(path, change_number: int) -> ServiceTags:
    path.write_text(json.dumps(tags_document(tag_entry("Tag", []), change=change_number)))
    return ServiceTags.load(path, cache=False)


def test_health_gets_the_tags_change_number_and_the_files_age(tmp_path):
    f = tmp_path / "ServiceTags_Public.json"
    tags = _tags_file(f, 391)
    installed = time.time() - 15 * DAY_S
    os.utime(f, (installed, installed))
    health = _with_tags_age(Health(cycle_s=2.0, spool_reports=3), tags)
    assert health.cycle_s == 2.0 and health.spool_reports == 3
    assert health.service_tags_change_number == 391
    assert abs(health.service_tags_age_s - 15 * DAY_S) < 60


def test_only_a_report_with_health_gets_them(tmp_path):
    # probe once has no health block (no spool): none is made up for it.
    tags = _tags_file(tmp_path / "tags.json", 7)
    assert _with_tags_age(None, tags) is None
    assert _with_tags_age(Health(), None) == Health()


def test_a_file_gone_since_it_was_read_leaves_the_age_unknown(tmp_path):
    f = tmp_path / "tags.json"
    tags = _tags_file(f, 7)
    f.unlink()
    health = _with_tags_age(Health(), tags)
    assert health.service_tags_change_number == 7 and health.service_tags_age_s is None
