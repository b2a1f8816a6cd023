"""The collector runs where no probing happens: importing it loads none of the agent's measuring libraries."""

import subprocess
import sys


def test_importing_the_collector_loads_no_measuring_library():
    code = (
        "import sys, collector.app, collector.cli, collector.ingest, collector.state; "
        "print(','.join(m for m in ('scapy', 'pyroute2', 'dns') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the collector imported {out.stdout.strip()}"
