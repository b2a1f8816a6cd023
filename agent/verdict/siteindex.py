"""A site's facts indexed for address questions: whose hop is this, who advertises that.

Both the path classifier and the asymmetry findings ask the same three
questions of SiteFacts, per hop and per address:

- is this address on a circuit's peering /30 or /126 (MSEE = second
  address, CE = first) or one of its CE addresses, and which link?  A CE
  address configured for several circuits (one CE pair terminating two
  circuits, as sites with two circuits are often built) names none of them;
- is it an internet edge's hop or NAT address?
- which circuits advertise a prefix containing it (longest first)?

SiteFacts is frozen and hashable, so an index is built once per distinct
site and cached.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Literal

from agent.report import Circuit, InternetEdge, Link, SiteFacts

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class CircuitAddress:
    """A configured address on the customer's side of, or at, a circuit."""

    # Every circuit the address belongs to: one for a peering subnet's
    # address; a CE address may be configured for several circuits when one
    # router terminates them all, and then it names none of them.
    circuits: tuple[Circuit, ...]
    link: Link | None  # None for a CE address outside the peering /30s
    role: Literal["msee", "ce", "peering"]  # "peering": the /30's network or broadcast address
    subnet: str | None

    @property
    def circuit(self) -> Circuit | None:
        """The one circuit the address names; None when several circuits share it."""
        return self.circuits[0] if len(self.circuits) == 1 else None


@dataclass(frozen=True, slots=True)
class EdgeAddress:
    edge: InternetEdge
    role: Literal["hop", "nat"]


@dataclass(frozen=True, slots=True)
class Advertisement:
    circuit: Circuit
    prefix: str


def parse_ip(text: str | None) -> _Addr | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_net(text: str | None) -> _Net | None:
    try:
        return ipaddress.ip_network(text, strict=False) if text else None
    except ValueError:
        return None


class SiteIndex:
    """Address lookups over one site's circuits and internet edges."""

    __slots__ = ("site", "_subnets", "_ce", "_edges", "_adverts")

    def __init__(self, site: SiteFacts):
        self.site = site
        self._subnets: list[tuple[_Net, Circuit, Link]] = []
        self._ce: dict[_Addr, list[Circuit]] = {}
        self._edges: dict[_Addr, EdgeAddress] = {}
        self._adverts: list[tuple[_Net, Circuit]] = []
        # Unparsable entries are skipped, not raised: config.py rejects them at
        # load, and facts parsed back from a report must not crash a classifier.
        for c in site.circuits:
            for link, subnet in c.link_subnets():  # IPv4 /30s and IPv6 /126s
                if (net := parse_net(subnet)) is not None:
                    self._subnets.append((net, c, link))
            for a in c.ce_addresses:
                if (ip := parse_ip(a)) is not None:
                    circuits = self._ce.setdefault(ip, [])
                    if c not in circuits:  # an address listed twice for one circuit
                        circuits.append(c)
            for p in c.advertised_prefixes:
                if (net := parse_net(p)) is not None:
                    self._adverts.append((net, c))
        for e in site.internet_edges:
            # NAT addresses first so that an address configured as both is "nat"
            for role, addrs in (("nat", e.nat_addresses), ("hop", e.hop_addresses)):
                for a in addrs:
                    if (ip := parse_ip(a)) is not None:
                        self._edges.setdefault(ip, EdgeAddress(e, role))
        # longest prefix first, so advertising() reads in routing preference order
        self._adverts.sort(key=lambda pc: -pc[0].prefixlen)

    @staticmethod
    def of(site: SiteFacts) -> SiteIndex:
        """The index of `site`, cached: the same site is classified once per result."""
        try:
            return _cached(site)
        except TypeError:  # facts built with lists instead of tuples are not hashable
            return SiteIndex(site)

    def circuit_address(self, address: str | None) -> CircuitAddress | None:
        ip = parse_ip(address)
        if ip is None:
            return None
        for net, c, link in self._subnets:
            if ip.version == net.version and ip in net:
                offset = int(ip) - int(net.network_address)
                role = {1: "ce", 2: "msee"}.get(offset, "peering")
                return CircuitAddress((c,), link, role, str(net))
        shared = self._ce.get(ip)
        return CircuitAddress(tuple(shared), None, "ce", None) if shared else None

    def edge_address(self, address: str | None) -> EdgeAddress | None:
        ip = parse_ip(address)
        return self._edges.get(ip) if ip is not None else None

    def advertising(self, address: str | None) -> tuple[Advertisement, ...]:
        """Circuits advertising a prefix that contains `address`, longest prefix first."""
        ip = parse_ip(address)
        if ip is None:
            return ()
        return tuple(
            Advertisement(c, str(net))
            for net, c in self._adverts
            if net.version == ip.version and ip in net
        )

    def advertising_overlap(self, prefix: str) -> tuple[Advertisement, ...]:
        """Circuits advertising a prefix that overlaps `prefix` (inside it or containing it)."""
        net = parse_net(prefix)
        if net is None:
            return ()
        return tuple(
            Advertisement(c, str(n))
            for n, c in self._adverts
            if n.version == net.version and n.overlaps(net)
        )

    def overlaps(self, circuit: Circuit) -> tuple[tuple[str, Advertisement], ...]:
        """(own prefix, other circuit's overlapping advertisement) for each overlap."""
        own = [net for net, c in self._adverts if c.name == circuit.name]
        out: list[tuple[str, Advertisement]] = []
        for net, c in self._adverts:
            if c.name == circuit.name:
                continue
            for mine in own:
                if mine.version == net.version and mine.overlaps(net):
                    out.append((str(mine), Advertisement(c, str(net))))
        return tuple(out)

    def circuit(self, name: str | None) -> Circuit | None:
        return next((c for c in self.site.circuits if c.name == name), None)

    def edge(self, name: str | None) -> InternetEdge | None:
        return next((e for e in self.site.internet_edges if e.name == name), None)


@functools.lru_cache(maxsize=64)
def _cached(site: SiteFacts) -> SiteIndex:
    return SiteIndex(site)
