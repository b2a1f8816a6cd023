"""The lab's static plan: nodes, links, addresses, targets, circuits.

Pure data (frozen dataclasses), importable without root: tests, docs and the
path simulator read the same plan the builder wires into the kernel, so the
"truth" a test compares against can never drift from what was built.

Address plan (see docs/lab.md): RFC 1918 inside the customer, TEST-NETs for
the customer's public addresses (NAT pools, ExpressRoute peering /30s),
198.18.0.0/15 for "the internet" (198.18/16) and "Microsoft" (198.19/16).  IPv6 (dual-stack, no NAT) comes from the
documentation range 2001:db8::/32 (RFC 3849), split by the same roles: see
the IPv6 plan below.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

DEFAULT_PREFIX = "erp"


@dataclass(frozen=True, slots=True)
class Node:
    key: str
    role: str  # host | router | agent | server | bridge
    description: str
    forwarding: bool = False
    agent: bool = False
    # /32 addresses on lo: NAT addresses on edges, service addresses on hosts.
    loopbacks: tuple[str, ...] = ()
    # /128 addresses on lo: the IPv6 service addresses (there is no IPv6 NAT).
    loopbacks6: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Link:
    """A veth pair; the interface in each namespace is named after the peer."""

    a: str
    b: str
    subnet: str
    a_host: int
    b_host: int
    a_ifname: str = ""
    b_ifname: str = ""
    # The link's IPv6 subnet; each end takes the same host number as in IPv4
    # (so an ExpressRoute /126 gives the CE ::1 and the MSEE ::2).
    subnet6: str = ""

    @property
    def key(self) -> str:
        return f"{self.a}-{self.b}"

    def ifname(self, node: str) -> str:
        if node == self.a:
            return self.a_ifname or self.b[:15]
        return self.b_ifname or self.a[:15]

    def address(self, node: str, family: int = 4) -> str:
        net = ipaddress.ip_network(self.subnet if family == 4 else self.subnet6)
        return str(net[self.a_host if node == self.a else self.b_host])

    def address6(self, node: str) -> str:
        return self.address(node, 6)

    def subnet_of(self, family: int) -> str:
        return self.subnet if family == 4 else self.subnet6

    def peer(self, node: str) -> str:
        return self.b if node == self.a else self.a

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    address: str
    role: str  # service | api | auth | cdn | telemetry
    port: int = 443
    region: str = "westeurope"
    # Names between the queried name and the address, for CNAME chains.
    cname_chain: tuple[str, ...] = ()
    # The AAAA record ("" = the name has no IPv6 address).
    address6: str = ""


@dataclass(frozen=True, slots=True)
class Circuit:
    name: str
    location: str
    sku: str
    ce: str
    primary_link: str  # Link.key
    secondary_link: str | None
    nat_pool: str
    nat_addresses: dict[str, str] = field(default_factory=dict)  # site -> address
    # The connectivity provider whose router (a PE) holds the customer side of
    # the peering /30s, in its layer-3 (IP VPN, any-to-any) model; "" when the
    # customer's own CE does.
    provider: str = ""


@dataclass(frozen=True, slots=True)
class SourceNat:
    """Source NAT on an edge: flows from `source` leaving towards `out_peers`."""

    node: str
    out_peers: tuple[str, ...]
    source: str
    to_address: str


@dataclass(frozen=True, slots=True)
class StatefulFirewall:
    node: str
    inside_peers: tuple[str, ...]  # new flows may start only from these
    # Peer -> zone.  An IPv6 flow's replies must come back from the zone the
    # flow left into, as a zone-based firewall checks; without NAT this is what
    # catches a reply that returns over another path (IPv4's NAT does it
    # already).  Empty: not checked.
    zones: dict[str, str] = field(default_factory=dict)
    family: int | None = None  # None: both families; 6: IPv6 only


# --- nodes -------------------------------------------------------------------

_SERVICE_BLOCKS = {
    # prefix: (service tag, region)
    "198.19.16.0/24": ("PowerPlatformInfra", "westeurope"),
    "198.19.17.0/24": ("PowerPlatformInfra", "northeurope"),
    "198.19.18.0/24": ("PowerPlatformPlex", "westeurope"),
    "198.19.20.0/24": ("AzureActiveDirectory", ""),
    "198.19.24.0/24": ("AzureMonitor", "westeurope"),
    "198.19.32.0/24": ("AzureCloud", "westeurope"),  # the azure-side VNet
    "198.19.128.0/24": ("AzureFrontDoor.Frontend", ""),
}

# What Microsoft advertises over the ExpressRoute Microsoft peering (route
# filter: Power Platform, Entra ID, Azure Monitor, the region's VNets).  The
# Front Door / CDN block is never advertised over ExpressRoute.
ER_RECEIVED_PREFIXES: tuple[str, ...] = (
    "198.19.16.0/24",
    "198.19.17.0/24",
    "198.19.18.0/24",
    "198.19.20.0/24",
    "198.19.24.0/24",
    "198.19.32.0/24",
)
CDN_PREFIX = "198.19.128.0/24"
# A third-party CDN's block on the internet (AS64520): no service tag covers it.
EXT_CDN_PREFIX = "198.18.64.0/22"
EXT_CDN_ADDRESS = "198.18.65.10"
SERVICE_AGGREGATE = "198.19.16.0/20"  # routed by the Microsoft core to the service host
MICROSOFT_AGGREGATE = "198.19.0.0/16"
INTERNET_NAT_PREFIX = "198.51.100.0/28"
ER_NAT_POOL_1 = "203.0.113.0/28"
ER_NAT_POOL_2 = "203.0.113.16/28"
# The IP VPN design: the provider's circuit has its own NAT pool (unique per
# circuit, as the planning guide asks); the provider's routers are numbered
# from its own block (AS64504).
ER_NAT_POOL_3 = "203.0.113.32/28"
IPVPN_PROVIDER_BLOCK = "198.18.80.0/22"
IPVPN_PROVIDER_BLOCK6 = "2001:db8:18:400::/56"
IPVPN_DC_ACCESS = "198.18.80.12/30"  # the datacenter's access link to the provider's PE
BRANCH_PREFIX = "10.10.0.0/16"
CUSTOMER_INTERNAL = "10.0.0.0/8"
MGMT_SUBNET = "172.30.0.0/24"

CLOSED_ADDRESS = "198.19.16.250"  # TCP 443 answered with RST
FILTERED_ADDRESS = "198.19.16.251"  # everything silently dropped

DNS_PUBLIC = "198.18.53.53"
DNS_BAD = "198.18.53.66"
DNS_SPLIT = "10.20.53.53"
SPLIT_PRIVATE_DATAVERSE = "10.20.0.100"

# --- IPv6 plan: 2001:db8::/32 (RFC 3849), no NAT ----------------------------
# The 4th group mirrors the IPv4 plan's third octet, written as is
# (198.19.16.10 -> 2001:db8:19:16::10), so the two planes read alike.
CUSTOMER_PREFIX6 = "2001:db8:a::/48"  # the customer's own public (PI) prefix
BRANCH_PREFIX6 = "2001:db8:a:1000::/52"  # the branch's part of it
DC_PREFIX6 = "2001:db8:a:2000::/52"  # the datacenter's part of it
CUSTOMER_INTERNAL6 = "2001:db8:f::/48"  # router links inside the customer, never advertised
PEERING_BLOCK6 = "2001:db8:e::/48"  # ExpressRoute Microsoft peering /126s (customer-owned)
INTERNET6 = "2001:db8:18::/48"  # "the internet": ISPs, transit, public DNS, a third-party CDN
ISP1_BLOCK6 = "2001:db8:18:100::/56"
ISP2_BLOCK6 = "2001:db8:18:200::/56"
MICROSOFT_AGGREGATE6 = "2001:db8:19::/48"  # "Microsoft"
CDN_PREFIX6 = "2001:db8:19:128::/64"
EXT_CDN_PREFIX6 = "2001:db8:18:64::/62"
EXT_CDN_ADDRESS6 = "2001:db8:18:65::10"
DNS_PUBLIC6 = "2001:db8:18:53::35"  # the public resolver's link address (host 53)
DNS_BAD_PREFIX6 = "2001:db8:18:66::/64"  # routed to the DNS host (a lo address is no neighbour)
DNS_BAD6 = "2001:db8:18:66::66"
DNS_SPLIT6 = "2001:db8:a:2053::35"
CLOSED_ADDRESS6 = "2001:db8:19:16::250"
FILTERED_ADDRESS6 = "2001:db8:19:16::251"


def mirror6(v4: str) -> str:
    """The IPv6 twin of a 198.18/15 address or /24: 198.19.16.10 -> 2001:db8:19:16::10."""
    if "/" in v4:
        a, b, c, _ = v4.split("/")[0].split(".")
        return f"2001:db8:{b}:{c}::/64"
    a, b, c, d = v4.split(".")
    return f"2001:db8:{b}:{c}::{d}"


# What Microsoft advertises over the circuit's IPv6 Microsoft peering: the same
# services as IPv4 (the Front Door / CDN block never).
ER_RECEIVED_PREFIXES6: tuple[str, ...] = tuple(mirror6(p) for p in ER_RECEIVED_PREFIXES)
# Routed by the Microsoft core to the service host: the service blocks (an
# aggregate would also cover the VNet, :32).
SERVICE_PREFIXES6: tuple[str, ...] = tuple(
    mirror6(p) for p in ER_RECEIVED_PREFIXES if p != "198.19.32.0/24"
)
SERVICE_BLOCKS6: dict[str, tuple[str, str]] = {
    mirror6(p): tag for p, tag in _SERVICE_BLOCKS.items()
}

# fmt: off
_TARGETS: tuple[Target, ...] = (
    Target("make.powerapps.com", "198.19.16.10", "service"),
    Target("apps.powerapps.com", "198.19.16.11", "service"),
    Target("create.powerapps.com", "198.19.16.12", "service"),
    Target("make.powerautomate.com", "198.19.16.13", "service",
           cname_chain=("flow-weu.cloudapp.azure.com",)),
    Target("flow.microsoft.com", "198.19.16.14", "service"),
    Target("make.powerpages.microsoft.com", "198.19.16.15", "service"),
    Target("admin.powerplatform.microsoft.com", "198.19.16.16", "service"),
    Target("copilotstudio.microsoft.com", "198.19.16.17", "service"),
    Target("app.powerbi.com", "198.19.16.18", "service"),
    Target("contoso.crm4.dynamics.com", "198.19.16.19", "service"),
    Target("fabrikam.crm4.dynamics.com", "198.19.16.20", "service"),
    Target("api.flow.microsoft.com", "198.19.16.30", "api"),
    Target("emea.api.flow.microsoft.com", "198.19.16.31", "api"),
    Target("api.bap.microsoft.com", "198.19.16.32", "api"),
    Target("europe.api.bap.microsoft.com", "198.19.16.33", "api"),
    Target("api.powerplatform.com", "198.19.16.34", "api"),
    Target("api.powerapps.com", "198.19.16.35", "api"),
    Target("service.powerapps.com", "198.19.16.36", "api"),
    Target("contoso.api.crm4.dynamics.com", "198.19.16.37", "api"),
    Target("api.powerbi.com", "198.19.16.38", "api"),
    Target("emea.gateway.prod.island.powerapps.com", "198.19.16.39", "api"),
    Target("northeurope.api.powerplatform.com", "198.19.17.10", "api", region="northeurope"),
    Target("europe-002.azure-apim.net", "198.19.18.10", "api"),
    Target("login.microsoftonline.com", "198.19.20.10", "auth", region=""),
    Target("login.windows.net", "198.19.20.11", "auth", region=""),
    Target("graph.microsoft.com", "198.19.20.12", "api", region=""),
    Target("management.azure.com", "198.19.20.13", "api", region=""),
    Target("dc.services.visualstudio.com", "198.19.24.10", "telemetry"),
    Target("browser.events.data.microsoft.com", "198.19.24.11", "telemetry"),
    Target("westeurope.livediagnostics.monitor.azure.com", "198.19.24.12", "telemetry"),
    # CDN: Front Door addresses, reachable only over the internet.
    Target("content.powerapps.com", "198.19.128.10", "cdn", region="",
           cname_chain=("content-powerapps.azureedge.net", "content-powerapps.afd.azureedge.net")),
    Target("res.cdn.office.net", "198.19.128.11", "cdn", region="",
           cname_chain=("res-cdn-office.azurefd.net",)),
    Target("static.powerapps.com", "198.19.128.12", "cdn", region="",
           cname_chain=("static-powerapps.azureedge.net",)),
    # Traffic Manager only answers DNS: the endpoint it hands out is an
    # ordinary regional address, advertised over ExpressRoute.
    Target("global.api.powerplatform.com", "198.19.16.40", "api",
           cname_chain=("global-api-powerplatform.trafficmanager.net",
                        "weu.api.powerplatform.com")),
    # A CDN that is not Microsoft's (Akamai-like): its CNAME is on no suffix
    # list and its address in no service tag; it lives on the internet.
    Target("static.powerpages.microsoft.com", "198.18.65.10", "cdn", region="",
           cname_chain=("static.powerpages.microsoft.com.edgekey.net",
                        "e7035.dscb.akamaiedge.net")),
)
# fmt: on
# Every name is dual-stack: its AAAA record mirrors its A record.
_TARGETS = tuple(replace(t, address6=mirror6(t.address)) for t in _TARGETS)

NODES: tuple[Node, ...] = (
    Node("branch", "agent", "branch office host (agent)", agent=True),
    Node("wan", "router", "branch WAN router", forwarding=True),
    Node(
        "dccore",
        "router",
        "datacenter core router + stateful firewall (agent)",
        forwarding=True,
        agent=True,
    ),
    Node("dchost", "agent", "datacenter host (agent)", agent=True),
    Node("dcdns", "server", "datacenter split-horizon DNS resolver"),
    Node(
        "ce1",
        "router",
        "ExpressRoute circuit 1 CE router (ER NAT)",
        forwarding=True,
        loopbacks=("203.0.113.10", "203.0.113.11"),
    ),
    # An MSEE pair terminates many circuits (a VLAN each): circuit 1's MSEEs
    # also terminate the IP VPN provider's circuit 3.
    Node("msee1p", "router", "circuit 1 (and 3) primary MSEE", forwarding=True),
    Node("msee1s", "router", "circuit 1 (and 3) secondary MSEE", forwarding=True),
    Node(
        "ce2",
        "router",
        "ExpressRoute circuit 2 CE router (ER NAT)",
        forwarding=True,
        loopbacks=("203.0.113.26", "203.0.113.27"),
    ),
    Node("msee2", "router", "circuit 2 MSEE", forwarding=True),
    Node(
        "inet",
        "router",
        "customer internet edge (internet NAT)",
        forwarding=True,
        loopbacks=("198.51.100.10", "198.51.100.11"),
    ),
    # The IP VPN provider (scenario er-ipvpn): a PE per customer site and a P
    # router between them; the PE at the ExpressRoute location holds the
    # customer side of circuit 3's peering /30s and NATs to circuit 3's pool.
    Node("pe1", "router", "IP VPN provider PE at the branch", forwarding=True),
    Node("p1", "router", "IP VPN provider P (core) router", forwarding=True),
    Node(
        "pe2",
        "router",
        "IP VPN provider PE at the ExpressRoute location (circuit 3's customer side, NAT)",
        forwarding=True,
        loopbacks=("203.0.113.42", "203.0.113.43"),
    ),
    Node("isp1", "router", "ISP 1 router (ECMP member)", forwarding=True),
    Node("isp2", "router", "ISP 2 router (ECMP member)", forwarding=True),
    Node("silent", "router", "transit hop that never sends ICMP time-exceeded", forwarding=True),
    Node("msedge", "router", "Microsoft internet edge", forwarding=True),
    Node("mscore", "router", "Microsoft core", forwarding=True),
    Node(
        "svc",
        "server",
        "Power Platform service host (TLS 443 on every service address)",
        loopbacks=tuple(t.address for t in _TARGETS if t.role != "cdn")
        + (CLOSED_ADDRESS, FILTERED_ADDRESS),
        loopbacks6=tuple(t.address6 for t in _TARGETS if t.role != "cdn")
        + (CLOSED_ADDRESS6, FILTERED_ADDRESS6),
    ),
    Node(
        "cdn",
        "server",
        "CDN / Front Door host (internet only)",
        loopbacks=tuple(
            t.address for t in _TARGETS if t.role == "cdn" and t.address != EXT_CDN_ADDRESS
        ),
        loopbacks6=tuple(
            t.address6 for t in _TARGETS if t.role == "cdn" and t.address != EXT_CDN_ADDRESS
        ),
    ),
    Node(
        "extcdn",
        "server",
        "third-party CDN edge (Akamai-like; internet only, outside Microsoft)",
        loopbacks=(EXT_CDN_ADDRESS,),
        loopbacks6=(EXT_CDN_ADDRESS6,),
    ),
    Node(
        "dns",
        "server",
        "public DNS (public + misbehaving resolver)",
        loopbacks=(DNS_BAD,),
        loopbacks6=(DNS_BAD6,),
    ),
    Node("azure", "agent", "azure-side host for reverse probes (agent)", agent=True),
    Node("mgmt", "bridge", "management bridge (off every measured path)"),
    Node("collector", "host", "collector host on the management network"),
)
NODE_KEYS = tuple(n.key for n in NODES)
AGENT_NODES = tuple(n.key for n in NODES if n.agent)

LINKS: tuple[Link, ...] = (
    # IPv6: customer LANs from its public prefix, router links from its internal /48.
    Link("wan", "branch", "10.10.1.0/24", 1, 10, subnet6="2001:db8:a:1010::/64"),
    Link("wan", "dccore", "10.255.0.0/30", 1, 2, subnet6="2001:db8:f:0::/64"),
    Link("dccore", "dchost", "10.20.0.0/24", 1, 10, subnet6="2001:db8:a:2020::/64"),
    Link("dccore", "dcdns", "10.20.53.0/24", 1, 53, subnet6="2001:db8:a:2053::/64"),
    Link("dccore", "ce1", "10.255.1.0/30", 1, 2, subnet6="2001:db8:f:1::/64"),
    Link("dccore", "ce2", "10.255.2.0/30", 1, 2, subnet6="2001:db8:f:2::/64"),
    Link("dccore", "inet", "10.255.3.0/30", 1, 2, subnet6="2001:db8:f:3::/64"),
    # ExpressRoute peering /30s: CE is the first usable address, MSEE the second;
    # the /126s the same way (CE ::1, MSEE ::2), as Azure assigns them.
    Link("ce1", "msee1p", "192.0.2.0/30", 1, 2, subnet6="2001:db8:e::/126"),
    Link("ce1", "msee1s", "192.0.2.4/30", 1, 2, subnet6="2001:db8:e::4/126"),
    Link("ce2", "msee2", "192.0.2.8/30", 1, 2, subnet6="2001:db8:e::8/126"),
    Link("msedge", "mscore", "198.19.0.0/30", 1, 2, subnet6="2001:db8:19::/126"),
    Link("msee1p", "mscore", "198.19.0.4/30", 1, 2, subnet6="2001:db8:19::4/126"),
    Link("msee1s", "mscore", "198.19.0.8/30", 1, 2, subnet6="2001:db8:19::8/126"),
    Link("msee2", "mscore", "198.19.0.12/30", 1, 2, subnet6="2001:db8:19::c/126"),
    Link("mscore", "svc", "198.19.0.16/30", 1, 2, subnet6="2001:db8:19::10/126"),
    Link("msedge", "cdn", "198.19.0.20/30", 1, 2, subnet6="2001:db8:19::14/126"),
    Link("mscore", "azure", "198.19.32.0/24", 1, 10, subnet6="2001:db8:19:32::/64"),
    # The ISP owns the access /30s: ISP first, customer edge second.
    Link("isp1", "inet", "198.18.16.0/30", 1, 2, subnet6="2001:db8:18:100::/64"),
    Link("isp2", "inet", "198.18.32.0/30", 1, 2, subnet6="2001:db8:18:200::/64"),
    Link("isp1", "silent", "198.18.16.4/30", 1, 2, subnet6="2001:db8:18:101::/64"),
    Link("isp2", "silent", "198.18.32.4/30", 1, 2, subnet6="2001:db8:18:201::/64"),
    Link("silent", "msedge", "198.18.48.0/30", 1, 2, subnet6="2001:db8:18:300::/64"),
    Link("silent", "dns", "198.18.53.0/24", 1, 53, subnet6="2001:db8:18:53::/64"),
    Link("silent", "extcdn", "198.18.64.0/30", 1, 2, subnet6="2001:db8:18:64::/64"),
    # The IP VPN provider (AS64504): access links (provider first, customer
    # second, as the ISPs number theirs), its core, and circuit 3's peering
    # /30s (/126s) with the provider's PE at .1, the MSEE at .2.
    Link("pe1", "wan", "198.18.80.0/30", 1, 2, subnet6="2001:db8:18:400::/64"),
    Link("pe1", "p1", "198.18.80.4/30", 1, 2, subnet6="2001:db8:18:401::/64"),
    Link("p1", "pe2", "198.18.80.8/30", 1, 2, subnet6="2001:db8:18:402::/64"),
    Link("pe2", "dccore", IPVPN_DC_ACCESS, 1, 2, subnet6="2001:db8:18:403::/64"),
    Link("pe2", "msee1p", "192.0.2.16/30", 1, 2, subnet6="2001:db8:e::10/126"),
    Link("pe2", "msee1s", "192.0.2.20/30", 1, 2, subnet6="2001:db8:e::14/126"),
)
LINKS_BY_KEY = {link.key: link for link in LINKS}

# The management network: one bridge in its own namespace, a port per agent
# and the collector.  Agents get only the connected /24 on it (no gateway), so
# reports can never leak onto a measured path and probes never use it.
MGMT_ADDRESSES: dict[str, str] = {
    "collector": "172.30.0.1",
    "branch": "172.30.0.10",
    "dchost": "172.30.0.11",
    "dccore": "172.30.0.12",
    "azure": "172.30.0.13",
}
MGMT_IFNAME = "mgmt0"

SITES: dict[str, str] = {"branch": "branch", "dchost": "dc", "dccore": "dc", "azure": "azure"}

CIRCUITS: tuple[Circuit, ...] = (
    Circuit(
        "ams-er-1",
        "Amsterdam",
        "Standard",
        "ce1",
        "ce1-msee1p",
        "ce1-msee1s",
        ER_NAT_POOL_1,
        {"branch": "203.0.113.10", "dc": "203.0.113.11"},
    ),
    Circuit(
        "dub-er-2",
        "Dublin",
        "Standard",
        "ce2",
        "ce2-msee2",
        None,
        ER_NAT_POOL_2,
        {"branch": "203.0.113.26", "dc": "203.0.113.27"},
    ),
)
# Circuits a connectivity provider terminates on its own PE (layer-3 model):
# in the lab only the IP VPN design (scenario er-ipvpn) routes over them.
PROVIDER_CIRCUITS: tuple[Circuit, ...] = (
    Circuit(
        "ams-vpn-3",
        "Amsterdam",
        "Standard",
        "pe2",
        "pe2-msee1p",
        "pe2-msee1s",
        ER_NAT_POOL_3,
        {"branch": "203.0.113.42", "dc": "203.0.113.43"},
        provider="IP VPN provider (AS64504)",
    ),
)
ALL_CIRCUITS: tuple[Circuit, ...] = CIRCUITS + PROVIDER_CIRCUITS
INTERNET_NAT_ADDRESSES = {"branch": "198.51.100.10", "dc": "198.51.100.11"}

SOURCE_NATS: tuple[SourceNat, ...] = (
    SourceNat("ce1", ("msee1p", "msee1s"), BRANCH_PREFIX, "203.0.113.10"),
    SourceNat("ce1", ("msee1p", "msee1s"), CUSTOMER_INTERNAL, "203.0.113.11"),
    SourceNat("ce2", ("msee2",), BRANCH_PREFIX, "203.0.113.26"),
    SourceNat("ce2", ("msee2",), CUSTOMER_INTERNAL, "203.0.113.27"),
    # The provider's managed NAT translates everything from the customer's VPN
    # (the datacenter core's own access address too) before the circuit.
    SourceNat("pe2", ("msee1p", "msee1s"), BRANCH_PREFIX, "203.0.113.42"),
    SourceNat("pe2", ("msee1p", "msee1s"), CUSTOMER_INTERNAL, "203.0.113.43"),
    SourceNat("pe2", ("msee1p", "msee1s"), IPVPN_DC_ACCESS, "203.0.113.43"),
    SourceNat("inet", ("isp1", "isp2"), BRANCH_PREFIX, "198.51.100.10"),
    SourceNat("inet", ("isp1", "isp2"), CUSTOMER_INTERNAL, "198.51.100.11"),
)
FIREWALL = StatefulFirewall(
    "dccore",
    # The IP VPN (pe2) is the WAN in the design er-ipvpn: branches start flows
    # from it, and the datacenter reaches circuit 3 through it.
    inside_peers=("wan", "dchost", "dcdns", "pe2"),
    zones={
        "wan": "inside",
        "dchost": "inside",
        "dcdns": "inside",
        "ce1": "er-1",
        "ce2": "er-2",
        "inet": "internet",
        "pe2": "ipvpn",
    },
)
# The internet edge filters IPv6 statefully (IPv4 is covered by its NAT): only
# flows from inside may start, replies come back as the flow's state allows.
INTERNET_FIREWALL6 = StatefulFirewall("inet", inside_peers=("dccore",), family=6)
STATEFUL_FIREWALLS = (FIREWALL, INTERNET_FIREWALL6)
SILENT_NODES = ("silent",)

# Reverse DNS: names in the style real networks use.
PTR_NAMES: dict[str, str] = {
    "10.10.1.1": "vl100.br-rtr1.branch1.corp.contoso.example",
    "10.255.0.2": "te0-0-1.dc-core1.ams.corp.contoso.example",
    "10.255.0.1": "te0-0-0.br-rtr1.branch1.corp.contoso.example",
    "10.20.0.1": "vl20.dc-core1.ams.corp.contoso.example",
    "10.20.53.1": "vl53.dc-core1.ams.corp.contoso.example",
    "10.255.1.1": "te0-0-2.dc-core1.ams.corp.contoso.example",
    "10.255.2.1": "te0-0-3.dc-core1.ams.corp.contoso.example",
    "10.255.3.1": "te0-0-4.dc-core1.ams.corp.contoso.example",
    "10.255.1.2": "te0-0-0.er-ce1.ams.corp.contoso.example",
    "10.255.2.2": "te0-0-0.er-ce2.dub.corp.contoso.example",
    "10.255.3.2": "te0-0-0.inet-edge1.ams.corp.contoso.example",
    "192.0.2.1": "te0-1-0.er-ce1.ams.corp.contoso.example",
    "192.0.2.5": "te0-1-1.er-ce1.ams.corp.contoso.example",
    "192.0.2.9": "te0-1-0.er-ce2.dub.corp.contoso.example",
    "198.19.0.5": "ae10-0.ams-06gmr-msee-1a.ntwk.msn.net",
    "198.19.0.9": "ae10-0.ams-06gmr-msee-1b.ntwk.msn.net",
    "198.19.0.13": "ae10-0.dub-07gmr-msee-1a.ntwk.msn.net",
    "198.19.0.1": "ae22-0.ams-96cbe-1a.ntwk.msn.net",
    "198.19.0.2": "ae21-0.ams-96cbe-1b.ntwk.msn.net",
    "198.19.0.6": "ae23-0.ams-96cbe-1b.ntwk.msn.net",
    "198.19.0.10": "ae24-0.ams-96cbe-1b.ntwk.msn.net",
    "198.19.0.14": "ae25-0.ams-96cbe-1b.ntwk.msn.net",
    "198.19.0.17": "ae30-0.ams-96cbe-1b.ntwk.msn.net",
    "198.19.0.21": "ae31-0.ams-96cbe-1a.ntwk.msn.net",
    "198.19.32.1": "ae40-0.ams-96cbe-1b.ntwk.msn.net",
    "198.18.48.2": "ae12-0.ams-96cbe-1a.ntwk.msn.net",
    "198.18.16.1": "xe-0-0-1.cr1.ams.isp1.example.net",
    "198.18.16.5": "xe-0-0-2.cr1.ams.isp1.example.net",
    "198.18.16.2": "contoso-gw.ams.isp1.example.net",
    "198.18.32.1": "ae1-101.edge2.ams.isp2.example.net",
    "198.18.32.5": "ae2-0.edge2.ams.isp2.example.net",
    "198.18.32.2": "contoso-gw.ams.isp2.example.net",
    "198.18.16.6": "be10.core1.ams.transit3.example.net",
    "198.18.32.6": "be11.core1.ams.transit3.example.net",
    "198.18.48.1": "be12.core1.ams.transit3.example.net",
    "198.18.53.1": "be53.core1.ams.transit3.example.net",
    "198.18.53.53": "resolver1.dns.example.net",
    "198.18.53.66": "resolver2.dns.example.net",
    "198.18.64.1": "be64.core1.ams.transit3.example.net",
    "198.18.64.2": "ae0.edge1.ams.edgecdn.example.net",
    "198.18.65.10": "a198-18-65-10.deploy.static.edgecdn.example.net",
    # The IP VPN provider's routers (the branch at Utrecht, the DC at Amsterdam).
    "198.18.80.1": "ge-0-0-1.pe1.utr.ipvpn.example.net",
    "198.18.80.2": "contoso-branch1.utr.ipvpn.example.net",
    "198.18.80.5": "ae1-0.pe1.utr.ipvpn.example.net",
    "198.18.80.6": "ae1-0.p1.ams.ipvpn.example.net",
    "198.18.80.9": "ae2-0.p1.ams.ipvpn.example.net",
    "198.18.80.10": "ae2-0.pe2.ams.ipvpn.example.net",
    "198.18.80.13": "ge-0-0-3.pe2.ams.ipvpn.example.net",
    "198.18.80.14": "contoso-dc1.ams.ipvpn.example.net",
    "192.0.2.17": "xe-0-1-0-100.pe2.ams.ipvpn.example.net",
    "192.0.2.21": "xe-0-1-1-100.pe2.ams.ipvpn.example.net",
}

# IPv6 router interfaces carry the same names as their IPv4 twins.
PTR_NAMES.update(
    {
        link.address6(end): PTR_NAMES[link.address(end)]
        for link in LINKS
        for end in (link.a, link.b)
        if link.subnet6 and link.address(end) in PTR_NAMES
    }
)
PTR_NAMES[DNS_BAD6] = PTR_NAMES[DNS_BAD]
PTR_NAMES[EXT_CDN_ADDRESS6] = "a2001-db8-18-65--10.deploy.static.edgecdn.example.net"

# Origin ASNs for the Team-Cymru-style zone: longest prefix wins.
# (prefix, asn, country, registry, allocated)
ASN_TABLE: tuple[tuple[str, int, str, str, str], ...] = (
    ("198.19.0.0/16", 8075, "US", "arin", "1997-03-07"),
    # MSEE interfaces (peering /30s and their core side) originate in 12076.
    ("192.0.2.0/30", 12076, "US", "arin", "2012-07-18"),
    ("192.0.2.4/30", 12076, "US", "arin", "2012-07-18"),
    ("192.0.2.8/30", 12076, "US", "arin", "2012-07-18"),
    ("192.0.2.16/30", 12076, "US", "arin", "2012-07-18"),
    ("192.0.2.20/30", 12076, "US", "arin", "2012-07-18"),
    ("198.19.0.4/30", 12076, "US", "arin", "2012-07-18"),
    ("198.19.0.8/30", 12076, "US", "arin", "2012-07-18"),
    ("198.19.0.12/30", 12076, "US", "arin", "2012-07-18"),
    ("192.0.2.0/24", 64496, "NL", "ripencc", "2009-04-01"),
    ("198.51.100.0/24", 64496, "NL", "ripencc", "2009-04-01"),
    ("203.0.113.0/24", 64496, "NL", "ripencc", "2009-04-01"),
    ("198.18.16.0/20", 64501, "NL", "ripencc", "2001-09-12"),
    ("198.18.32.0/20", 64502, "NL", "ripencc", "2003-02-20"),
    ("198.18.48.0/22", 64503, "NL", "ripencc", "1999-11-05"),
    ("198.18.53.0/24", 64511, "US", "arin", "2014-06-30"),
    ("198.18.64.0/22", 64520, "US", "arin", "2005-01-12"),
    (IPVPN_PROVIDER_BLOCK, 64504, "NL", "ripencc", "2002-05-14"),
    # IPv6 (origin6.asn.cymru.com): the same owners.
    ("2001:db8:19::/48", 8075, "US", "arin", "2006-05-11"),
    ("2001:db8:e::/126", 12076, "US", "arin", "2012-07-18"),
    ("2001:db8:e::4/126", 12076, "US", "arin", "2012-07-18"),
    ("2001:db8:e::8/126", 12076, "US", "arin", "2012-07-18"),
    ("2001:db8:e::10/126", 12076, "US", "arin", "2012-07-18"),
    ("2001:db8:e::14/126", 12076, "US", "arin", "2012-07-18"),
    ("2001:db8:19::4/126", 12076, "US", "arin", "2012-07-18"),
    ("2001:db8:19::8/126", 12076, "US", "arin", "2012-07-18"),
    ("2001:db8:19::c/126", 12076, "US", "arin", "2012-07-18"),
    ("2001:db8:a::/48", 64496, "NL", "ripencc", "2010-06-01"),
    ("2001:db8:e::/48", 64496, "NL", "ripencc", "2010-06-01"),
    ("2001:db8:18:100::/56", 64501, "NL", "ripencc", "2004-02-10"),
    ("2001:db8:18:200::/56", 64502, "NL", "ripencc", "2005-08-22"),
    ("2001:db8:18:300::/56", 64503, "NL", "ripencc", "2003-12-01"),
    ("2001:db8:18:53::/64", 64511, "US", "arin", "2014-06-30"),
    ("2001:db8:18:66::/64", 64511, "US", "arin", "2014-06-30"),
    ("2001:db8:18:64::/62", 64520, "US", "arin", "2008-03-03"),
    (IPVPN_PROVIDER_BLOCK6, 64504, "NL", "ripencc", "2006-09-01"),
)
ASN_NAMES: dict[int, str] = {
    8075: "MICROSOFT-CORP-MSN-AS-BLOCK, US",
    12076: "MICROSOFT-CORP-AS, US",
    64496: "CONTOSO-AS, NL",
    64501: "ISP1-AS, NL",
    64502: "ISP2-AS, NL",
    64503: "TRANSIT3-AS, NL",
    64504: "IPVPN-PROVIDER-AS, NL",
    64511: "PUBLICDNS-AS, US",
    64520: "EDGECDN-AS, US",
}


def targets() -> tuple[Target, ...]:
    return _TARGETS


def addresses_of_target(t: Target) -> tuple[str, ...]:
    return (t.address, t.address6) if t.address6 else (t.address,)


def service_blocks() -> dict[str, tuple[str, str]]:
    return dict(_SERVICE_BLOCKS)


def links_of(node: str) -> list[Link]:
    return [link for link in LINKS if node in (link.a, link.b)]


def circuit(name: str) -> Circuit:
    for c in ALL_CIRCUITS:
        if c.name == name:
            return c
    raise KeyError(f"unknown circuit {name!r}; circuits: {', '.join(c.name for c in ALL_CIRCUITS)}")


def link_between(a: str, b: str) -> Link:
    for link in LINKS:
        if {link.a, link.b} == {a, b}:
            return link
    raise KeyError(f"no link between {a} and {b}")


def node(key: str) -> Node:
    for n in NODES:
        if n.key == key:
            return n
    raise KeyError(f"unknown lab node {key!r}; nodes: {', '.join(NODE_KEYS)}")


def addresses_of(key: str) -> list[str]:
    """Every address a node owns (interfaces, loopbacks, management)."""
    out = [link.address(key) for link in links_of(key)]
    out += list(node(key).loopbacks)
    out += [link.address6(key) for link in links_of(key) if link.subnet6]
    out += list(node(key).loopbacks6)
    if key in MGMT_ADDRESSES:
        out.append(MGMT_ADDRESSES[key])
    return out


def owner_of(address: str) -> str | None:
    """The node that owns an address on the measured network (not mgmt)."""
    family = ipaddress.ip_address(address).version
    canonical = str(ipaddress.ip_address(address))
    for n in NODES:
        if canonical in (n.loopbacks if family == 4 else n.loopbacks6):
            return n.key
    for link in LINKS:
        if family == 6 and not link.subnet6:
            continue
        for end in (link.a, link.b):
            if link.address(end, family) == canonical:
                return end
    return None


def namespace(prefix: str, key: str) -> str:
    return f"{prefix}-{key}"
