"""promtool: the Prometheus config for several collector replicas
(deploy/prometheus/prometheus-replicas.yml); what its two jobs scrape is checked on real
replicas in tests/reliability/test_replicas.py."""

from __future__ import annotations

import shutil

from tests.deploy.files import AGENTS_EXAMPLE, PROMETHEUS_DIR
from tests.deploy.test_prometheus import promtool


def test_replicas_config_is_valid(tmp_path):
    shutil.copytree(PROMETHEUS_DIR, tmp_path / "prometheus")
    (tmp_path / "prometheus" / "erpath-agents").mkdir()
    shutil.copy(AGENTS_EXAMPLE, tmp_path / "prometheus" / "erpath-agents" / "ams.yml")
    proc = promtool("check", "config", "prometheus-replicas.yml", cwd=tmp_path / "prometheus")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout and "WARNING" not in proc.stdout + proc.stderr
