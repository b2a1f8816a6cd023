"""Epoch and seq: one epoch per state directory, a number never reused under an epoch (even when
the disk is full), and every rename made durable by fsyncing its directory (seen with strace).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.service.seq import ReportSequence, next_seq

from .fullfs import fill_to, small_fs  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[3]


def test_one_epoch_per_state_directory_and_seq_goes_on(tmp_path):
    first = ReportSequence(tmp_path / "a")
    assert [first.next(), first.next()] == [1, 2]
    again = ReportSequence(tmp_path / "a")  # a restart
    assert again.epoch == first.epoch and again.next() == 3
    assert next_seq(tmp_path / "a") == 4  # `probe once` next to the service
    assert again.next() == 5
    reinstalled = ReportSequence(tmp_path / "b")
    assert reinstalled.epoch != first.epoch and reinstalled.next() == 1
    assert re.fullmatch(r"[0-9a-f]{32}", first.epoch)


def _fsyncs_after_renames(tmp_path: Path, code: str) -> list[str]:
    """Run `code` under strace; the directory fsyncs that follow each rename."""
    trace = tmp_path / "strace.out"
    subprocess.run(
        [
            "strace",
            "-f",
            "-o",
            str(trace),
            "-e",
            "trace=openat,rename,renameat,renameat2,fsync,fdatasync,close",
            sys.executable,
            "-c",
            code,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    fd_path: dict[str, str] = {}
    pending: list[str] = []  # renamed-into directories not yet fsynced
    synced: list[str] = []
    for line in trace.read_text().splitlines():
        if m := re.search(r'openat\(AT_FDCWD, "([^"]+)", [^)]*O_DIRECTORY[^)]*\) = (\d+)', line):
            fd_path[m.group(2)] = m.group(1)
        elif m := re.search(r'rename(?:at2?)?\(.*"([^"]+)"(?:, \w+)?\)\s+= 0', line):
            pending.append(str(Path(m.group(1)).parent))
        elif m := re.search(r"fsync\((\d+)\)\s+= 0", line):
            d = fd_path.get(m.group(1))
            if d in pending:
                pending.remove(d)
                synced.append(d)
    assert not pending, f"renames in {pending} never made durable"
    return synced


def test_every_rename_is_followed_by_an_fsync_of_its_directory(tmp_path):
    state = tmp_path / "state"
    synced = _fsyncs_after_renames(
        tmp_path,
        "from pathlib import Path\n"
        "from agent.service.seq import next_seq\n"
        "from agent.service.spool import Spool\n"
        f"next_seq(Path({str(state)!r}))\n"
        f"sp = Spool(Path({str(state / 'spool')!r}), max_bytes=10**7, max_age_s=3600)\n"
        "item = sp.put(1, 'r1', b'{}')\n"
        "sp.reject(item)\n",  # the dropped-report counter
    )
    assert synced.count(str(state)) == 1  # the seq file
    assert synced.count(str(state / "spool")) == 2  # the report, then the dropped counter


@pytest.mark.root
def test_a_full_disk_counts_in_memory_and_the_next_start_begins_a_new_epoch(small_fs):  # noqa: F811
    seq = ReportSequence(small_fs)
    used = [(seq.epoch, seq.next()), (seq.epoch, seq.next())]
    ballast = fill_to(small_fs, 0)
    for _ in range(3):
        used.append((seq.epoch, seq.next()))
    assert [n for _, n in used] == [1, 2, 3, 4, 5]
    assert not seq.saved and not (small_fs / "epoch").exists()
    restarted = ReportSequence(small_fs)  # the disk is still full: the epoch lives in memory
    used.append((restarted.epoch, restarted.next()))
    ballast.unlink()
    restarted_again = ReportSequence(small_fs)
    used.append((restarted_again.epoch, restarted_again.next()))
    assert len(set(used)) == len(used), used  # no (epoch, seq) ever sent twice
    assert len({e for e, _ in used}) == 3
