"""The collector needs no privilege: `erpath-collector serve` as uid 65534 with
every capability dropped (effective, permitted, inheritable, ambient and the
bounding set) listens, ingests a report and stores it.  The agent's side (only
CAP_NET_RAW) is proven in the lab: tests/security/test_agent_lab.py."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.collector.reports import er, simple
from tests.reliability.procs import CollectorProcess, add_tokens

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

NOBODY = 65534
NO_CAPS = [
    "setpriv",
    f"--reuid={NOBODY}",
    f"--regid={NOBODY}",
    "--clear-groups",
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--bounding-set=-all",
    "--no-new-privs",
]


def test_collector_serves_and_ingests_as_nobody_without_capabilities():
    # pytest's tmp dirs are root-only (0700); this one belongs to nobody.
    tmp = Path(tempfile.mkdtemp(prefix="erpath-nobody-"))
    try:
        tokens = add_tokens(tmp / "collector.db", ["br-1"])
        for p in [tmp, *tmp.iterdir()]:
            os.chown(p, NOBODY, NOBODY)
        proc = CollectorProcess(tmp, prefix=NO_CAPS)
        os.chown(proc.config, NOBODY, NOBODY)
        proc.start()
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
            assert fields["Uid"].split() == [str(NOBODY)] * 4
            for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                assert int(fields[cap], 16) == 0, (cap, fields[cap])
            assert fields["NoNewPrivs"].strip() == "1"
            doc = simple("br-1", 1, er())
            code, _, body = proc.request(
                "POST",
                "/api/v1/reports",
                json.dumps(doc).encode(),
                {"Authorization": f"Bearer {tokens['br-1']}", "Content-Type": "application/json"},
            )
            assert code == 201, body
            assert proc.get_json("/api/v1/agents")["agents"][0]["agent"] == "br-1"
        finally:
            assert proc.stop() == 0, proc.log.read_text()[-2000:]
        assert (tmp / "collector.db").stat().st_uid == NOBODY
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
