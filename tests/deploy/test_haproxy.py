"""haproxy -c: the load balancer example for several collectors (deploy/haproxy)."""

from __future__ import annotations

import subprocess

from tests.collector.realparts import binary
from tests.deploy.files import ROOT
from tests.security.pki import ca

HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "erpath-collector.cfg"


def test_haproxy_example_is_valid(tmp_path):
    haproxy = binary("haproxy")
    ca_file = ca(tmp_path, "collector-ca")
    text = HAPROXY_CFG.read_text()
    assert "option httpchk" in text and "uri /readyz" in text
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text.replace("/etc/haproxy/erpath-collector-ca.crt", str(ca_file)))
    proc = subprocess.run(
        [haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Configuration file is valid" in proc.stdout + proc.stderr
