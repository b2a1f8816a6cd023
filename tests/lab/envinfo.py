"""`Lab.env()`: every address and name a test or a user needs, JSON-able."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import dnsdata, plan, scenarios, state

if TYPE_CHECKING:
    from .lab import Lab


def _interfaces(node: str) -> list[dict]:
    out = [
        {
            "ifname": link.ifname(node),
            "address": link.address(node),
            "prefixlen": link.prefixlen,
            "peer": link.peer(node),
            "link": link.key,
        }
        for link in plan.links_of(node)
    ]
    out += [
        {"ifname": "lo", "address": a, "prefixlen": 32, "peer": None, "link": None}
        for a in plan.node(node).loopbacks
    ]
    if node in plan.MGMT_ADDRESSES:
        out.append(
            {
                "ifname": plan.MGMT_IFNAME,
                "address": plan.MGMT_ADDRESSES[node],
                "prefixlen": 24,
                "peer": "mgmt",
                "link": "mgmt",
            }
        )
    return out


def _primary_address(node: str) -> str:
    links = plan.links_of(node)
    return links[0].address(node) if links else plan.MGMT_ADDRESSES.get(node, "")


def _circuits(s: scenarios.Scenario) -> list[dict]:
    """The circuits of the scenario's design (the sites' facts list the same)."""
    out = []
    for c in (plan.circuit(name) for name in s.circuits):
        pri = plan.LINKS_BY_KEY[c.primary_link]
        sec = plan.LINKS_BY_KEY[c.secondary_link] if c.secondary_link else None
        inside = plan.link_between(c.ce, "dccore").address(c.ce)
        ce = {"primary": pri.address(c.ce), "inside": inside}
        msee = {"primary": pri.address(pri.peer(c.ce))}
        msee_nodes = {"primary": pri.peer(c.ce)}
        if sec:
            ce["secondary"] = sec.address(c.ce)
            msee["secondary"] = sec.address(sec.peer(c.ce))
            msee_nodes["secondary"] = sec.peer(c.ce)
        msee_core = {
            role: plan.link_between(n, "mscore").address(n) for role, n in msee_nodes.items()
        }
        links = [k for k in (c.primary_link, c.secondary_link) if k]
        out.append(
            {
                "name": c.name,
                "location": c.location,
                "sku": c.sku,
                "ce": c.ce,
                # A connectivity provider's PE holds the customer side (layer-3 model).
                "provider": c.provider or None,
                "primary_subnet": pri.subnet,
                "secondary_subnet": sec.subnet if sec else None,
                "msee_addresses": msee,
                "msee_core_addresses": msee_core,
                "msee_nodes": msee_nodes,
                "ce_addresses": ce,
                "advertised_prefixes": list(s.advertised.get(c.name, ())),
                # IPv6 Microsoft peering: the /126s, the MSEE at ::2 of each.
                "peering_subnets_v6": {
                    role: plan.link_between(c.ce, n).subnet6 for role, n in msee_nodes.items()
                },
                "msee_addresses_v6": {
                    role: plan.link_between(c.ce, n).address6(n) for role, n in msee_nodes.items()
                },
                "advertised_prefixes_v6": list(s.advertised6.get(c.name, ())),
                "received_prefixes": list(plan.ER_RECEIVED_PREFIXES),
                "nat_pool": c.nat_pool,
                "nat_addresses": dict(c.nat_addresses),
                "links_up": {
                    ("primary" if k == c.primary_link else "secondary"): k not in s.links_down
                    for k in links
                },
                # How the links carry flows by design (the sites' `links` fact).
                "links": s.link_mode.get(c.name, "active-standby"),
                # Links shut at one end only: role -> the node whose port is shut.
                "shut_at": {
                    ("primary" if k == c.primary_link else "secondary"): s.shut_at[k]
                    for k in links
                    if k in s.shut_at
                },
                "asn": 12076,
            }
        )
    return out


def describe(lab: Lab) -> dict:
    st = state.read_state(lab.prefix)
    scenario_name = st.get("scenario") or scenarios.DEFAULT_SCENARIO
    s = scenarios.get(scenario_name)
    sd = state.state_dir(lab.prefix)
    inet_hops = [a for a in plan.addresses_of("inet") if a not in plan.node("inet").loopbacks]
    return {
        "prefix": lab.prefix,
        "up": lab.is_up(),
        "state_dir": str(sd),
        "scenario": scenario_name,
        "scenarios": {k: v.summary for k, v in scenarios.SCENARIOS.items()},
        "rate_limit": st.get("rate_limit", lab.rate_limit),
        "ecmp": st.get("ecmp", lab.ecmp),
        "namespaces": {n: plan.namespace(lab.prefix, n) for n in plan.NODE_KEYS},
        "addresses": {n: plan.addresses_of(n) for n in plan.NODE_KEYS},
        "nodes": {
            n.key: {
                "namespace": plan.namespace(lab.prefix, n.key),
                "role": n.role,
                "description": n.description,
                "interfaces": _interfaces(n.key),
            }
            for n in plan.NODES
        },
        "agents": {
            n: {
                "namespace": plan.namespace(lab.prefix, n),
                "site": plan.SITES[n],
                "address": _primary_address(n),
                "mgmt_address": plan.MGMT_ADDRESSES[n],
            }
            for n in plan.AGENT_NODES
        },
        "collector": {
            "node": "collector",
            "namespace": plan.namespace(lab.prefix, "collector"),
            "mgmt_address": plan.MGMT_ADDRESSES["collector"],
        },
        "mgmt": {
            "namespace": plan.namespace(lab.prefix, "mgmt"),
            "subnet": plan.MGMT_SUBNET,
            "ifname": plan.MGMT_IFNAME,
            "addresses": dict(plan.MGMT_ADDRESSES),
        },
        "dns_servers": {
            "public": {
                "address": plan.DNS_PUBLIC,
                "node": "dns",
                "description": "public resolver: catalog, CNAME chains, PTR, origin.asn.cymru.com",
            },
            "split": {
                "address": plan.DNS_SPLIT,
                "node": "dcdns",
                "description": "datacenter resolver, split horizon",
                "overrides": dict(dnsdata.SPLIT_OVERRIDES),
            },
            "bad": {
                "address": plan.DNS_BAD,
                "node": "dns",
                "description": "misbehaving resolver: trigger names, or a mode for every name",
                "triggers": dict(dnsdata.TRIGGERS),
                "modes": dict(dnsdata.MODES),
                "mode_file": str(sd / "dns-bad.mode"),
            },
        },
        "targets": [
            {
                "name": t.name,
                "address": t.address,
                "address6": t.address6,
                "role": t.role,
                "port": t.port,
                "region": t.region,
                "cname_chain": list(t.cname_chain),
            }
            for t in plan.targets()
        ],
        "probe_addresses": {
            "open": plan.targets()[0].address,
            "closed": plan.CLOSED_ADDRESS,
            "filtered": plan.FILTERED_ADDRESS,
        },
        "circuits": _circuits(s),
        "internet_edges": [
            {
                "name": "ams-inet",
                "node": "inet",
                "nat_prefix": plan.INTERNET_NAT_PREFIX,
                "nat_addresses": dict(plan.INTERNET_NAT_ADDRESSES),
                "hop_addresses": inet_hops,
                "isp_hop_addresses": [
                    plan.link_between(isp, "inet").address(isp) for isp in ("isp1", "isp2")
                ],
            }
        ],
        "er_nat_pool": {
            "prefix": plan.ER_NAT_POOL_1,
            "addresses": dict(plan.CIRCUITS[0].nat_addresses),
        },
        "silent_hop": {
            "node": "silent",
            "addresses": [
                plan.link_between("silent", isp).address("silent") for isp in ("isp1", "isp2")
            ],
        },
        "microsoft_hops": {n: plan.addresses_of(n) for n in ("msedge", "mscore")},
        "cdn_prefix": plan.CDN_PREFIX,
        "third_party_cdn": {
            "node": "extcdn",
            "prefix": plan.EXT_CDN_PREFIX,
            "address": plan.EXT_CDN_ADDRESS,
        },
        # MSEEs that drop about half of their time-exceeded in this scenario.
        "flaky_routers": list(s.flaky),
        "prefer": list(s.prefer),
        "service_tags_file": str(sd / "ServiceTags_Public_lab.json"),
        "tls": {"cert_file": str(sd / "tls" / "cert.pem"), "port": 443},
        "ptr_names": dict(plan.PTR_NAMES),
        # The IPv6 plane: routed only in the ipv6-* scenarios (docs/lab.md).
        "ipv6": {
            "routed": s.ipv6,
            "customer_prefix": plan.CUSTOMER_PREFIX6,
            "branch_prefix": plan.BRANCH_PREFIX6,
            "dc_prefix": plan.DC_PREFIX6,
            "er_egress": s.er_egress6,
            "received_prefixes": list(plan.ER_RECEIVED_PREFIXES6),
            "cdn_prefix": plan.CDN_PREFIX6,
            "dns_servers": {
                "public": plan.DNS_PUBLIC6,
                "bad": plan.DNS_BAD6,
                "split": plan.DNS_SPLIT6,
            },
            "agents": {
                n: plan.link_between(n, peer).address6(n)
                for n, peer in (("branch", "wan"), ("dchost", "dccore"), ("azure", "mscore"))
            },
        },
    }
