"""nftables rulesets: source NAT at both edges, the stateful datacenter firewall,
the silent transit hop, and the closed/filtered service addresses.

Rendered from the plan and loaded with `nft -f -` inside each namespace.
"""

from __future__ import annotations

import subprocess

from . import plan

# Per-namespace tables; deleting them first makes a reload idempotent.
TABLE = "erpath_lab"
# A scenario's flaky router: its own table, so switching it on and off never
# touches the node's other rules.
FLAKY_TABLE = "erpath_flaky"


def _quoted(names) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _nat(node: str) -> str:
    rules = [r for r in plan.SOURCE_NATS if r.node == node]
    lines = [
        f"table ip {TABLE} {{",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    # Rules are ordered most specific source first (branch before the whole inside).
    for r in rules:
        ifnames = [plan.link_between(node, p).ifname(node) for p in r.out_peers]
        lines.append(
            f"    oifname {{ {_quoted(ifnames)} }} ip saddr {r.source} snat ip to {r.to_address}"
        )
    lines += ["  }", "}"]
    return "\n".join(lines)


def _zone_marks(fw: plan.StatefulFirewall) -> dict[str, int]:
    """Zone -> conntrack mark (1, 2, ... in the plan's order)."""
    marks: dict[str, int] = {}
    for zone in fw.zones.values():
        marks.setdefault(zone, len(marks) + 1)
    return marks


def _stateful(node: str) -> str:
    fw = plan.FIREWALL
    inside = [plan.link_between(node, p).ifname(node) for p in fw.inside_peers]
    marks = _zone_marks(fw)
    ifzone = {plan.link_between(node, p).ifname(node): marks[z] for p, z in fw.zones.items()}
    zone_map = ", ".join(f'"{i}" : {m}' for i, m in ifzone.items())
    # A reply (or an ICMP error about the flow) must arrive from the zone the
    # flow left into.  IPv6 only: with NAT (IPv4) the other path's reply is
    # unknown anyway, and IPv4 flows keep the lab's behaviour from before
    # IPv6 (a flow pinned by sport survives a scenario switch).  Without NAT
    # it is an established flow's reply arriving on the wrong side.
    zone_checks = "\n".join(
        f"    meta nfproto ipv6 ct direction reply ct mark {m} iifname != {{ "
        f"{_quoted(i for i, z in ifzone.items() if z == m)} }} counter name dropped_forward drop"
        for m in marks.values()
    )
    return f"""table inet {TABLE} {{
  counter dropped_forward {{ }}
  counter dropped_input {{ }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
{zone_checks}
    ct state established,related accept
    # A flow must start here, from inside, with a SYN: replies of flows this
    # firewall never saw (asymmetric returns) are invalid or new-from-outside.
    ct state invalid counter name dropped_forward drop
    iifname {{ {_quoted(inside)} }} ct state new tcp flags & (syn | ack | fin | rst) == syn \
      ct mark set oifname map {{ {zone_map} }} accept
    iifname {{ {_quoted(inside)} }} ct state new meta l4proto != tcp \
      ct mark set oifname map {{ {zone_map} }} accept
    counter name dropped_forward drop
  }}
  chain input {{
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    # Neighbour discovery is IPv6's ARP: without it no link works.
    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, \
      nd-router-advert, echo-request }} accept
    ct state invalid counter name dropped_input drop
    iifname {{ "lo", "{plan.MGMT_IFNAME}", {_quoted(inside)} }} accept
    icmp type echo-request accept
    counter name dropped_input drop
  }}
}}"""


def _edge_filter6(fw: plan.StatefulFirewall) -> str:
    """The internet edge's IPv6 stateful filter (no NAT); IPv4 passes to the NAT."""
    inside = [plan.link_between(fw.node, p).ifname(fw.node) for p in fw.inside_peers]
    return f"""table inet {TABLE} {{
  counter dropped_forward {{ }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    meta nfproto ipv4 accept
    ct state established,related accept
    ct state invalid counter name dropped_forward drop
    iifname {{ {_quoted(inside)} }} ct state new tcp flags & (syn | ack | fin | rst) == syn accept
    iifname {{ {_quoted(inside)} }} ct state new meta l4proto != tcp accept
    counter name dropped_forward drop
  }}
}}"""


def _silent() -> str:
    return f"""table inet {TABLE} {{
  chain output {{
    type filter hook output priority filter; policy accept;
    # This hop forwards but never reports an expired TTL (hop limit).
    icmp type time-exceeded drop
    icmpv6 type time-exceeded drop
  }}
}}"""


def flaky_script() -> str:
    """About half of the router's time-exceeded messages are never sent (a busy
    control plane); every other message and all forwarding are untouched."""
    return f"""table ip {FLAKY_TABLE} {{
  counter dropped_time_exceeded {{ }}
  chain output {{
    type filter hook output priority filter; policy accept;
    icmp type time-exceeded numgen random mod 2 == 0 counter name dropped_time_exceeded drop
  }}
}}"""


def set_flaky(namespace: str, flaky: bool) -> None:
    """Load (or remove) the flaky table in a router's namespace."""
    script = f"table ip {FLAKY_TABLE}\ndelete table ip {FLAKY_TABLE}\n"
    if flaky:
        script += flaky_script() + "\n"
    proc = subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nft failed in {namespace}: {proc.stderr.strip()}")


def _service_host() -> str:
    return f"""table inet {TABLE} {{
  chain input {{
    type filter hook input priority filter; policy accept;
    ip daddr {plan.CLOSED_ADDRESS} tcp dport 443 reject with tcp reset
    ip daddr {plan.FILTERED_ADDRESS} drop
    ip6 daddr {plan.CLOSED_ADDRESS6} tcp dport 443 reject with tcp reset
    ip6 daddr {plan.FILTERED_ADDRESS6} drop
  }}
}}"""


def rulesets() -> dict[str, str]:
    """node -> nft script."""
    out = {node: _nat(node) for node in sorted({r.node for r in plan.SOURCE_NATS})}
    out[plan.FIREWALL.node] = _stateful(plan.FIREWALL.node)
    fw6 = plan.INTERNET_FIREWALL6
    out[fw6.node] = "\n".join(filter(None, (out.get(fw6.node), _edge_filter6(fw6))))
    for node in plan.SILENT_NODES:
        out[node] = _silent()
    out["svc"] = _service_host()
    return out


def load(namespace: str, script: str) -> subprocess.Popen:
    """Start loading a ruleset; the caller waits (loads run in parallel)."""
    families = [f for f in ("ip", "inet") if f"table {f} {TABLE} " in script]
    reset = "".join(f"table {f} {TABLE}\ndelete table {f} {TABLE}\n" for f in families)
    full = f"{reset}{script}\n"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", namespace, "nft", "-f", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdin.write(full)
    proc.stdin.close()
    return proc


def wait(procs: dict[str, subprocess.Popen]) -> None:
    for ns, proc in procs.items():
        err = proc.stderr.read()
        if proc.wait() != 0:
            raise RuntimeError(f"nft failed in {ns}: {err.strip()}")


def counter(namespace: str, name: str, family: str = "inet", table: str = TABLE) -> int:
    """Packets counted by a named counter (0 if absent)."""
    out = subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "list", "counter", family, table, name],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    for token, nxt in zip(out.split(), out.split()[1:], strict=False):
        if token == "packets":
            return int(nxt)
    return 0
