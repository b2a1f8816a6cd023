"""systemd's notify protocol (sd_notify), stdlib only; used by both programs.

Type=notify units learn readiness from READY=1 and liveness from WATCHDOG=1
sent on the datagram socket named by NOTIFY_SOCKET.  Outside systemd the
variable is unset and every call is a no-op.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None):
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        # A leading '@' names an abstract socket: the kernel wants a NUL there.
        self._address = ("\0" + address[1:]) if address and address.startswith("@") else address

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *fields: str) -> bool:
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                # Never block the run loop on a busy reader: a lost ping is
                # better than a probe loop stuck behind systemd.
                s.sendto("\n".join(fields).encode(), socket.MSG_DONTWAIT, self._address)
        except OSError:
            return False  # systemd gone or socket vanished: nothing to tell
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    @staticmethod
    def watchdog_interval_s() -> float | None:
        """Half of WATCHDOG_USEC, as systemd recommends; None when no watchdog is set."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2e6
