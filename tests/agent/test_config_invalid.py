"""One invalid config file each, with the exact message a user sees.

Files live in tests/agent/configs/invalid/; they are loaded by name from that
directory so the messages are what `erpath-agent check-config NAME` prints.
"""

from pathlib import Path

import pytest

from agent.config import ConfigError, load

INVALID = Path(__file__).parent / "configs" / "invalid"

EXPECTED = {
    "syntax_error.toml": "syntax_error.toml: TOML syntax error at line 2, column 8: Invalid value; "
    "fix the TOML there (strings in double quotes, [table], [[array of tables]])",
    "unknown_key.toml": 'unknown_key.toml: [probe] intervl_s: unknown key; did you mean "interval_s"?',
    "unknown_table.toml": "unknown_table.toml: [probes]: unknown table; did you mean [probe]?",
    "key_outside_table.toml": "key_outside_table.toml: site: keys belong in a table; put it under [agent] or [[target]]",
    "wrong_type.toml": 'wrong_type.toml: [probe] port = "443": must be an integer (no quotes), not a string',
    "bad_enum.toml": 'bad_enum.toml: [agent] role = "datacentre": must be one of "branch", "datacenter", '
    '"azure-side"; did you mean "datacenter"?',
    "subnet_not_30.toml": 'subnet_not_30.toml: [[circuit]] #1 (ams-1) primary_subnet = "203.0.113.0/29": must be a /30 '
    "(IPv4) or /126 (IPv6) peering subnet; the MSEE is the second usable address",
    "subnet_host_bits.toml": 'subnet_host_bits.toml: [[circuit]] #1 (ams-1) primary_subnet = "203.0.113.2/30": '
    "has host bits set; write 203.0.113.0/30",
    "subnet_mixed_family.toml": 'subnet_mixed_family.toml: [[circuit]] #1 (ams-1) secondary_subnet = "2001:db8::/126": '
    "is not the same IP family as primary_subnet (203.0.113.0/30); "
    "give both links' /30s (IPv4) or both /126s (IPv6)",
    "subnet_v6_not_126.toml": 'subnet_v6_not_126.toml: [[circuit]] #1 (ams-1) primary_subnet_v6 = "203.0.113.8/30": '
    'must be an IPv6 /126 peering subnet (e.g. "2001:db8:0:1::/126"); '
    "the link's IPv4 /30 goes in the key without _v6",
    "subnet_v6_without_secondary.toml": "subnet_v6_without_secondary.toml: [[circuit]] #1 (ams-1) "
    'primary_subnet_v6 = "2001:db8:0:1::/126": needs secondary_subnet_v6 too; '
    "give both links' IPv6 /126s (the MSEE is the second address)",
    "subnet_v6_beside_ipv6.toml": "subnet_v6_beside_ipv6.toml: [[circuit]] #1 (ams-v6) "
    'primary_subnet_v6 = "2001:db8:0:2::/126": primary_subnet (2001:db8:0:1::/126) is already IPv6; '
    "a dual-stack circuit writes its IPv4 /30s in primary_subnet / secondary_subnet "
    "and its /126s in the _v6 keys",
    "subnet_v6_overlap.toml": "subnet_v6_overlap.toml: [[circuit]] #1 (ams-1) "
    'secondary_subnet_v6 = "2001:db8:0:1::/126": overlaps [[circuit]] #1 (ams-1) '
    "primary_subnet_v6 2001:db8:0:1::/126; each peering link needs its own /30 (or /126)",
    "edge_source_prefix_v4.toml": "edge_source_prefix_v4.toml: [[internet_edge]] #1 (ams-inet) "
    'source_prefixes_v6[0] = "198.51.100.0/24": is not an IPv6 prefix; IPv4 leaves NATed: '
    "list the edge's NAT addresses in nat_addresses, and here the IPv6 prefixes the hosts' "
    'sources use, e.g. "2001:db8:100::/48"',
    "bad_addresses_mode.toml": 'bad_addresses_mode.toml: [probe] addresses = "ipv6": '
    'must be one of "preferred", "first", "all", "both"',
    "overlapping_subnets.toml": 'overlapping_subnets.toml: [[circuit]] #2 (fra-1) primary_subnet = "203.0.113.4/30": '
    "overlaps [[circuit]] #1 (ams-1) secondary_subnet 203.0.113.4/30; "
    "each peering link needs its own /30 (or /126)",
    "circuit_not_array.toml": "circuit_not_array.toml: [circuit]: must be an array of tables; "
    "write [[circuit]] before each circuit's keys",
    "circuit_missing_key.toml": "circuit_missing_key.toml: [[circuit]] #1 (ams-1): missing secondary_subnet; "
    'add secondary_subnet = "203.0.113.4/30"',
    "duplicate_circuit.toml": 'duplicate_circuit.toml: [[circuit]] #2 (ams-1) name = "ams-1": duplicate; '
    "circuit names must be unique (also used by [[circuit]] #1)",
    "duplicate_edge.toml": 'duplicate_edge.toml: [[internet_edge]] #2 (ams-inet) name = "ams-inet": duplicate; '
    "internet edge names must be unique (also used by [[internet_edge]] #1)",
    "duplicate_target.toml": "duplicate_target.toml: [[target]] #2 (Contoso.CRM4.dynamics.com.) "
    'name = "Contoso.CRM4.dynamics.com.": duplicate; '
    "target names must be unique (also used by [[target]] #1)",
    "bad_address.toml": 'bad_address.toml: [[internet_edge]] #1 (ams-inet) nat_addresses[1] = "198.51.100.300": '
    "is not an IP address; write one such as 192.0.2.10 or 2001:db8::10",
    "bad_prefix.toml": 'bad_prefix.toml: [[circuit]] #1 (ams-1) advertised_prefixes[0] = "192.0.2.0/33": '
    "is not an IP prefix; write one such as 198.51.100.0/24",
    "missing_tags_file.toml": 'missing_tags_file.toml: [service_tags] file = "ServiceTags_Public_20250101.json": '
    "no such file ({dir}/ServiceTags_Public_20250101.json); download "
    "ServiceTags_Public_*.json from Microsoft and point file at it "
    "(relative paths start at the config file's directory)",
    "bad_tags_file.toml": 'bad_tags_file.toml: [service_tags] file = "not-service-tags.json": '
    "'values' is empty: the file lists no service tags; "
    "point file at an unmodified ServiceTags_Public_*.json download",
    "interval_too_short.toml": "interval_too_short.toml: [probe] interval_s = 5: must be at least 10 seconds: "
    "probing more often only eats routers' ICMP rate limits",
    "jitter_not_below_interval.toml": "jitter_not_below_interval.toml: [probe] jitter_s = 30: must be less than interval_s (30); "
    "a few seconds spreads the agents' probes",
    "bad_resolver.toml": 'bad_resolver.toml: [dns] resolvers[1] = "dns.example.net": must be "system" or a '
    'resolver\'s IP address (optionally :port), e.g. "192.0.2.53" or "[2001:db8::53]:5353"',
    "wildcard_target.toml": 'wildcard_target.toml: [[target]] #1 (*.crm4.dynamics.com) name = "*.crm4.dynamics.com": '
    "is a wildcard, which cannot be probed; name one real host it covers, "
    'e.g. "contoso.crm4.dynamics.com"',
    "reverse_without_site.toml": 'reverse_without_site.toml: [[target]] #1 (ams-er-nat): role = "reverse" needs '
    'site = "<the site whose NAT address this is>"',
    "client_cert_without_key.toml": "client_cert_without_key.toml: [collector]: client_cert needs client_key too; "
    "give both for TLS client authentication, or neither",
    "bad_links.toml": 'bad_links.toml: [[circuit]] #1 (ams-1) links = "active-passive": must be one of '
    '"active-active", "active-standby"; did you mean "active-standby"?',
    "prefer_unknown_circuit.toml": 'prefer_unknown_circuit.toml: [site] prefer[1] = "dub2": '
    'is neither a [[circuit]] name nor "internet"; did you mean "dub-2"?',
    "target_prefer_unknown.toml": "target_prefer_unknown.toml: [[target]] #1 (login.microsoftonline.com) "
    'prefer[1] = "frankfurt": is neither a [[circuit]] name nor "internet"; use "ams-1", "internet"',
    "prefer_twice.toml": 'prefer_twice.toml: [site] prefer = ["internet", "internet"]: '
    'lists "internet" twice; keep one',
    "bad_community.toml": 'bad_community.toml: [[circuit]] #1 (ams-1) route_filter_communities[1] = "12076-51004": '
    'is not a BGP community; write ASN:value as Azure lists it, e.g. "12076:51002"',
    "communities_without_filter.toml": "communities_without_filter.toml: [[circuit]] #1 (ams-1) "
    'route_filter_communities = ["12076:51002"]: needs route_filter = "<the route filter\'s name>" too: '
    "the communities are what that filter allows",
    "community_not_in_file.toml": 'community_not_in_file.toml: [[circuit]] #1 (ams-1) route_filter_communities[1] = "12076:51099": '
    "is no community of communities-sample.json; check the value against "
    "`az network route-filter rule list-service-communities`",
    "missing_communities_file.toml": 'missing_communities_file.toml: [bgp_communities] file = "communities.json": '
    "no such file ({dir}/communities.json); save `az network route-filter rule "
    "list-service-communities -o json` there (or run erpath-agent communities update)",
    "bad_communities_file.toml": 'bad_communities_file.toml: [bgp_communities] file = "not-service-tags.json": '
    "is not a list of BGP service communities; save the output of "
    "`az network route-filter rule list-service-communities -o json`",
    "tags_url_without_file.toml": "tags_url_without_file.toml: [service_tags] "
    'url = "https://www.microsoft.com/en-us/download/details.aspx?id=56519": '
    'needs file = "<where the agent keeps the tags file>" too; the update writes there',
    "bad_peer_asn.toml": 'bad_peer_asn.toml: [[circuit]] #1 (ams-1) peer_asn = "64496": '
    "must be an integer (no quotes), not a string",
    "several_problems.toml": "\n".join(
        [
            'several_problems.toml: [agent] role = "hub": must be one of "branch", "datacenter", "azure-side"',
            'several_problems.toml: [probe] trace_protocol = "TCP": must be one of "tcp", "udp", "icmp"; did you mean "tcp"?',
            "several_problems.toml: [probe] max_ttl = 0: must be from 1 to 64",
            'several_problems.toml: [[circuit]] #1 (ams-1) primary_subnet = "203.0.113.0/29": must be a '
            "/30 (IPv4) or /126 (IPv6) peering subnet; the MSEE is the second usable address",
            'several_problems.toml: [[circuit]] #1 (ams-1) ce_addresses[0] = "203.0.113.1/30": '
            "is a prefix; write a single address, e.g. 192.0.2.10",
        ]
    ),
}


def test_every_invalid_file_has_an_expected_message():
    assert sorted(p.name for p in INVALID.glob("*.toml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_config_message(name, monkeypatch):
    monkeypatch.chdir(INVALID)
    with pytest.raises(ConfigError) as err:
        load(name)
    assert str(err.value) == EXPECTED[name].replace("{dir}", str(INVALID))
    assert err.value.problems == tuple(str(err.value).split("\n"))


def test_missing_config_file_names_the_path_and_the_way_out(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path / "nope.toml")
    assert str(err.value) == (
        f"{tmp_path}/nope.toml: no such file; check the path, or leave the config out "
        "to probe the built-in catalog with the system resolver"
    )


def test_config_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[agent]\nsite = "K\xf8benhavn"\n')
    with pytest.raises(
        ConfigError, match=r"latin1.toml: not UTF-8 \(byte 17\); save the file as UTF-8"
    ):
        load(path)
