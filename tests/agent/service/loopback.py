"""The agent config of the service tests: one target, 127.0.0.1 port 9 (nothing listens there).

Each test names only what matters to it (the interval, a collector, a trace
timeout); the rest is the same for every test: no built-in targets, no jitter,
the spool where the test says.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_token(tmp_path: Path, token: str = "tok") -> Path:
    """The collector token file, readable by its owner only (the agent refuses it otherwise)."""
    path = tmp_path / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def collector_table(url: str, token_file: Path, **keys: object) -> dict[str, object]:
    """A [collector] table over plain HTTP (the tests' collectors listen on loopback)."""
    return {"url": url, "token_file": str(token_file), "allow_plaintext": True, **keys}


def loopback_config(
    spool: Path,
    *,
    agent_id: str = "loop",
    site: str = "lab",
    target_port: int = 9,
    collector: dict[str, object] | None = None,
    **probe: object,
) -> str:
    """The TOML text: [agent], [probe] (interval 10 s, no jitter, then `probe`), [spool],
    [collector] if given, and the loopback target."""
    tables: dict[str, dict[str, object]] = {
        "[agent]": {"id": agent_id, "site": site},
        "[probe]": {"builtin_targets": False, "interval_s": 10, "jitter_s": 0, **probe},
        "[spool]": {"dir": str(spool)},
    }
    if collector is not None:
        tables["[collector]"] = collector
    tables["[[target]]"] = {"name": "loopback", "address": "127.0.0.1", "port": target_port}
    return "".join(
        header + "\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
        for header, keys in tables.items()
    )
