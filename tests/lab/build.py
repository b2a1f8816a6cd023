"""Kernel wiring with pyroute2: namespaces, veth pairs, addresses, routes, rules,
link states, sysctls.  One netlink socket per namespace, no `ip` subprocesses.

veth pairs are created from inside one namespace with the peer placed straight
into the other, so no interface ever appears in the root namespace and two
labs (different prefixes) can use the same interface names side by side.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor

from pyroute2 import IPRoute, NetlinkError
from pyroute2 import netns as p2netns

from . import plan, scenarios
from .nsenter import write_sysctls
from .scenarios import Scenario

RTPROT_STATIC = 4
RULE_PRIORITIES = range(100, 200)  # the lab's policy rules live here
BRIDGE = "br0"

# Kernel defaults, restored when rate limiting is switched back on; both
# families (IPv6: one ICMPv6 error per 1000 ms per destination, scaled by the
# route's prefix length, which is the kernel's own rule).
# The ratemasks also take the ICMP types out of the kernel's global limit
# (icmp_msgs_per_sec, shared by both families): off must mean off for IPv6 too.
RATE_LIMIT_ON: dict[str, str | int] = {
    "net.ipv4.icmp_ratelimit": 1000,
    "net.ipv4.icmp_ratemask": 6168,
    "net.ipv6.icmp.ratelimit": 1000,
    "net.ipv6.icmp.ratemask": "0-1,3-127",
}
RATE_LIMIT_OFF: dict[str, str | int] = {
    "net.ipv4.icmp_ratelimit": 0,
    "net.ipv4.icmp_ratemask": 0,
    "net.ipv6.icmp.ratelimit": 0,
    "net.ipv6.icmp.ratemask": "",
}


def base_sysctls(node: plan.Node, rate_limit: bool) -> dict[str, str | int]:
    values: dict[str, str | int] = {
        # Written before any interface exists so every interface inherits them.
        "net.ipv4.ip_forward": 1 if node.forwarding else 0,
        # Asymmetric returns must reach the firewall, not die in rp_filter.
        "net.ipv4.conf.all.rp_filter": 0,
        "net.ipv4.conf.default.rp_filter": 0,
        # Answer time-exceeded from the interface the probe came in on, so a hop
        # names the forward path even when the answer returns another way.
        "net.ipv4.icmp_errors_use_inbound_ifaddr": 1,
        # L4 hash: one flow (constant 5-tuple) stays on one ECMP member.
        "net.ipv4.fib_multipath_hash_policy": 1,
        "net.ipv6.fib_multipath_hash_policy": 1,
        # Dual-stack: static addresses only (no RAs, no SLAAC), usable at once
        # (no DAD wait: the plan's addresses are unique), and kept when a
        # scenario takes a link down, as IPv4 addresses are.
        "net.ipv6.conf.all.forwarding": 1 if node.forwarding else 0,
        "net.ipv6.conf.default.forwarding": 1 if node.forwarding else 0,
        "net.ipv6.conf.default.accept_ra": 0,
        "net.ipv6.conf.default.autoconf": 0,
        "net.ipv6.conf.default.accept_dad": 0,
        "net.ipv6.conf.all.accept_dad": 0,
        "net.ipv6.conf.default.keep_addr_on_down": 1,
        "net.ipv6.conf.all.keep_addr_on_down": 1,
    }
    values.update(RATE_LIMIT_ON if rate_limit else RATE_LIMIT_OFF)
    return values


def _family(prefix: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_network(prefix).version == 6 else socket.AF_INET


class Wiring:
    """Netlink handles for one lab instance (one IPRoute per namespace)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.ipr: dict[str, IPRoute] = {}
        self._ifindex: dict[str, dict[str, int]] = {}

    def ns(self, node: str) -> str:
        return plan.namespace(self.prefix, node)

    def close(self) -> None:
        for ipr in self.ipr.values():
            ipr.close()
        self.ipr.clear()

    # -- namespaces ----------------------------------------------------------

    def create_namespaces(self, rate_limit: bool) -> None:
        def one(n: plan.Node) -> tuple[str, IPRoute]:
            p2netns.create(self.ns(n.key))
            write_sysctls(self.ns(n.key), base_sysctls(n, rate_limit))
            return n.key, IPRoute(netns=self.ns(n.key))

        with ThreadPoolExecutor(max_workers=8) as pool:
            self.ipr = dict(pool.map(one, plan.NODES))

    def attach(self) -> None:
        """Open netlink sockets on a lab that is already built."""
        for n in plan.NODES:
            if n.key not in self.ipr:
                self.ipr[n.key] = IPRoute(netns=self.ns(n.key))

    def index(self, node: str, ifname: str) -> int:
        if ifname not in self._ifindex.get(node, {}):
            self._ifindex[node] = {
                link.get("ifname"): link["index"] for link in self.ipr[node].get_links()
            }
        return self._ifindex[node][ifname]

    # -- links and addresses -------------------------------------------------

    def build_links(self) -> None:
        for link in plan.LINKS:
            self.ipr[link.a].link(
                "add",
                ifname=link.ifname(link.a),
                kind="veth",
                peer={"ifname": link.ifname(link.b), "net_ns_fd": self.ns(link.b)},
            )
        for link in plan.LINKS:
            for end in (link.a, link.b):
                idx = self.index(end, link.ifname(end))
                self.ipr[end].addr(
                    "add", index=idx, address=link.address(end), prefixlen=link.prefixlen
                )
                if link.subnet6:
                    self.ipr[end].addr(
                        "add",
                        index=idx,
                        address=link.address6(end),
                        prefixlen=ipaddress.ip_network(link.subnet6).prefixlen,
                        family=socket.AF_INET6,
                    )
                self.ipr[end].link("set", index=idx, state="up")
        for n in plan.NODES:
            lo = self.index(n.key, "lo")
            self.ipr[n.key].link("set", index=lo, state="up")
            for address in n.loopbacks:
                self.ipr[n.key].addr("add", index=lo, address=address, prefixlen=32)
            for address in n.loopbacks6:
                self.ipr[n.key].addr(
                    "add", index=lo, address=address, prefixlen=128, family=socket.AF_INET6
                )

    def build_management(self) -> None:
        mgmt = self.ipr["mgmt"]
        mgmt.link("add", ifname=BRIDGE, kind="bridge")
        bridge = self.index("mgmt", BRIDGE)
        mgmt.link("set", index=bridge, state="up")
        prefixlen = ipaddress.ip_network(plan.MGMT_SUBNET).prefixlen
        for node, address in plan.MGMT_ADDRESSES.items():
            mgmt.link(
                "add",
                ifname=node[:15],
                kind="veth",
                peer={"ifname": plan.MGMT_IFNAME, "net_ns_fd": self.ns(node)},
            )
            port = self.index("mgmt", node[:15])
            mgmt.link("set", index=port, master=bridge, state="up")
            idx = self.index(node, plan.MGMT_IFNAME)
            self.ipr[node].addr("add", index=idx, address=address, prefixlen=prefixlen)
            self.ipr[node].link("set", index=idx, state="up")

    # -- scenario state ------------------------------------------------------

    def set_links(self, down: frozenset[str], shut_at: dict[str, str] | None = None) -> None:
        """Links in `down` go down at both ends, or only at `shut_at[link]` (the
        other end then sees its carrier drop, as a real router port does)."""
        shut_at = shut_at or {}
        for link in plan.LINKS:
            for end in (link.a, link.b):
                is_down = link.key in down and shut_at.get(link.key, end) == end
                state = "down" if is_down else "up"
                self.ipr[end].link("set", index=self.index(end, link.ifname(end)), state=state)

    def _nexthop(self, node: str, via: str, family: int) -> dict:
        link = plan.link_between(node, via)
        return {"gateway": link.address(via, family), "oif": self.index(node, link.ifname(node))}

    def reconcile_routes(self, s: Scenario, ecmp: bool) -> None:
        desired: dict[str, dict[tuple[int, str], tuple[str, ...]]] = {}
        for r in scenarios.routes(s, ecmp=ecmp):
            prefix = str(ipaddress.ip_network(r.prefix))
            desired.setdefault(r.node, {})[(r.table, prefix)] = r.via

        def one(node: str) -> None:
            ipr = self.ipr[node]
            want = desired.get(node, {})
            have: dict[tuple[int, str], tuple[str, ...]] = {}
            for af, any_address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
                for route in ipr.route("dump", family=af):
                    if route["proto"] != RTPROT_STATIC:
                        continue
                    dst = f"{route.get('dst') or any_address}/{route['dst_len']}"
                    key = (route.get("table"), str(ipaddress.ip_network(dst)))
                    gws = (
                        [route.get("gateway")]
                        if route.get("gateway")
                        else [
                            dict(h["attrs"]).get("RTA_GATEWAY")
                            for h in route.get("multipath") or []
                        ]
                    )
                    have[key] = tuple(sorted(str(ipaddress.ip_address(g)) for g in gws if g))
            for key in have.keys() - want.keys():
                table, prefix = key
                ipr.route("del", dst=prefix, table=table, family=_family(prefix))
            for (table, prefix), via in want.items():
                family = ipaddress.ip_network(prefix).version
                gws = tuple(sorted(plan.link_between(node, v).address(v, family) for v in via))
                if have.get((table, prefix)) == gws:
                    continue
                hops = [self._nexthop(node, v, family) for v in via]
                kw = {"dst": prefix, "table": table, "proto": RTPROT_STATIC}
                kw["family"] = _family(prefix)
                if len(hops) == 1:
                    ipr.route("replace", **kw, **hops[0])
                else:
                    if family == 6:
                        # An IPv6 multipath route cannot be replaced in place.
                        with contextlib.suppress(NetlinkError):
                            ipr.route("del", dst=prefix, table=table, family=socket.AF_INET6)
                    ipr.route("replace", **kw, multipath=hops)

        for n in plan.NODE_KEYS:
            one(n)

    def reconcile_rules(self, s: Scenario) -> None:
        want = scenarios.rules(s)
        nodes = {r.node for r in want} | {plan.FIREWALL.node}
        for node in nodes:
            ipr = self.ipr[node]
            for rule in ipr.get_rules(family=socket.AF_INET):
                if rule.get("priority") in RULE_PRIORITIES:
                    ipr.rule("del", priority=rule.get("priority"), table=rule.get("table"))
            for r in (x for x in want if x.node == node):
                src = ipaddress.ip_network(r.src)
                kw = {"src": str(src.network_address), "src_len": src.prefixlen}
                if r.dst:
                    dst = ipaddress.ip_network(r.dst)
                    kw.update(dst=str(dst.network_address), dst_len=dst.prefixlen)
                ipr.rule("add", priority=r.priority, table=r.table, **kw)

    def apply_scenario(self, s: Scenario, ecmp: bool) -> None:
        self.set_links(s.links_down, s.shut_at)
        self.reconcile_routes(s, ecmp)
        self.reconcile_rules(s)
