"""Switch the calling thread into a lab namespace (setns), and write sysctls there.

setns(CLONE_NEWNET) changes only the calling thread, so a thread can open
sockets or /proc/sys/net files inside a namespace and come back; sockets keep
the namespace they were created in.  ctypes keeps this free of forks.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns failed: {os.strerror(err)}")


@contextmanager
def netns(name: str) -> Iterator[None]:
    """Run the body of the `with` in network namespace `name` (this thread only)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
    except FileNotFoundError:
        os.close(own)
        raise FileNotFoundError(
            f"network namespace {name!r} does not exist (is the lab up?)"
        ) from None
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


def write_sysctls(name: str, values: dict[str, str | int]) -> None:
    """Write sysctls ("net.ipv4.ip_forward": 1) inside namespace `name`."""
    with netns(name):
        for key, value in values.items():
            path = "/proc/sys/" + key.replace(".", "/")
            with open(path, "w") as f:
                f.write(f"{value}\n")


def read_sysctl(name: str, key: str) -> str:
    with netns(name), open("/proc/sys/" + key.replace(".", "/")) as f:
        return f.read().strip()
