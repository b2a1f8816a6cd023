"""The truth about a trace: which hop answers at each TTL, computed from the plan.

A small forwarding model of the lab (longest-prefix routing with policy rules,
source NAT with its reply bindings, the stateful firewall, the silent hop, the
filtered and closed service addresses).  For each TTL it walks the probe
forward, then walks the answer (ICMP time-exceeded, or the destination's
SYN-ACK/RST) back to the prober; an answer that is lost on the way back (an
asymmetric return dropped by the firewall) is a missing hop, exactly as
`traceroute -n` shows it.  ICMP rate limiting is not modelled here: tests
that compare hop lists with the lab turn it off.  The trace engine's fake
network (`tests/agent/measure/trace/fakenet.lab_model`) runs on this model
and adds what it lacks: the routers' ICMP token buckets and a per-flow hash
at every ECMP fork.

Routers answer from the address of the interface the probe came in on
(net.ipv4.icmp_errors_use_inbound_ifaddr=1 in the lab), so a hop address
names the link the forward path used even when the answer returns elsewhere.

IPv6 (the destination's family decides) runs on the same model: the links'
IPv6 subnets, the scenario's IPv6 routes, no NAT, the internet edge's IPv6
stateful filter, and the datacenter firewall's zone check (a reply must come
back from the zone its flow left into).  In the lab an IPv6 hop answers from
its source-address choice towards the prober, which is the inbound
interface on every path the scenarios build where the answer gets home.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from . import plan, scenarios
from .scenarios import MAIN, Route, Rule, Scenario

MAX_TTL = 30


@dataclass(frozen=True, slots=True)
class Hop:
    ttl: int
    node: str
    address: str  # the address that would answer (inbound interface / destination)
    answered: bool
    why: str  # "ok", "silent", "lost:<node>", "filtered", "destination"


@dataclass(frozen=True, slots=True)
class Trace:
    hops: tuple[Hop, ...]
    reached: bool  # the destination answered
    stopped: str  # why the probes go no further: "destination", "dropped:<node>", ...


class AmbiguousPath(ValueError):
    """The path forks over ECMP; the caller must pick a flow (sport) or disable ECMP."""


class _Net:
    """Routing view of the lab in one scenario."""

    def __init__(self, s: Scenario, ecmp: bool) -> None:
        self.scenario = s
        self.routes: dict[str, list[Route]] = {}
        for r in scenarios.routes(s, ecmp=ecmp):
            self.routes.setdefault(r.node, []).append(r)
        self.rules: dict[str, list[Rule]] = {}
        for rule in scenarios.rules(s):
            self.rules.setdefault(rule.node, []).append(rule)
        self.up_links = [link for link in plan.LINKS if link.key not in s.links_down]
        self.local: dict[str, str] = {}
        for link in self.up_links:
            for end in (link.a, link.b):
                self.local[link.address(end)] = end
                if link.subnet6:
                    self.local[link.address6(end)] = end
        for n in plan.NODES:
            for a in (*n.loopbacks, *n.loopbacks6):
                self.local[a] = n.key

    def ingress_address(self, node: str, from_node: str, family: int = 4) -> str:
        return plan.link_between(node, from_node).address(node, family)

    def _table(self, node: str, table: int) -> list[tuple[str, tuple[str, ...]]]:
        out = [(r.prefix, r.via) for r in self.routes.get(node, []) if r.table == table]
        if table == MAIN:
            for link in self.up_links:
                if node in (link.a, link.b):
                    for subnet in filter(None, (link.subnet, link.subnet6)):
                        out.append((str(ipaddress.ip_network(subnet)), (link.peer(node),)))
        return out

    def _lookup_table(self, node: str, table: int, dst: str) -> tuple[str, ...] | None:
        d = ipaddress.ip_address(dst)
        best: tuple[int, tuple[str, ...]] | None = None
        for prefix, via in self._table(node, table):
            net = ipaddress.ip_network(prefix)
            if net.version != d.version:
                continue
            if d in net and (best is None or net.prefixlen > best[0]):
                # A connected subnet delivers to the owner of dst, not the "peer".
                if len(via) == 1 and prefix in self._connected(node):
                    owner = self.local.get(dst)
                    via = (owner,) if owner else via
                best = (net.prefixlen, via)
        return best[1] if best else None

    def _connected(self, node: str) -> set[str]:
        return {
            str(ipaddress.ip_network(subnet))
            for link in self.up_links
            if node in (link.a, link.b)
            for subnet in (link.subnet, link.subnet6)
            if subnet
        }

    def next_hops(self, node: str, src: str, dst: str) -> tuple[str, ...] | None:
        s = ipaddress.ip_address(src)
        d = ipaddress.ip_address(dst)
        for rule in sorted(self.rules.get(node, []), key=lambda x: x.priority):
            if ipaddress.ip_network(rule.src).version != s.version:
                continue
            if s not in ipaddress.ip_network(rule.src):
                continue
            if rule.dst and d not in ipaddress.ip_network(rule.dst):
                continue
            found = self._lookup_table(node, rule.table, dst)
            if found:
                return found
        return self._lookup_table(node, MAIN, dst)


def _snat(node: str, out_peer: str, src: str) -> str | None:
    if ipaddress.ip_address(src).version == 6:
        return None  # no NAT in IPv6
    for rule in plan.SOURCE_NATS:
        if (
            rule.node == node
            and out_peer in rule.out_peers
            and ipaddress.ip_address(src) in ipaddress.ip_network(rule.source)
        ):
            return rule.to_address
    return None


def source_address(net: _Net, node: str, dst: str) -> str:
    """The address the kernel picks as source: that of the egress interface."""
    family = ipaddress.ip_address(dst).version
    via = net.next_hops(node, "0.0.0.0" if family == 4 else "::", dst)
    if not via:
        raise ValueError(f"{node} has no route to {dst}")
    return plan.link_between(node, via[0]).address(node, family)


def _firewall(node: str, address: str) -> plan.StatefulFirewall | None:
    """The stateful firewall at `node` that filters this address's family."""
    family = ipaddress.ip_address(address).version
    for fw in plan.STATEFUL_FIREWALLS:
        if fw.node == node and fw.family in (None, family):
            return fw
    return None


def _paths(net: _Net, src_node: str, dst: str, choose) -> list[list[str]]:
    """Every forward node sequence from src_node towards dst (ECMP forks)."""
    src = source_address(net, src_node, dst)
    out: list[list[str]] = []

    def walk(path: list[str], cur_src: str) -> None:
        node = path[-1]
        if net.local.get(dst) == node or len(path) > MAX_TTL + 1:
            out.append(path)
            return
        via = net.next_hops(node, cur_src, dst)
        if not via:
            out.append(path)
            return
        picked = (
            choose(node, path[-2] if len(path) > 1 else None, cur_src, via) if len(via) > 1 else via
        )
        for nxt in picked:
            new_src = _snat(node, nxt, cur_src) or cur_src
            walk(path + [nxt], new_src)

    walk([src_node], src)
    return out


def _walk_answer(
    net: _Net,
    from_node: str,
    answer_src: str,
    dst: str,
    bindings: dict[str, tuple[str, str]],
    fw_seen: dict[str, tuple[str, str | None]],
    prober: str,
) -> str:
    """Follow an answer back to the prober; returns "ok" or "lost:<node>"."""
    node, prev = from_node, None
    for _ in range(64):
        if prev is not None:
            # PREROUTING: the NAT binding of the probed flow rewrites the reply.
            if node in bindings and bindings[node][1] == dst:
                dst = bindings[node][0]
            if net.local.get(dst) == node:
                return "ok" if node == prober else f"lost:{node}"
            fw = _firewall(node, dst)
            if fw is not None:
                seen = fw_seen.get(node)
                if seen is None or seen[0] != dst:
                    return f"lost:{node}"
                if fw.zones and ":" in dst and fw.zones.get(prev) != seen[1]:
                    return f"lost:{node}"  # the flow's reply from another zone
        elif net.local.get(dst) == node:
            return "ok" if node == prober else f"lost:{node}"
        via = net.next_hops(node, answer_src, dst)
        if not via:
            return f"lost:{node}"
        prev, node = node, via[0]
    return "lost:loop"


def _trace_path(net: _Net, path: list[str], dst: str, proto: str) -> Trace:
    prober = path[0]
    src = source_address(net, prober, dst)
    family = ipaddress.ip_address(dst).version
    hops: list[Hop] = []
    bindings: dict[str, tuple[str, str]] = {}  # node -> (original, translated)
    # firewall node -> (source of the flow it passed, zone the flow left into)
    fw_seen: dict[str, tuple[str, str | None]] = {}
    cur_src = src
    for ttl, node in enumerate(path[1:], start=1):
        prev = path[ttl - 1]
        addr_in = net.ingress_address(node, prev, family)
        if net.local.get(dst) == node:
            if dst in (plan.FILTERED_ADDRESS, plan.FILTERED_ADDRESS6):
                hops.append(Hop(ttl, node, dst, False, "filtered"))
                return Trace(tuple(hops), False, "filtered")
            fate = _walk_answer(net, node, dst, cur_src, bindings, fw_seen, prober)
            hops.append(Hop(ttl, node, dst, fate == "ok", "destination" if fate == "ok" else fate))
            return Trace(tuple(hops), fate == "ok", "destination")
        if node in plan.SILENT_NODES:
            hops.append(Hop(ttl, node, addr_in, False, "silent"))
        else:
            fate = _walk_answer(net, node, addr_in, cur_src, bindings, fw_seen, prober)
            hops.append(Hop(ttl, node, addr_in, fate == "ok", fate))
        # Probes with a larger TTL continue through this node.
        fw = _firewall(node, dst)
        if fw is not None:
            if prev not in fw.inside_peers:
                return Trace(tuple(hops), False, f"dropped:{node}")
            out = path[ttl + 1] if ttl < len(path) - 1 else None
            fw_seen[node] = (cur_src, fw.zones.get(out) if out else None)
        if ttl < len(path) - 1:
            nxt = path[ttl + 1]
            translated = _snat(node, nxt, cur_src)
            if translated:
                bindings[node] = (cur_src, translated)
                cur_src = translated
    del proto  # the model is the same for TCP, UDP and ICMP probes
    return Trace(tuple(hops), False, "unreachable")


def traces(
    scenario: str, src_node: str, dst: str, *, ecmp: bool = True, proto: str = "tcp", choose=None
) -> list[Trace]:
    """One Trace per forward path (several when the path forks over ECMP)."""
    plan.node(src_node)
    net = _Net(scenarios.get(scenario), ecmp)
    return [
        _trace_path(net, p, dst, proto)
        for p in _paths(net, src_node, dst, choose or (lambda _n, _p, _s, via: via))
    ]


def expected_hop_sets(
    scenario: str, src_node: str, dst: str, *, ecmp: bool = True
) -> list[frozenset[str]]:
    """Per TTL, the addresses that may answer (empty set: no answer)."""
    per_ttl: dict[int, set[str]] = {}
    length = 0
    for t in traces(scenario, src_node, dst, ecmp=ecmp):
        length = max(length, len(t.hops))
        for h in t.hops:
            s = per_ttl.setdefault(h.ttl, set())
            if h.answered:
                s.add(h.address)
    return [frozenset(per_ttl.get(i, set())) for i in range(1, length + 1)]


def expected_hops(
    scenario: str, src_node: str, dst: str, *, ecmp: bool = True, choose=None
) -> list[str | None]:
    """Hop address per TTL (None: no answer).  Raises AmbiguousPath on an ECMP fork
    unless `choose(node, previous_node, source, next_hops) -> (next_hop,)` resolves it."""
    ts = traces(scenario, src_node, dst, ecmp=ecmp, choose=choose)
    if len(ts) > 1:
        raise AmbiguousPath(
            f"path {src_node} -> {dst} in {scenario!r} forks over ECMP; pass sport= "
            "(the kernel is asked which member the flow hashes to), use "
            "expected_hop_sets(), or set_ecmp(False)"
        )
    return [h.address if h.answered else None for h in ts[0].hops]
