"""Independent tools from Debian's packages, run inside lab namespaces, parsed."""

from __future__ import annotations

import re
import socket

from tests.lab import Lab

_HOP = re.compile(r"^\s*(\d+)\s+(.*)$")
_ADDR = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3})\b")


def traceroute(
    lab: Lab, node: str, dst: str, *, max_hops: int = 12, sport: int | None = None, queries: int = 1
) -> list[frozenset[str]]:
    """`traceroute -T -p 443 -n` from `node`: per TTL, the set of answering addresses."""
    argv = [
        "traceroute",
        "-T",
        "-p",
        "443",
        "-n",
        "-q",
        str(queries),
        "-w",
        "1",
        "-m",
        str(max_hops),
    ]
    if sport is not None:
        argv.append(f"--sport={sport}")
    out = lab.run(node, [*argv, dst], timeout=60).stdout
    hops: list[frozenset[str]] = []
    for line in out.splitlines()[1:]:
        m = _HOP.match(line)
        if m:
            hops.append(frozenset(a for a in _ADDR.findall(m.group(2))))
    # Trailing silence: traceroute prints stars up to max_hops; the truth stops earlier.
    while hops and not hops[-1]:
        hops.pop()
    return hops


def trim(expected: list[frozenset[str]]) -> list[frozenset[str]]:
    out = list(expected)
    while out and not out[-1]:
        out.pop()
    return out


def tcp_connect(lab: Lab, node: str, address: str, port: int = 443, timeout_s: float = 2.0) -> str:
    """A plain TCP connect from inside `node`: "open", "refused" or "timeout"."""
    with lab.netns(node):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        sock.connect((address, port))
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    finally:
        sock.close()


def dig(lab: Lab, node: str, server: str, *args: str) -> str:
    return lab.run(node, ["dig", f"@{server}", "+tries=1", "+time=2", *args], timeout=30).stdout


def matches(observed: list[frozenset[str]], expected: list[frozenset[str]]) -> bool:
    """Same length; each TTL answered by one of the expected addresses (ECMP members),
    or by nobody where nobody should answer."""
    if len(observed) != len(expected):
        return False
    return all((not e and not o) or (o and o <= e) for o, e in zip(observed, expected, strict=True))
