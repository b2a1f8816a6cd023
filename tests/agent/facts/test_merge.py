"""`erpath-agent facts import`: Azure's facts merged into the agent's TOML, comments kept, then loaded by the agent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import load
from agent.facts.azure import Facts, FactsError, PeeringFacts, read_files
from agent.facts.merge import merge

FIXTURES = Path(__file__).parent / "fixtures"
CLI = [FIXTURES / "cli" / n for n in ("circuit.json", "peering.json", "route-filter.json")]
CLI_COMMUNITIES = FIXTURES / "cli" / "service-communities.json"
CLI_FILES = [*map(str, CLI), str(CLI_COMMUNITIES)]  # every az CLI output, as arguments
REST = [FIXTURES / "rest" / n for n in ("circuit.json", "peering-list.json", "route-filter.json")]

HAND_WRITTEN = """\
# Branch Amsterdam: the network team's notes stay here.
[agent]
id = "ams-br-01"
site = "amsterdam"

[site]
prefer = ["ams-1", "internet"]

# Circuit 1, typed by hand until now
[[circuit]]
name = "ams-1"
location = "Amsterdam"
sku = "standard"
primary_subnet = "203.0.113.0/30"
secondary_subnet = "203.0.113.4/30"
ce_addresses = ["203.0.113.1"]  # the CE's loopback
advertised_prefixes = ["192.0.2.0/25"]
links = "active-standby"

[[internet_edge]]
name = "ams-inet"
nat_addresses = ["198.51.100.10"]
"""


def run(*argv: str, capsys) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_into_a_hand_written_config_keeps_comments_and_prints_a_diff(tmp_path, capsys):
    config = tmp_path / "agent.toml"
    config.write_text(HAND_WRITTEN)
    code, out, _ = run("facts", "import", *CLI_FILES, "--config", str(config), capsys=capsys)
    assert code == 0
    text = config.read_text()
    # everything people wrote is still there, in place
    for line in HAND_WRITTEN.splitlines():
        if not line.startswith("advertised_prefixes"):
            assert line in text
    assert text.index("links =") < text.index("peer_asn =") < text.index("[[internet_edge]]")
    assert '-advertised_prefixes = ["192.0.2.0/25"]' in out
    assert '+route_filter = "rf-ams"' in out
    assert "circuit ams-1: changed (diff above)" in out
    # the dual-stack peering's IPv6 /126s beside the /30s
    assert '+primary_subnet_v6 = "2001:db8::/126"' in out
    assert '+secondary_subnet_v6 = "2001:db8::4/126"' in out
    assert "not imported" not in out
    assert (
        "route filter rf-ams allows 12076:5010 (Exchange), but the subscription may not use it"
        in out
    )
    c = load(config)
    (circuit,) = c.circuits
    assert (circuit.links, circuit.ce_addresses, circuit.peer_asn) == (
        "active-standby",
        ("203.0.113.1",),
        64496,
    )
    assert circuit.advertised_prefixes == ("192.0.2.0/25", "192.0.2.128/26", "2001:db8:100::/48")
    assert circuit.route_filter_communities == ("12076:51002", "12076:51004", "12076:5010")
    assert c.bgp_communities.file == CLI_COMMUNITIES
    # a second import changes nothing
    code, out, _ = run("facts", "import", *CLI_FILES, "--config", str(config), capsys=capsys)
    assert (code, out.splitlines()[-1]) == (0, f"{config}: already up to date")


def test_import_into_a_new_file_adds_circuits_from_cli_and_rest_shapes(tmp_path, capsys):
    config = tmp_path / "agent.toml"
    code, out, _ = run(
        "facts", "import", *map(str, CLI + REST), "--config", str(config), capsys=capsys
    )
    assert code == 0
    assert "circuit ams-1: added" in out and "circuit fra-1: added" in out
    c = load(config)
    assert [(x.name, x.location, x.sku, x.route_filter) for x in c.circuits] == [
        ("ams-1", "Amsterdam", "standard", "rf-ams"),
        ("fra-1", "Frankfurt", "premium", "rf-fra"),
    ]


IPV6_ONLY = """\
[[circuit]]
name = "ams-v6"
location = "Amsterdam"
primary_subnet = "2001:db8:0:1::/126"
secondary_subnet = "2001:db8:0:1::4/126"
"""


def test_an_ipv6_only_circuit_that_gains_ipv4_becomes_dual_stack(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(IPV6_ONLY)
    both = PeeringFacts(
        "ams-v6",
        primary_subnet="203.0.113.0/30",
        secondary_subnet="203.0.113.4/30",
        primary_subnet_v6="2001:db8:0:1::/126",
        secondary_subnet_v6="2001:db8:0:1::4/126",
        advertised_prefixes=("192.0.2.0/28",),
        advertised_prefixes_v6=("2001:db8:100::/48",),
        route_filter="rf-ams",
    )
    merged = merge(config, Facts(peerings=(both,)))
    config.write_text(merged.new_text)
    (c,) = load(config).circuits
    assert (c.primary_subnet, c.secondary_subnet) == ("203.0.113.0/30", "203.0.113.4/30")
    assert (c.primary_subnet_v6, c.secondary_subnet_v6) == (
        "2001:db8:0:1::/126",
        "2001:db8:0:1::4/126",
    )
    assert c.advertised_prefixes == ("192.0.2.0/28", "2001:db8:100::/48")
    # IPv6 peering removed in Azure: the /126s go, no stale link is left behind
    v4_only = PeeringFacts(
        "ams-v6", primary_subnet="203.0.113.0/30", secondary_subnet="203.0.113.4/30"
    )
    config.write_text(merge(config, Facts(peerings=(v4_only,))).new_text)
    (c,) = load(config).circuits
    assert (c.primary_subnet_v6, c.secondary_subnet_v6) == (None, None)
    assert "_v6" not in config.read_text()


def test_an_ipv6_only_peering_keeps_the_one_family_form(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(IPV6_ONLY.replace("2001:db8:0:1::", "2001:db8:0:9::"))
    only_v6 = PeeringFacts(
        "ams-v6", primary_subnet_v6="2001:db8:0:1::/126", secondary_subnet_v6="2001:db8:0:1::4/126"
    )
    (c,) = load_text(tmp_path, merge(config, Facts(peerings=(only_v6,))).new_text).circuits
    assert c.link_subnets() == (
        ("primary", "2001:db8:0:1::/126"),
        ("secondary", "2001:db8:0:1::4/126"),
    )


def load_text(tmp_path: Path, text: str):
    out = tmp_path / "merged.toml"
    out.write_text(text)
    return load(out)


def test_dry_run_writes_nothing(tmp_path, capsys):
    config = tmp_path / "agent.toml"
    config.write_text(HAND_WRITTEN)
    code, out, _ = run(
        "facts", "import", *map(str, CLI), "--config", str(config), "--dry-run", capsys=capsys
    )
    assert code == 0 and f"{config}: not written (--dry-run)" in out
    assert config.read_text() == HAND_WRITTEN


def test_a_new_circuit_without_its_peering_is_refused(tmp_path):
    config = tmp_path / "agent.toml"
    with pytest.raises(FactsError) as e:
        merge(config, read_files([FIXTURES / "cli" / "route-filter.json"]))
    assert str(e.value) == (
        f"circuit ams-1 is not in {config} and the files give no location, primary_subnet, "
        "secondary_subnet; add `az network express-route show` and `az network express-route "
        "peering show -n MicrosoftPeering` output"
    )
    assert not config.exists()


def test_a_direct_circuit_without_a_peering_location_says_what_to_write(tmp_path):
    circuit = json.loads((FIXTURES / "cli" / "circuit.json").read_text())
    circuit["serviceProviderProperties"] = None  # ExpressRoute Direct: the port has it
    circuit["expressRoutePort"] = {
        "id": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Network/expressRoutePorts/port-ams"
    }
    (tmp_path / "direct.json").write_text(json.dumps(circuit))
    config = tmp_path / "agent.toml"
    facts = read_files([tmp_path / "direct.json"])
    with pytest.raises(FactsError) as e:
        merge(config, facts)
    assert str(e.value) == (
        f"circuit ams-1 is not in {config} and the files give no peering location (an "
        'ExpressRoute Direct circuit has it on its port); add [[circuit]] name = "ams-1" with '
        'location = "<the peering location>" to the config, then import again'
    )
    # once the circuit is in the file, the rest is imported and the location kept
    config.write_text(
        '[[circuit]]\nname = "ams-1"\nlocation = "Amsterdam"\n'
        'primary_subnet = "203.0.113.0/30"\nsecondary_subnet = "203.0.113.4/30"\n'
    )
    merged = merge(config, facts)
    assert "circuit ams-1: no peering location in the file" in merged.notes[0]
    assert (
        'location = "Amsterdam"' in merged.new_text
        and 'route_filter = "rf-ams"' not in merged.new_text
    )


def test_facts_that_would_make_the_config_invalid_are_not_written(tmp_path, capsys):
    config = tmp_path / "agent.toml"
    clash = HAND_WRITTEN.replace('name = "ams-1"', 'name = "ams-old"')  # same /30s, another name
    config.write_text(clash)
    code, _, err = run("facts", "import", *map(str, CLI), "--config", str(config), capsys=capsys)
    assert code == 2
    assert err.startswith(
        f"erpath-agent: the imported facts would make {config} invalid, nothing written:"
    )
    assert 'primary_subnet = "203.0.113.0/30": overlaps [[circuit]] #1 (ams-old)' in err
    assert config.read_text() == clash


def test_a_file_that_is_not_azure_facts_is_a_usage_error(tmp_path, capsys):
    code, _, err = run(
        "facts",
        "import",
        str(FIXTURES / "bad" / "local-sku.json"),
        "--config",
        str(tmp_path / "a.toml"),
        capsys=capsys,
    )
    assert code == 2
    assert "is ExpressRoute Local" in err and "Traceback" not in err


def test_end_to_end_import_then_check_config_then_probe_once(tmp_path):
    """The set-up of a new site: az output in, the agent loads it and reports the route filter facts."""
    config = tmp_path / "agent.toml"
    agent = [sys.executable, "-m", "agent.cli"]
    subprocess.run(
        [*agent, "facts", "import", *CLI_FILES, "--config", str(config)],
        check=True,
        capture_output=True,
    )
    check = subprocess.run([*agent, "check-config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "ams-1 (Amsterdam, standard): primary 203.0.113.0/30" in check.stdout
    assert "    route filter rf-ams allows 12076:51002, 12076:51004, 12076:5010\n" in check.stdout
    probe = subprocess.run(
        [*agent, "probe", "once", "--config", str(config), "--no-trace", "--json", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode in (0, 1), probe.stderr
    report = json.loads(probe.stdout)
    (circuit,) = report["site"]["circuits"]
    assert (circuit["route_filter"], circuit["route_filter_communities"], circuit["peer_asn"]) == (
        "rf-ams",
        ["12076:51002", "12076:51004", "12076:5010"],
        64496,
    )
    (result,) = report["results"]
    expectation = next(e for e in result["verdict"]["evidence"] if e["kind"] == "expectation")
    # the route filters are known: an address in no community is expected on the internet
    assert result["verdict"]["expected"] == "internet"
    assert "127.0.0.1 is in no BGP community of Microsoft peering" in expectation["text"]
