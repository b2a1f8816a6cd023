"""Scenarios: the routing state of the lab, as data.

Each scenario is the outcome BGP would produce in a real network (which links
are up, which prefixes each side learned and preferred), written down as
static routes, policy rules and link states.  The builder reconciles the
kernel to this desired state, so switching is live and needs no rebuild; the
path simulator reads the very same routes to compute the expected hops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import plan, routefilter
from .plan import (
    BRANCH_PREFIX,
    BRANCH_PREFIX6,
    CDN_PREFIX,
    CDN_PREFIX6,
    CUSTOMER_INTERNAL,
    CUSTOMER_INTERNAL6,
    CUSTOMER_PREFIX6,
    DC_PREFIX6,
    DNS_BAD_PREFIX6,
    ER_NAT_POOL_1,
    ER_NAT_POOL_2,
    ER_NAT_POOL_3,
    ER_RECEIVED_PREFIXES6,
    EXT_CDN_PREFIX,
    EXT_CDN_PREFIX6,
    INTERNET_NAT_PREFIX,
    ISP1_BLOCK6,
    ISP2_BLOCK6,
    MICROSOFT_AGGREGATE,
    MICROSOFT_AGGREGATE6,
    SERVICE_AGGREGATE,
    SERVICE_PREFIXES6,
)

MAIN = 254
BRANCH_BREAKOUT_TABLE = 100
DEFAULT = "0.0.0.0/0"
DEFAULT6 = "::/0"
# How the lab's circuits are built unless a scenario says otherwise: circuit 1
# sends everything over its primary link (the secondary waits), circuit 2 has
# one link cabled.  The agents' site facts say the same (`links` per circuit).
STANDBY_DESIGN: dict[str, str] = {"ams-er-1": "active-standby", "dub-er-2": "active-standby"}
ACTIVE_ACTIVE_DESIGN: dict[str, str] = {"ams-er-1": "active-active", "dub-er-2": "active-standby"}
# The sites' failover order (`[site] prefer` in the agents' configs).
PREFER: tuple[str, ...] = ("ams-er-1", "dub-er-2", "internet")
# The customer's own circuits: the sites' circuits in every design but the IP VPN.
OWN_CIRCUITS: tuple[str, ...] = tuple(c.name for c in plan.CIRCUITS)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    links_down: frozenset[str]
    # Where the datacenter core sends Microsoft prefixes: "ce1" or None (no ER).
    er_egress: str | None
    # Customer prefixes each circuit advertises to Microsoft (circuit name -> prefixes).
    advertised: dict[str, tuple[str, ...]]
    # Prefix -> circuit Microsoft prefers when it learned the prefix over several.
    microsoft_prefers: dict[str, str]
    branch_breakout: bool = False  # policy route: branch traffic to the internet edge
    # Per circuit, how its links carry flows: "active-active" = the CE hashes
    # flows (L4) over every live link AND Microsoft returns over every live
    # link, so a reply may come back on the other link of the same circuit.
    link_mode: dict[str, str] = field(default_factory=lambda: dict(STANDBY_DESIGN))
    # Links in `links_down` that are shut at one end only (link key -> that
    # end's node): the other end keeps its address and sees the carrier drop,
    # as with a shut CE port or a cut fibre; BGP over the link is gone either way.
    shut_at: dict[str, str] = field(default_factory=dict)
    # MSEE nodes that drop about half of their ICMP time-exceeded messages.
    flaky: tuple[str, ...] = ()
    # IPv6 routed at all.  Without it every link keeps its IPv6 addresses but no
    # router has an IPv6 route (IPv6 not rolled out yet): a host's users get
    # IPv4 for every dual-stack name, exactly as before IPv6 existed in the lab.
    ipv6: bool = False
    # Where the datacenter core sends Microsoft's IPv6 prefixes ("ce1", or None:
    # the internet edge), and the customer's IPv6 prefixes each circuit
    # advertises to Microsoft (no NAT: the hosts' own prefixes).
    er_egress6: str | None = None
    advertised6: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Per circuit, the BGP communities its route filter allows (tests/lab/routefilter.py):
    # Microsoft advertises only their prefixes over it.  A circuit not named has no
    # filter modelled: it learns every Microsoft prefix, and its agents' facts name none.
    route_filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The site design.  "leased": the branch reaches the datacenter over its
    # own WAN link and the datacenter reaches Microsoft over its CEs (the
    # customer's circuits).  "ipvpn": branch and datacenter sit on one IP VPN
    # (wan and dccore attach to the provider's PEs) and the provider's PE at
    # the ExpressRoute location holds the circuit (the layer-3 model).
    wan: str = "leased"
    # The sites' circuits in this design (their facts list these, in this
    # order) and their failover order.
    circuits: tuple[str, ...] = OWN_CIRCUITS
    prefer: tuple[str, ...] = PREFER


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "er",
            "service via ER circuit 1 primary, CDN via internet, symmetric returns",
            frozenset(),
            "ce1",
            {"ams-er-1": (ER_NAT_POOL_1,), "dub-er-2": (ER_NAT_POOL_2,)},
            {},
        ),
        Scenario(
            "er-secondary",
            "circuit 1 primary link down: service via the secondary link",
            frozenset({"ce1-msee1p"}),
            "ce1",
            {"ams-er-1": (ER_NAT_POOL_1,), "dub-er-2": (ER_NAT_POOL_2,)},
            {},
        ),
        Scenario(
            "internet-failover",
            "both circuit 1 links down: everything via the internet edge",
            frozenset({"ce1-msee1p", "ce1-msee1s"}),
            None,
            {"ams-er-1": (ER_NAT_POOL_1,), "dub-er-2": (ER_NAT_POOL_2,)},
            {},
        ),
        Scenario(
            "asymmetric-nat",
            "branch leaves via the internet edge; the internet NAT prefix is also "
            "advertised over ER, so Microsoft returns over ER and the firewall drops it",
            frozenset(),
            "ce1",
            {"ams-er-1": (ER_NAT_POOL_1, INTERNET_NAT_PREFIX), "dub-er-2": (ER_NAT_POOL_2,)},
            {},
            branch_breakout=True,
        ),
        Scenario(
            "asymmetric-circuits",
            "out over circuit 1; circuit 2 also advertises circuit 1's NAT pool and "
            "Microsoft prefers it, so replies come back over circuit 2",
            frozenset(),
            "ce1",
            {"ams-er-1": (ER_NAT_POOL_1,), "dub-er-2": (ER_NAT_POOL_2, ER_NAT_POOL_1)},
            {ER_NAT_POOL_1: "dub-er-2"},
        ),
        Scenario(
            "er-active-active",
            "circuit 1 active-active: the CE hashes flows over both links and Microsoft "
            "returns over both, so a reply may come back on the other link",
            frozenset(),
            "ce1",
            {"ams-er-1": (ER_NAT_POOL_1,), "dub-er-2": (ER_NAT_POOL_2,)},
            {},
            link_mode=dict(ACTIVE_ACTIVE_DESIGN),
        ),
        Scenario(
            "er-active-active-link-down",
            "circuit 1 active-active with its secondary link shut at the CE: every flow "
            "on the primary link, the circuit has lost its redundancy",
            frozenset({"ce1-msee1s"}),
            "ce1",
            {"ams-er-1": (ER_NAT_POOL_1,), "dub-er-2": (ER_NAT_POOL_2,)},
            {},
            link_mode=dict(ACTIVE_ACTIVE_DESIGN),
            shut_at={"ce1-msee1s": "ce1"},
        ),
        Scenario(
            "er-flaky-msee",
            "as er, but the primary MSEE drops about half of its ICMP time-exceeded",
            frozenset(),
            "ce1",
            {"ams-er-1": (ER_NAT_POOL_1,), "dub-er-2": (ER_NAT_POOL_2,)},
            {},
            flaky=("msee1p",),
        ),
        Scenario(
            "ipv6-er",
            "IPv6 over ER circuit 1 primary (the customer's IPv6 prefix advertised, no "
            "NAT), IPv4 over the internet edge; CDN via the internet in both families",
            frozenset(),
            None,
            {"ams-er-1": (ER_NAT_POOL_1,), "dub-er-2": (ER_NAT_POOL_2,)},
            {},
            ipv6=True,
            er_egress6="ce1",
            advertised6={"ams-er-1": (BRANCH_PREFIX6, DC_PREFIX6)},
        ),
        Scenario(
            "ipv6-asymmetric",
            "the branch's IPv6 prefix is advertised over ER circuit 1, but IPv6 leaves "
            "via the internet edge: Microsoft returns over the circuit and the firewall "
            "drops the replies (IPv4 over ER as in er)",
            frozenset(),
            "ce1",
            {"ams-er-1": (ER_NAT_POOL_1,), "dub-er-2": (ER_NAT_POOL_2,)},
            {},
            ipv6=True,
            er_egress6=None,
            advertised6={"ams-er-1": (BRANCH_PREFIX6,)},
        ),
        Scenario(
            "failover-order",
            "the datacenter core sends Microsoft prefixes to circuit 2 although "
            "circuit 1, first in the failover order, is up",
            frozenset(),
            "ce2",
            {"ams-er-1": (ER_NAT_POOL_1,), "dub-er-2": (ER_NAT_POOL_2,)},
            {},
        ),
        Scenario(
            "route-filter-missing",
            "the circuits' route filter lacks the Power Platform North Europe community "
            "(12076:51003): Microsoft does not advertise its prefix over ER, so it goes via "
            "the internet edge; everything else over ER circuit 1 as in er",
            frozenset(),
            "ce1",
            {"ams-er-1": (ER_NAT_POOL_1,), "dub-er-2": (ER_NAT_POOL_2,)},
            {},
            route_filters={
                "ams-er-1": routefilter.WITHOUT_NORTH_EUROPE,
                "dub-er-2": routefilter.WITHOUT_NORTH_EUROPE,
            },
        ),
        Scenario(
            "route-filter-fixed",
            "route-filter-missing after the North Europe community was added to the filter: "
            "its prefix is advertised over ER again, as in er",
            frozenset(),
            "ce1",
            {"ams-er-1": (ER_NAT_POOL_1,), "dub-er-2": (ER_NAT_POOL_2,)},
            {},
            route_filters={
                "ams-er-1": routefilter.ALL_ALLOWED,
                "dub-er-2": routefilter.ALL_ALLOWED,
            },
        ),
        Scenario(
            "er-ipvpn",
            "branch and datacenter on one IP VPN; the provider's PE at the ExpressRoute "
            "location holds circuit ams-vpn-3 (NAT pool 203.0.113.32/28): service via the "
            "provider's routers and the primary MSEE, CDN via the datacenter's internet edge",
            # The branch's own WAN link and the customer's own circuits are no
            # part of this design.
            frozenset({"wan-dccore", "ce1-msee1p", "ce1-msee1s", "ce2-msee2"}),
            "pe2",
            {"ams-vpn-3": (ER_NAT_POOL_3,)},
            {},
            wan="ipvpn",
            circuits=("ams-vpn-3",),
            prefer=("ams-vpn-3", "internet"),
        ),
    )
}
DEFAULT_SCENARIO = "er"


@dataclass(frozen=True, slots=True)
class Route:
    node: str
    prefix: str
    via: tuple[str, ...]  # next-hop nodes; several = ECMP
    table: int = MAIN


@dataclass(frozen=True, slots=True)
class Rule:
    node: str
    priority: int
    src: str
    dst: str | None
    table: int


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(
            f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}"
        ) from None


def _circuit_links_up(s: Scenario) -> dict[str, list[str]]:
    """Per circuit, the MSEE nodes whose link is up, preferred first."""
    out: dict[str, list[str]] = {}
    for c in plan.ALL_CIRCUITS:
        links = [c.primary_link] + ([c.secondary_link] if c.secondary_link else [])
        out[c.name] = [plan.LINKS_BY_KEY[k].peer(c.ce) for k in links if k not in s.links_down]
    return out


def routes(s: Scenario, *, ecmp: bool = True) -> list[Route]:
    """All static routes of the lab in scenario `s`."""
    r: list[Route] = []

    def add(node: str, prefix: str, *via: str, table: int = MAIN) -> None:
        r.append(Route(node, prefix, tuple(via), table))

    isps = ("isp1", "isp2") if ecmp else ("isp1",)
    msees = _circuit_links_up(s)

    def live(circuit: str) -> tuple[str, ...]:
        """The MSEEs a circuit's flows use: every live link when active-active."""
        up = msees[circuit]
        return tuple(up) if s.link_mode.get(circuit) == "active-active" else tuple(up[:1])

    # Customer: hosts default to their router; the core knows the inside.
    # In the IP VPN design the provider's network joins branch and datacenter.
    wan_next, branch_via = ("pe1", "pe2") if s.wan == "ipvpn" else ("dccore", "wan")
    add("branch", DEFAULT, "wan")
    add("wan", DEFAULT, wan_next)
    add("dchost", DEFAULT, "dccore")
    add("dcdns", DEFAULT, "dccore")
    add("dccore", BRANCH_PREFIX, branch_via)
    add("dccore", INTERNET_NAT_PREFIX, "inet")
    add("dccore", ER_NAT_POOL_1, "ce1")
    add("dccore", ER_NAT_POOL_2, "ce2")
    add("dccore", DEFAULT, "inet")
    # The CEs' peering /30s (their connected subnets, in the IGP; the
    # provider's PE's, in the VPN): an agent can ask each MSEE directly
    # whether its link is up.
    for c in (*plan.CIRCUITS, *_provider_circuits(s)):
        for key in (c.primary_link, c.secondary_link):
            if key:
                add("dccore", plan.LINKS_BY_KEY[key].subnet, c.ce)
    # Microsoft prefixes learned over ER (BGP from the CE); gone when no link is up.
    egress = next((c.name for c in plan.ALL_CIRCUITS if c.ce == s.er_egress), None)
    if egress and msees[egress]:
        for p in routefilter.received(s.route_filters.get(egress)):
            add("dccore", p, s.er_egress)
    if s.branch_breakout:
        # PBR: the branch's non-internal traffic goes straight to the internet edge.
        add("dccore", DEFAULT, "inet", table=BRANCH_BREAKOUT_TABLE)

    # CE routers: customer space inside, Microsoft space over the best live link.
    for c in plan.CIRCUITS:
        for p in (CUSTOMER_INTERNAL, INTERNET_NAT_PREFIX, ER_NAT_POOL_1, ER_NAT_POOL_2):
            if p not in (c.nat_pool,):
                add(c.ce, p, "dccore")
        if msees[c.name]:
            for p in routefilter.received(s.route_filters.get(c.name)):
                add(c.ce, p, *live(c.name))
    if s.wan == "ipvpn":
        r += _provider_routes(s, msees, live)

    # Internet edge and ISPs.
    add("inet", CUSTOMER_INTERNAL, "dccore")
    add("inet", DEFAULT, *isps)
    for isp in ("isp1", "isp2"):
        add(isp, INTERNET_NAT_PREFIX, "inet")
        add(isp, DEFAULT, "silent")
    add("silent", INTERNET_NAT_PREFIX, *isps)
    add("silent", "198.18.16.0/20", "isp1")
    add("silent", "198.18.32.0/20", "isp2")
    add("silent", MICROSOFT_AGGREGATE, "msedge")
    add("silent", EXT_CDN_PREFIX, "extcdn")
    add("extcdn", DEFAULT, "silent")

    # Microsoft.
    add("msedge", DEFAULT, "silent")
    add("msedge", MICROSOFT_AGGREGATE, "mscore")
    add("msedge", CDN_PREFIX, "cdn")
    add("mscore", DEFAULT, "msedge")
    add("mscore", SERVICE_AGGREGATE, "svc")
    for host in ("svc", "cdn"):
        add(host, DEFAULT, "mscore" if host == "svc" else "msedge")
    add("azure", DEFAULT, "mscore")
    add("dns", DEFAULT, "silent")

    # What each MSEE learned from its CE, and which circuit the core prefers.
    learned: dict[str, list[str]] = {}  # prefix -> circuits, in plan order
    for c in plan.ALL_CIRCUITS:
        if not msees[c.name]:
            continue
        for p in s.advertised.get(c.name, ()):
            learned.setdefault(p, []).append(c.name)
            for msee in msees[c.name]:
                add(msee, p, c.ce)
    for msee in ("msee1p", "msee1s", "msee2"):
        add(msee, DEFAULT, "mscore")
    for p, names in learned.items():
        best = s.microsoft_prefers.get(p, names[0])
        if best not in names:
            best = names[0]
        add("mscore", p, *live(best))
    if s.ipv6:
        r += _routes6(s, isps, msees, live)
    return r


def _provider_circuits(s: Scenario) -> tuple[plan.Circuit, ...]:
    """The provider's circuits this design uses (none unless on the IP VPN)."""
    return tuple(c for c in plan.PROVIDER_CIRCUITS if c.name in s.circuits)


def _provider_routes(s: Scenario, msees, live) -> list[Route]:
    """The IP VPN (one VRF): what the provider's routers learned from the sites and circuit 3.

    The branch's PE learns the branch, the datacenter's PE the datacenter's
    inside and its default route (the central internet breakout), and the PE
    at the ExpressRoute location Microsoft's prefixes from the MSEEs; every
    PE and the P router carry them all (MPLS, written as plain routes).
    Without a live link Microsoft's prefixes are withdrawn and the default
    route takes the traffic to the datacenter's internet edge.
    """
    r: list[Route] = []

    def add(node: str, prefix: str, *via: str) -> None:
        r.append(Route(node, prefix, tuple(via)))

    add("pe1", BRANCH_PREFIX, "wan")
    add("pe1", DEFAULT, "p1")
    add("p1", BRANCH_PREFIX, "pe1")
    add("p1", DEFAULT, "pe2")
    add("pe2", BRANCH_PREFIX, "p1")
    add("pe2", CUSTOMER_INTERNAL, "dccore")
    add("pe2", DEFAULT, "dccore")
    for c in _provider_circuits(s):
        if msees[c.name]:
            for p in routefilter.received(s.route_filters.get(c.name)):
                add("pe1", p, "p1")
                add("p1", p, c.ce)
                add(c.ce, p, *live(c.name))
    return r


def _routes6(s: Scenario, isps, msees, live) -> list[Route]:
    """The IPv6 plane: the same topology, no NAT, the customer's own prefix."""
    r: list[Route] = []

    def add(node: str, prefix: str, *via: str) -> None:
        r.append(Route(node, prefix, tuple(via)))

    for host, router in (("branch", "wan"), ("wan", "dccore"), ("dchost", "dccore")):
        add(host, DEFAULT6, router)
    add("dcdns", DEFAULT6, "dccore")
    add("dccore", BRANCH_PREFIX6, "wan")
    add("dccore", DEFAULT6, "inet")
    for c in plan.CIRCUITS:
        for key in (c.primary_link, c.secondary_link):
            if key:
                add("dccore", plan.LINKS_BY_KEY[key].subnet6, c.ce)
    egress = next((c.name for c in plan.CIRCUITS if c.ce == s.er_egress6), None)
    if egress and msees[egress]:
        for p in ER_RECEIVED_PREFIXES6:
            add("dccore", p, s.er_egress6)
    for c in plan.CIRCUITS:
        add(c.ce, CUSTOMER_PREFIX6, "dccore")
        add(c.ce, CUSTOMER_INTERNAL6, "dccore")
        if msees[c.name]:
            for p in ER_RECEIVED_PREFIXES6:
                add(c.ce, p, *live(c.name))

    # Internet edge (stateful filter, no NAT) and the internet: the customer's
    # /48 is announced to both ISPs.
    add("inet", CUSTOMER_PREFIX6, "dccore")
    add("inet", CUSTOMER_INTERNAL6, "dccore")
    add("inet", DEFAULT6, *isps)
    for isp in ("isp1", "isp2"):
        add(isp, CUSTOMER_PREFIX6, "inet")
        add(isp, DEFAULT6, "silent")
    add("silent", CUSTOMER_PREFIX6, *isps)
    add("silent", ISP1_BLOCK6, "isp1")
    add("silent", ISP2_BLOCK6, "isp2")
    add("silent", MICROSOFT_AGGREGATE6, "msedge")
    add("silent", EXT_CDN_PREFIX6, "extcdn")
    add("silent", DNS_BAD_PREFIX6, "dns")
    add("extcdn", DEFAULT6, "silent")
    add("dns", DEFAULT6, "silent")

    # Microsoft: the internet edge and the CDN never use what the circuits
    # advertise (Front Door is not on ExpressRoute); the region's core does.
    add("msedge", DEFAULT6, "silent")
    add("msedge", MICROSOFT_AGGREGATE6, "mscore")
    add("msedge", CDN_PREFIX6, "cdn")
    add("mscore", DEFAULT6, "msedge")
    for p in SERVICE_PREFIXES6:
        add("mscore", p, "svc")
    add("svc", DEFAULT6, "mscore")
    add("cdn", DEFAULT6, "msedge")
    add("azure", DEFAULT6, "mscore")
    for msee in ("msee1p", "msee1s", "msee2"):
        add(msee, DEFAULT6, "mscore")
    for c in plan.CIRCUITS:
        if not msees[c.name]:
            continue
        for p in s.advertised6.get(c.name, ()):
            for msee in msees[c.name]:
                add(msee, p, c.ce)
            add("mscore", p, *live(c.name))
    return r


def rules(s: Scenario) -> list[Rule]:
    if not s.branch_breakout:
        return []
    return [
        # Internal destinations keep using the main table ...
        Rule("dccore", 100, BRANCH_PREFIX, CUSTOMER_INTERNAL, MAIN),
        # ... everything else from the branch leaves via the internet edge.
        Rule("dccore", 110, BRANCH_PREFIX, None, BRANCH_BREAKOUT_TABLE),
    ]


def links_down(s: Scenario) -> frozenset[str]:
    return s.links_down
