"""Scenarios: the routing state of the lab, as data.

Each scenario is the outcome BGP would produce in a real network (which links
are up, which prefixes each side learned and preferred), written down as
static routes, policy rules and link states.  The builder reconciles the
kernel to this desired state, so switching is live and needs no rebuild; the
path simulator reads the very same routes to compute the expected hops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import plan
from .plan import (
    BRANCH_PREFIX,
    CDN_PREFIX,
    CUSTOMER_INTERNAL,
    ER_NAT_POOL_1,
    ER_NAT_POOL_2,
    ER_RECEIVED_PREFIXES,
    EXT_CDN_PREFIX,
    INTERNET_NAT_PREFIX,
    MICROSOFT_AGGREGATE,
    SERVICE_AGGREGATE,
)

MAIN = 254
BRANCH_BREAKOUT_TABLE = 100
DEFAULT = "0.0.0.0/0"
# How the lab's circuits are built unless a scenario says otherwise: circuit 1
# sends everything over its primary link (the secondary waits), circuit 2 has
# one link cabled.  The agents' site facts say the same (`links` per circuit).
STANDBY_DESIGN: dict[str, str] = {"ams-er-1": "active-standby", "dub-er-2": "active-standby"}
ACTIVE_ACTIVE_DESIGN: dict[str, str] = {"ams-er-1": "active-active", "dub-er-2": "active-standby"}
# The sites' failover order (`[site] prefer` in the agents' configs).
PREFER: tuple[str, ...] = ("ams-er-1", "dub-er-2", "internet")


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
            "failover-order",
            "the datacenter core sends Microsoft prefixes to circuit 2 although "
            "circuit 1, first in the failover order, is up",
            frozenset(),
            "ce2",
            {"ams-er-1": (ER_NAT_POOL_1,), "dub-er-2": (ER_NAT_POOL_2,)},
            {},
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
    for c in plan.CIRCUITS:
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
    add("branch", DEFAULT, "wan")
    add("wan", DEFAULT, "dccore")
    add("dchost", DEFAULT, "dccore")
    add("dcdns", DEFAULT, "dccore")
    add("dccore", BRANCH_PREFIX, "wan")
    add("dccore", INTERNET_NAT_PREFIX, "inet")
    add("dccore", ER_NAT_POOL_1, "ce1")
    add("dccore", ER_NAT_POOL_2, "ce2")
    add("dccore", DEFAULT, "inet")
    # The CEs' peering /30s (their connected subnets, in the IGP): an agent can
    # ask each MSEE directly whether its link is up.
    for c in plan.CIRCUITS:
        for key in (c.primary_link, c.secondary_link):
            if key:
                add("dccore", plan.LINKS_BY_KEY[key].subnet, c.ce)
    # Microsoft prefixes learned over ER (BGP from the CE); gone when no link is up.
    egress = next((c.name for c in plan.CIRCUITS if c.ce == s.er_egress), None)
    if egress and msees[egress]:
        for p in ER_RECEIVED_PREFIXES:
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
            for p in ER_RECEIVED_PREFIXES:
                add(c.ce, p, *live(c.name))

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
    for c in plan.CIRCUITS:
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
