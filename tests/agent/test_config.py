"""Loading valid configs: defaults, the tree, site facts, effective targets, CLI overrides."""

import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from agent import catalog
from agent.config import (
    AgentConfig,
    CollectorConfig,
    ConfigError,
    ProbeConfig,
    TargetSpec,
    default_config,
    load,
    loads,
    normalize_resolver,
    with_cli_targets,
)
from agent.report import Circuit, InternetEdge, SiteFacts
from agent.service.metrics import AgentMetrics
from agent.settings import ListenAddress, split_host_port
from tests.collector.realparts import free_port

CONFIGS = Path(__file__).parent / "configs"
VALID = CONFIGS / "valid"
DOC = Path(__file__).parents[2] / "docs" / "agent-config.md"


def test_no_file_gives_the_zero_config_agent():
    config = load(None)
    assert config == default_config()
    assert config.agent.id == socket.gethostname()
    assert (config.agent.site, config.agent.role) == ("default", "branch")
    assert config.dns.resolvers == ("system",)
    assert config.probe == ProbeConfig()
    assert config.collector == CollectorConfig(url=None)
    assert config.site_facts() == SiteFacts()
    assert config.service_tags.file is None and config.load_service_tags() is None
    names = [t.name for t in config.targets()]
    assert names == [e.name for e in catalog.concrete_entries()]
    assert {t.port for t in config.targets()} == {443}


def test_empty_file_equals_no_file():
    assert loads("", source="empty.toml") == default_config()


@pytest.mark.parametrize("name", sorted(p.name for p in VALID.glob("*.toml")))
def test_valid_examples_load(name):
    config = load(VALID / name)
    assert isinstance(config, AgentConfig)
    assert config.path == VALID / name


def test_datacenter_example_tree():
    c = load(VALID / "datacenter.toml")
    assert (c.agent.id, c.agent.site, c.agent.role) == ("ams-core-1", "ams", "datacenter")
    assert c.dns.resolvers == ("198.18.53.53", "198.18.53.54:5353")
    assert c.dns.timeout_s == 1.5
    assert c.probe.trace_protocol == "icmp" and c.probe.addresses == "all"
    assert (c.probe.interval_s, c.probe.jitter_s, c.probe.concurrency) == (30.0, 3.0, 4)
    assert isinstance(c.probe.interval_s, float)  # TOML integers become seconds as floats
    # Relative paths resolve against the config file's directory.
    assert c.collector.url == "https://collector.example.net:8443"
    assert c.collector.token_file == VALID / "secrets/agent.token"
    assert c.collector.ca_file == Path("/etc/erpath/ca.pem")
    assert c.spool.dir == VALID / "spool"
    assert (c.spool.max_mb, c.spool.max_age_h) == (16.0, 12.0)
    assert c.metrics.listen == ListenAddress("127.0.0.1", 9430)
    assert c.service_tags.file == VALID / "servicetags-sample.json"
    assert c.site_facts() == SiteFacts(
        circuits=(
            Circuit(
                "ams-1",
                "Amsterdam",
                "premium",
                "203.0.113.0/30",
                "203.0.113.4/30",
                ("203.0.113.1", "203.0.113.5"),
                ("192.0.2.0/28",),
            ),
            Circuit(
                "ams-2",
                "Amsterdam2",
                "standard",
                "203.0.113.8/30",
                "203.0.113.12/30",
                (),
                ("192.0.2.16/28",),
                links="active-standby",
            ),
        ),
        internet_edges=(InternetEdge("ams-inet", ("198.51.100.10",), ("198.51.100.1",)),),
        prefer=("ams-1", "ams-2", "internet"),
    )
    assert c.circuits[0].links == "active-active"  # the default, as Microsoft recommends


def test_service_tags_are_loaded_once_and_looked_up():
    c = load(VALID / "datacenter.toml")
    tags = c.load_service_tags()
    assert tags is c.load_service_tags()  # cached while the file is unchanged
    assert [m.name for m in tags.lookup("198.18.20.10")] == ["PowerPlatformInfra.WestEurope"]


def test_service_tags_file_removed_after_load(tmp_path):
    tags = tmp_path / "tags.json"
    tags.write_text((VALID / "servicetags-sample.json").read_text())
    (tmp_path / "agent.toml").write_text('[service_tags]\nfile = "tags.json"\n')
    config = load(tmp_path / "agent.toml")
    tags.unlink()
    with pytest.raises(
        ConfigError, match=r'agent.toml: \[service_tags\] file = ".*tags.json": cannot read it'
    ):
        config.load_service_tags()


def test_route_filter_keys_and_communities_file():
    c = load(VALID / "route-filter.toml")
    (circuit,) = c.circuits
    assert (circuit.peer_asn, circuit.route_filter, circuit.route_filter_communities) == (
        64496,
        "rf-ams",
        ("12076:51002", "12076:51004"),
    )
    # the facts travel in every report
    assert c.site_facts().circuits[0].route_filter_communities == ("12076:51002", "12076:51004")
    communities = c.load_bgp_communities()
    assert communities is c.load_bgp_communities()  # cached while the file is unchanged
    assert [m.community.value for m in communities.lookup("198.18.10.7")] == ["12076:51002"]


def test_a_new_communities_file_is_read_at_the_next_load_and_a_broken_one_keeps_the_last(
    tmp_path,
):
    import json

    doc = json.loads((VALID / "communities-sample.json").read_text())
    file = tmp_path / "communities.json"
    file.write_text(json.dumps(doc[:1]))
    (tmp_path / "agent.toml").write_text('[bgp_communities]\nfile = "communities.json"\n')
    c = load(tmp_path / "agent.toml")
    assert len(c.load_bgp_communities().communities) == 1
    file.write_text(json.dumps(doc))  # an update (a different size: a new stamp)
    assert len(c.load_bgp_communities().communities) == 4
    file.write_text("[")  # a hand edit gone wrong: the last good copy stays
    assert len(c.load_bgp_communities().communities) == 4


def test_a_url_without_the_file_yet_is_valid_the_update_fetches_it(tmp_path):
    (tmp_path / "agent.toml").write_text(
        '[service_tags]\nfile = "tags.json"\nurl = "https://mirror.example.net/tags.json"\n'
        '[bgp_communities]\nfile = "c.json"\nurl = "https://mirror.example.net/c.json"\n'
    )
    c = load(tmp_path / "agent.toml")
    assert c.service_tags.url == "https://mirror.example.net/tags.json"
    assert c.bgp_communities.file == tmp_path / "c.json"
    assert c.load_bgp_communities() is None  # classified without route filters until fetched


def test_targets_catalog_then_replacements_in_place_then_additions():
    c = load(VALID / "datacenter.toml")
    targets = c.targets()
    names = [t.name for t in targets]
    concrete = [e.name for e in catalog.concrete_entries()]
    assert names == [*concrete, "contoso.crm4.dynamics.com", "intranet-check"]
    by_name = {t.name: t for t in targets}
    # A target's own failover order; the others follow the site's.
    assert by_name["login.microsoftonline.com"].prefer == ("internet", "ams-1")
    assert by_name["make.powerapps.com"].prefer == ()
    # The [[target]] replaced the catalog entry, in the catalog's place.
    assert by_name["content.powerapps.com"] == TargetSpec(
        "content.powerapps.com", None, 443, "cdn", "internet"
    )
    # A name a catalog wildcard covers takes that entry's role and expectation.
    assert by_name["contoso.crm4.dynamics.com"] == TargetSpec(
        "contoso.crm4.dynamics.com", None, 443, "api", None
    )
    assert by_name["intranet-check"] == TargetSpec(
        "intranet-check", "198.18.20.10", 8443, "service", "expressroute"
    )
    # ...and the Dataverse wildcard no longer needs a note.
    unprobed = {e.name for e in c.unprobed_catalog()}
    assert "*.crm*.dynamics.com" not in unprobed
    assert "*.azureedge.net" in unprobed


def test_reverse_targets_of_an_azure_side_agent():
    c = load(VALID / "azure-side.toml")
    assert c.agent.role == "azure-side"
    assert c.unprobed_catalog() == ()
    assert c.targets() == (
        TargetSpec("ams-er-nat", "192.0.2.1", 443, "reverse", "expressroute", "ams"),
        TargetSpec("198.51.100.10", "198.51.100.10", 443, "reverse", "internet", "ams"),
    )


def test_ipv6_circuit():
    (circuit,) = load(VALID / "ipv6-circuit.toml").circuits
    assert (circuit.primary_subnet, circuit.secondary_subnet) == (
        "2001:db8:0:1::/126",
        "2001:db8:0:1::4/126",
    )


def test_ipv6_only_circuit_keeps_its_form_and_names_both_links():
    # The form before the _v6 keys: an IPv6-only circuit's /126s in primary_subnet.
    (circuit,) = load(VALID / "ipv6-circuit.toml").circuits
    assert circuit.primary_subnet_v6 is None and circuit.secondary_subnet_v6 is None
    assert circuit.link_subnets() == (
        ("primary", "2001:db8:0:1::/126"),
        ("secondary", "2001:db8:0:1::4/126"),
    )


def test_dual_stack_circuit_and_edge():
    c = load(VALID / "dual-stack.toml")
    (circuit,) = c.circuits
    assert circuit.link_subnets() == (
        ("primary", "203.0.113.0/30"),
        ("secondary", "203.0.113.4/30"),
        ("primary", "2001:db8:0:1::/126"),
        ("secondary", "2001:db8:0:1::4/126"),
    )
    assert c.internet_edges[0].source_prefixes_v6 == ("2001:db8:200::/48",)
    assert c.probe.addresses == "both"


def test_addresses_default_is_what_users_get():
    assert loads("").probe.addresses == "preferred"


def test_probe_port_applies_to_targets_without_their_own():
    c = loads(
        '[probe]\nport = 8443\n[[target]]\nname = "a.example"\n[[target]]\nname = "b.example"\nport = 80\n'
    )
    ports = {t.name: t.port for t in c.targets()}
    assert (
        ports["make.powerapps.com"] == 8443
        and ports["a.example"] == 8443
        and ports["b.example"] == 80
    )


def test_builtin_targets_off():
    c = loads(
        '[probe]\nbuiltin_targets = false\n[[target]]\nname = "make.powerapps.com"\nexpect = "expressroute"\n'
    )
    assert c.targets() == (TargetSpec("make.powerapps.com", None, 443, "service", "expressroute"),)


def test_explicit_expect_overrides_the_catalog():
    c = loads('[[target]]\nname = "res.cdn.office.net"\nexpect = "internet"\n')
    assert {t.name: t.expect for t in c.targets()}["res.cdn.office.net"] == "internet"


def test_values_are_normalised():
    c = loads(
        '[dns]\nresolvers = ["2001:DB8::53", "[2001:db8::54]:5353"]\n'
        '[[internet_edge]]\nname = "e"\nnat_addresses = ["2001:DB8:0:0::10"]\n'
        '[[target]]\nname = "Contoso.CRM4.Dynamics.com."\n'
    )
    assert c.dns.resolvers == ("2001:db8::53", "[2001:db8::54]:5353")
    assert c.internet_edges[0].nat_addresses == ("2001:db8::10",)
    assert c.configured_targets[0].name == "contoso.crm4.dynamics.com"


def test_loads_reports_problems_with_its_source():
    with pytest.raises(ConfigError) as err:
        loads('[agent]\nrole = "hub"\n', source="inline")
    assert str(err.value).startswith('inline: [agent] role = "hub": must be one of')


def test_config_is_frozen():
    c = default_config()
    with pytest.raises(AttributeError):
        c.probe = ProbeConfig(port=80)  # type: ignore[misc]


# ----------------------------------------------------------------- [metrics] listen


def _serves_metrics(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as reply:
            return b"erpath_agent_cycle_seconds" in reply.read()
    except urllib.error.URLError:
        return False


def test_metrics_listen_without_host_serves_every_address():
    # docs/agent-config.md: ":9430" is all addresses. 127.0.0.2 is on lo but
    # is not 127.0.0.1, so only a wildcard bind answers there; ::1 needs IPv6.
    port = free_port()
    c = loads(f'[metrics]\nlisten = ":{port}"\n')
    assert c.metrics.listen == ListenAddress("", port)
    AgentMetrics.serve(c.metrics.listen)
    assert [_serves_metrics(h, port) for h in ("127.0.0.1", "127.0.0.2", "[::1]")] == [True] * 3


def test_metrics_listen_on_loopback_serves_loopback_only():
    port = free_port()
    c = loads(f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    AgentMetrics.serve(c.metrics.listen)
    assert [_serves_metrics(h, port) for h in ("127.0.0.1", "127.0.0.2")] == [True, False]


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9430", ListenAddress("127.0.0.1", 9430)),
        (":9430", ListenAddress("", 9430)),
        ("[::1]:9430", ListenAddress("::1", 9430)),
        ("[::]:9430", ListenAddress("::", 9430)),
        ("localhost:9430", ListenAddress("localhost", 9430)),
    ],
)
def test_metrics_listen_forms(listen, expected):
    assert loads(f'[metrics]\nlisten = "{listen}"\n').metrics.listen == expected


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("9430", 'needs a port; write host:port, e.g. "127.0.0.1:9430" or ":9430" (all addresses)'),
        ("host.example:9430", 'host must be an IP address, "localhost" or empty (all addresses)'),
        (":0", "port '0' must be a number from 1 to 65535; write host:port, e.g."),
    ],
)
def test_metrics_listen_problems(listen, problem):
    with pytest.raises(ConfigError) as err:
        loads(f'[metrics]\nlisten = "{listen}"\n', source="m.toml")
    assert str(err.value).startswith(f'm.toml: [metrics] listen = "{listen}": {problem}')


# ----------------------------------------------------------------- command line


def test_cli_targets_replace_the_list():
    base = load(VALID / "datacenter.toml")
    c = with_cli_targets(
        base,
        [
            "make.powerapps.com",
            "198.18.20.10:8443",
            "[2001:db8::1]:80",
            "2001:db8::2",
            "res.cdn.office.net",
            "intranet.example:8080",
        ],
    )
    assert c.targets() == (
        TargetSpec("make.powerapps.com", None, 443, "service", None),
        TargetSpec("198.18.20.10", "198.18.20.10", 8443, "service", None),
        TargetSpec("2001:db8::1", "2001:db8::1", 80, "service", None),
        TargetSpec("2001:db8::2", "2001:db8::2", 443, "service", None),
        TargetSpec("res.cdn.office.net", None, 443, "cdn", "cdn"),
        TargetSpec("intranet.example", None, 8080, "service", None),
    )
    assert c.unprobed_catalog() == ()
    assert c.site_facts() == base.site_facts()  # only the targets change


def test_cli_expect_and_the_probe_port_for_targets_without_one():
    from dataclasses import replace

    base = default_config()
    c = with_cli_targets(
        replace(base, probe=replace(base.probe, port=8443)),
        ["res.cdn.office.net", "a.example:80"],
        expect="internet",
    )
    assert [(t.port, t.expect) for t in c.targets()] == [(8443, "internet"), (80, "internet")]


def test_cli_target_problems_are_all_reported():
    with pytest.raises(ConfigError) as err:
        with_cli_targets(
            default_config(),
            ["ok.example", "a.example:99999", "*.crm.dynamics.com", "bad host"],
            expect="er",
        )
    assert str(err.value).split("\n") == [
        "command line: --expect er: must be one of expressroute, internet, cdn",
        "command line: TARGET \"a.example:99999\": port '99999' must be a number from 1 to 65535; "
        "write a host name or address, optionally :port",
        'command line: TARGET "*.crm.dynamics.com": is a wildcard, which cannot be probed; '
        'name one real host it covers, e.g. "contoso.crm.dynamics.com"',
        'command line: TARGET "bad host": is neither a host name nor an IP address; '
        "write e.g. make.powerapps.com or 192.0.2.10",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host", ("host", None)),
        ("host:80", ("host", 80)),
        ("192.0.2.1:53", ("192.0.2.1", 53)),
        ("2001:db8::1", ("2001:db8::1", None)),
        ("[2001:db8::1]", ("2001:db8::1", None)),
        ("[2001:db8::1]:53", ("2001:db8::1", 53)),
        (":9430", ("", 9430)),
    ],
)
def test_split_host_port(text, expected):
    assert split_host_port(text) == expected


@pytest.mark.parametrize("text", ["host:0", "host:x", "[2001:db8::1", "[2001:db8::1]x"])
def test_split_host_port_rejects(text):
    with pytest.raises(ValueError):
        split_host_port(text)


def test_normalize_resolver_for_cli_overrides():
    assert normalize_resolver("system") == "system"
    assert normalize_resolver("198.51.100.53:53") == "198.51.100.53:53"
    with pytest.raises(ValueError, match=r'resolver "dns.google": must be "system"'):
        normalize_resolver("dns.google")


# ----------------------------------------------------------------- the documentation


def _doc_example() -> str:
    text = DOC.read_text()
    (example,) = re.findall(r"## A full example.*?```toml\n(.*?)```", text, re.S)
    return example


def test_doc_example_is_a_valid_branch_config_with_two_circuits_and_one_edge():
    # The example points at the production tags path; point it at the sample.
    example = _doc_example().replace(
        "/var/lib/erpath/ServiceTags_Public.json", str(VALID / "servicetags-sample.json")
    )
    c = loads(example, source="agent-config.md", base_dir=Path("/etc/erpath"))
    assert c.agent.role == "branch"
    assert [x.name for x in c.circuits] == ["ams-1", "ams-2"]
    assert [x.name for x in c.internet_edges] == ["ams-inet"]
    assert c.collector.token_file == Path("/etc/erpath/agent.token")


def test_readme_example_is_a_valid_config():
    readme = (DOC.parents[1] / "README.md").read_text()
    (example,) = re.findall(r"## Site facts.*?```toml\n(.*?)```", readme, re.S)
    example = example.replace(
        "/etc/erpath/ServiceTags_Public.json", str(VALID / "servicetags-sample.json")
    )
    c = loads(example, source="README.md")
    assert c.site_facts().prefer == ("ams-er-1", "internet")
    assert [x.links for x in c.circuits] == ["active-active"]


def test_doc_documents_every_key():
    from agent.config import ARRAYS, SECTIONS

    text = DOC.read_text()
    for name, table in {**SECTIONS, **ARRAYS}.items():
        heading = f"### `[{name}]`" if name in SECTIONS else f"### `[[{name}]]`"
        assert heading in text
        section = text.split(heading, 1)[1].split("\n### ", 1)[0]
        for key in table.keys:
            assert f"| `{key}` |" in section, f"{name}.{key} is not documented"


def test_doc_lists_every_catalog_entry():
    text = DOC.read_text()
    for entry in catalog.CATALOG:
        assert (
            f"| {entry.name.replace('*', chr(92) + '*')} | {entry.role} | {entry.expect or 'none'} |"
            in text
        )


def test_dual_stack_facts_and_families_survive_the_report():
    import json

    from agent.report import (
        AgentInfo,
        Report,
        ReportError,
        Result,
        report_from_dict,
        to_dict,
    )

    report = Report(
        id="12345678-1234-1234-1234-123456789abc",
        seq=1,
        agent=AgentInfo("a", "s", "branch", "0", "h"),
        started_at="2026-12-01T08:00:00Z",
        duration_s=1.0,
        site=load(VALID / "dual-stack.toml").site_facts(),
        results=(
            Result("x", "service", 443, address="2001:db8::1", family="ipv6"),
            Result("y", "service", 443, address="192.0.2.1"),  # an older agent: no family
        ),
    )
    doc = json.loads(json.dumps(to_dict(report)))
    back = report_from_dict(doc)
    assert back == report
    assert [r.address_family for r in back.results] == ["ipv6", "ipv4"]
    doc["site"]["circuits"][0]["primary_subnet_v6"] = "nonsense"
    with pytest.raises(ReportError, match="primary_subnet_v6"):
        report_from_dict(doc)
