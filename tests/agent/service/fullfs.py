"""A small tmpfs that can be filled to the last byte: the agent's state directory on a full disk."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)], check=True
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_to(mnt: Path, free_bytes: int) -> Path:
    """A ballast file that leaves `free_bytes` (0: the disk is full)."""
    st = os.statvfs(mnt)
    ballast = mnt / "ballast"
    with ballast.open("wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - free_bytes))
    return ballast
