"""The agent's state directory, its epoch and its report sequence number.

`seq` must increase across restarts (the collector applies one agent's
reports in seq order), so it lives on disk, bumped under a lock so that a
`probe once` next to the running service never reuses a number.  The epoch
(random, one per state directory) names the sequence: a reinstalled agent
(a new state directory) starts a new epoch, and the collector restarts its
ordering instead of taking every report of the new install as late.

When the seq file cannot be written (a full disk) the service keeps counting
in memory and deletes its epoch file (a delete needs no space), so the next
start begins a new epoch: a number counted only in memory is never reused
under the epoch it was sent with.
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from pathlib import Path

from agent.service.durable import fsync_dir, write_durably

log = logging.getLogger("erpath.agent.seq")

_EPOCH_HEX = 32


def state_dir() -> Path:
    """systemd's StateDirectory when set, else the FHS place for root, else XDG."""
    if env := os.environ.get("STATE_DIRECTORY"):
        return Path(env.split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/erpath")
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "erpath"


def _reserve(directory: Path, floor: int) -> int:
    """Reserve the number after max(the seq file, floor) on disk; raises OSError."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "seq"
    with open(directory / "seq.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            text = ""
        seq = max(int(text) if text.isdigit() else 0, floor) + 1
        write_durably(path, f"{seq}\n".encode())
    return seq


def next_seq(directory: Path) -> int:
    """Reserve and return the next sequence number (1 on a fresh host); raises OSError."""
    return _reserve(directory, 0)


class ReportSequence:
    """The service's (epoch, seq) source: never raises for a full or read-only disk."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.epoch = self._open_epoch()
        self.last = 0
        self.saved = True  # False once a number was counted in memory only

    def _open_epoch(self) -> str:
        path = self.directory / "epoch"
        try:
            text = path.read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            text = ""
        except OSError as e:
            log.error("event=epoch_unreadable path=%s error=%s; starting a new epoch", path, e)
            text = ""
        if len(text) == _EPOCH_HEX and all(c in "0123456789abcdef" for c in text):
            return text
        epoch = uuid.uuid4().hex
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_durably(path, f"{epoch}\n".encode())
        except OSError as e:
            # Not on disk: the next start draws another epoch, which is safe.
            log.error("event=epoch_not_saved path=%s error=%s", path, e)
        log.info("event=new_epoch epoch=%s", epoch)
        return epoch

    def next(self) -> int:
        try:
            self.last = _reserve(self.directory, self.last)
            return self.last
        except OSError as e:
            self.last += 1
            if self.saved:
                self.saved = False
                self._retire_epoch()
                log.error(
                    "event=seq_not_saved seq=%d epoch=%s error=%s; counting in memory, "
                    "the next start begins a new epoch",
                    self.last,
                    self.epoch,
                    e,
                )
            return self.last

    def _retire_epoch(self) -> None:
        try:
            (self.directory / "epoch").unlink(missing_ok=True)
            fsync_dir(self.directory)
        except OSError as e:
            log.error("event=epoch_not_retired dir=%s error=%s", self.directory, e)
