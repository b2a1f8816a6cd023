"""Each command path loads only what it uses (issue 18): checked by the modules a fresh
interpreter holds afterwards, never by timing."""

import subprocess
import sys


def _loaded(code: str, modules: tuple[str, ...]) -> list[str]:
    probe = f"import sys\n{code}\nprint(','.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_the_agent_loads_neither_scapy_nor_pyroute2():
    """Probe templates and rtnetlink are packed with struct; the lab and the tests keep both."""
    code = (
        "import agent.cli, agent.cycle, agent.measure.route, agent.measure.tcp, "
        "agent.measure.trace.engine, agent.service.runner"
    )
    assert _loaded(code, ("scapy", "pyroute2")) == []


def test_help_loads_no_config_report_or_measuring():
    code = (
        "import contextlib, io\n"
        "from agent import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    cli.main(['--help'])"
    )
    heavy = ("agent.config", "agent.report", "agent.cycle", "agent.service.runner", "dns")
    assert _loaded(code, heavy) == []
