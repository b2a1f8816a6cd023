"""A small tmpfs that can be filled to the last byte: the agent's state directory on a full disk."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (mount's syntax, e.g. "4m") mounted on a new directory `mnt`."""
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mnt)], check=True
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def small_fs(tmp_path):
    with tmpfs(tmp_path / "full", "4m") as mnt:
        yield mnt


def fill_to(mnt: Path, free_bytes: int) -> Path:
    """A ballast file that leaves `free_bytes` (0: the disk is full)."""
    st = os.statvfs(mnt)
    ballast = mnt / "ballast"
    with ballast.open("wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - free_bytes))
    return ballast
