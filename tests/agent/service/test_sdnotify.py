"""sd_notify: READY and WATCHDOG reach a NOTIFY_SOCKET as systemd would read them."""

import socket

from agent.sdnotify import Notifier


def test_ready_and_watchdog_arrive(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        n = Notifier()
        assert n.ready("probing 3 targets") and n.watchdog()
        assert sock.recv(4096).decode().split("\n") == ["READY=1", "STATUS=probing 3 targets"]
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_abstract_socket_and_no_systemd(monkeypatch):
    name = f"@erpath-test-{id(monkeypatch)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name[1:])
        sock.settimeout(2)
        assert Notifier(name).stopping()
        assert sock.recv(64) == b"STOPPING=1"
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier().enabled and not Notifier().ready()


def test_watchdog_interval(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert Notifier.watchdog_interval_s() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process's watchdog
    assert Notifier.watchdog_interval_s() is None
