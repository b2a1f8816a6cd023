"""The agent's state directory and its report sequence number.

`seq` must increase across restarts (the collector applies one agent's
reports in seq order), so it lives on disk, bumped under a lock so that a
`probe once` next to the running service never reuses a number.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def state_dir() -> Path:
    """systemd's StateDirectory when set, else the FHS place for root, else XDG."""
    if env := os.environ.get("STATE_DIRECTORY"):
        return Path(env.split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/erpath")
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "erpath"


def next_seq(directory: Path) -> int:
    """Reserve and return the next sequence number (1 on a fresh host)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "seq"
    with open(directory / "seq.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            text = ""
        seq = (int(text) if text.isdigit() else 0) + 1
        # Write a new file and rename it over the old one: a crash at any
        # point leaves either the old or the new number, never an empty file
        # that would restart the sequence at 1.
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{seq}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return seq
