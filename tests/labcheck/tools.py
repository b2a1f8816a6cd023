"""Independent tools from Debian's packages, run inside lab namespaces, parsed."""

from __future__ import annotations

import errno
import json
import re
import socket
from contextlib import contextmanager

from tests.lab import Lab

_HOP = re.compile(r"^\s*(\d+)\s+(.*)$")
_ADDR = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3})\b")
# traceroute -6 -n prints each hop address once, then its round trip times.
_ADDR6 = re.compile(r"(?<![\w:])([0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7})(?![\w:])")


def traceroute(
    lab: Lab, node: str, dst: str, *, max_hops: int = 12, sport: int | None = None, queries: int = 1
) -> list[frozenset[str]]:
    """`traceroute -T -p 443 -n` from `node` (`-6` for an IPv6 `dst`): per TTL, the
    set of answering addresses."""
    v6 = ":" in dst
    argv = [
        "traceroute",
        *(["-6"] if v6 else []),
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
            hops.append(frozenset((_ADDR6 if v6 else _ADDR).findall(m.group(2))))
    # Trailing silence: traceroute prints stars up to max_hops; the truth stops earlier.
    while hops and not hops[-1]:
        hops.pop()
    return hops


def trim(expected: list[frozenset[str]]) -> list[frozenset[str]]:
    out = list(expected)
    while out and not out[-1]:
        out.pop()
    return out


def tcp_connect(
    lab: Lab,
    node: str,
    address: str,
    port: int = 443,
    timeout_s: float = 2.0,
    sport: int | None = None,
) -> str:
    """A plain TCP connect from inside `node`: "open", "refused", "unreachable" or "timeout".

    `sport` fixes the source port, so the flow hashes like a chosen traceroute flow."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with lab.netns(node):
        sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if sport is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0" if family == socket.AF_INET else "::", sport))
        sock.settimeout(timeout_s)
        sock.connect((address, port))
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as e:  # ICMP net/host unreachable from a router on the way
        if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "unreachable"
        raise
    finally:
        sock.close()


def dig(lab: Lab, node: str, server: str, *args: str) -> str:
    return lab.run(node, ["dig", f"@{server}", "+tries=1", "+time=2", *args], timeout=30).stdout


def matches(
    observed: list[frozenset[str]],
    expected: list[frozenset[str]],
    may_be_silent: frozenset[str] = frozenset(),
) -> bool:
    """Same length; each TTL answered by one of the expected addresses (ECMP members),
    or by nobody where nobody should answer (or where a flaky router in
    `may_be_silent` should answer)."""
    if len(observed) != len(expected):
        return False
    return all(
        (not o and (not e or e & may_be_silent)) or (o and o <= e)
        for o, e in zip(observed, expected, strict=True)
    )


FLOW_TABLE = "erpath_labcheck_flows"


@contextmanager
def flow_links(lab: Lab, node: str, ifnames: tuple[str, ...], sports: range):
    """Which of a node's interfaces each TCP flow from `sports` left on and came back on.

    Counted per flow by nftables rules in the node's forward path, so that
    nothing else on the links (ARP, neighbour discovery after a link comes
    up, other tests' traffic) and no packet late for its window is counted.
    Yields a function: sport -> (links out, links back).
    """
    rules = [f"add table inet {FLOW_TABLE}"]
    rules.append(f"add chain inet {FLOW_TABLE} forward {{ type filter hook forward priority -5; }}")
    for sport in sports:
        for ifname in ifnames:
            rules.append(
                f'add rule inet {FLOW_TABLE} forward oifname "{ifname}" tcp sport {sport}'
                f' counter comment "out {ifname} {sport}"'
            )
            rules.append(
                f'add rule inet {FLOW_TABLE} forward iifname "{ifname}" tcp dport {sport}'
                f' counter comment "back {ifname} {sport}"'
            )
    lab.run(node, ["nft", "-f", "-"], input="\n".join(rules) + "\n", check=True)

    def links(sport: int) -> tuple[set[str], set[str]]:
        listing = json.loads(
            lab.run(node, ["nft", "-j", "list", "table", "inet", FLOW_TABLE], check=True).stdout
        )
        seen: dict[str, set[str]] = {"out": set(), "back": set()}
        for item in listing["nftables"]:
            rule = item.get("rule")
            if not rule:
                continue
            way, ifname, port = rule["comment"].split()
            packets = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
            if int(port) == sport and packets:
                seen[way].add(ifname)
        return seen["out"], seen["back"]

    try:
        yield links
    finally:
        lab.run(node, ["nft", "delete", "table", "inet", FLOW_TABLE])
