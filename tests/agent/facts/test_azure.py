"""Azure's JSON read into site facts: the CLI's flattened shape, REST's and ARM's nested one, and files that are neither."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.facts.azure import CircuitFacts, FactsError, PeeringFacts, RouteFilterFacts, read_files

FIXTURES = Path(__file__).parent / "fixtures"
COMMANDS = "save the output of: az network express-route show"


def files(kind: str, *names: str) -> list[Path]:
    return [FIXTURES / kind / n for n in names]


def test_cli_output_flattened():
    facts = read_files(
        files(
            "cli", "circuit.json", "peering.json", "route-filter.json", "service-communities.json"
        )
    )
    assert facts.circuits == (CircuitFacts("ams-1", "Amsterdam", "standard"),)
    # the peering file comes after the circuit's own copy of the peering: its facts win
    assert facts.peerings == (
        PeeringFacts(
            circuit="ams-1",
            primary_subnet="203.0.113.0/30",
            secondary_subnet="203.0.113.4/30",
            primary_subnet_v6="2001:db8::/126",
            secondary_subnet_v6="2001:db8::4/126",
            advertised_prefixes=("192.0.2.0/25", "192.0.2.128/26"),
            advertised_prefixes_v6=("2001:db8:100::/48",),
            peer_asn=64496,
            route_filter="rf-ams",
            route_filter_v6="rf-ams",
        ),
    )
    assert facts.route_filters == (
        RouteFilterFacts("rf-ams", ("12076:51002", "12076:51004", "12076:5010"), ("ams-1",)),
    )
    assert sorted(facts.communities.communities) == [
        "12076:5010",
        "12076:51002",
        "12076:51003",
        "12076:51004",
    ]
    assert facts.communities_file == str(FIXTURES / "cli" / "service-communities.json")


def test_circuit_show_alone_carries_its_microsoft_peering():
    facts = read_files(files("cli", "circuit.json"))
    (p,) = facts.peerings
    assert (p.circuit, p.primary_subnet, p.advertised_prefixes, p.route_filter) == (
        "ams-1",
        "203.0.113.0/30",
        ("192.0.2.0/25",),
        "rf-ams",
    )


def test_rest_shape_nested_under_properties():
    facts = read_files(
        files(
            "rest",
            "circuit.json",
            "peering-list.json",
            "route-filter.json",
            "service-communities.json",
        )
    )
    assert facts.circuits == (CircuitFacts("fra-1", "Frankfurt", "premium"),)
    (p,) = facts.peerings  # AzurePrivatePeering of the list is skipped, and said so
    assert (p.circuit, p.primary_subnet, p.secondary_subnet, p.peer_asn, p.route_filter) == (
        "fra-1",
        "203.0.113.8/30",
        "203.0.113.12/30",
        64497,
        "rf-fra",
    )
    assert p.advertised_prefixes_v6 == ("2001:db8:200::/48",)
    # the Deny rule's community is not allowed
    assert facts.route_filters == (
        RouteFilterFacts("rf-fra", ("12076:51002", "12076:51003"), ("fra-1",)),
    )
    assert facts.notes == (
        f"{FIXTURES / 'rest' / 'peering-list.json'}: AzurePrivatePeering is not Microsoft peering: skipped",
    )
    assert len(facts.communities.communities) == 4


def test_arm_template_export_with_parameter_names():
    facts = read_files(files("arm", "template.json"))
    assert facts.circuits == (CircuitFacts("ams-1", "Amsterdam", "standard"),)
    (p,) = facts.peerings
    assert (p.circuit, p.peer_asn, p.route_filter, p.advertised_prefixes) == (
        "ams-1",
        64496,
        "rf-ams",
        ("192.0.2.0/25",),
    )


def test_cli_and_rest_shapes_give_the_same_facts(tmp_path):
    import json

    cli = json.loads((FIXTURES / "cli" / "peering.json").read_text())
    top = {"id", "name", "type", "etag"}
    rest = {k: v for k, v in cli.items() if k in top}
    rest["properties"] = {k: v for k, v in cli.items() if k not in top}
    (tmp_path / "rest.json").write_text(json.dumps(rest))
    assert (
        read_files([tmp_path / "rest.json"]).peerings
        == read_files(files("cli", "peering.json")).peerings
    )


@pytest.mark.parametrize(
    "name, message",
    [
        (
            "local-sku.json",
            "circuit ams-local is ExpressRoute Local: it reaches only the Azure regions at its own "
            "peering location, which erpath does not model",
        ),
        (
            "service-tags.json",
            f"neither an ExpressRoute circuit, a peering, a route filter nor the list of BGP service communities; {COMMANDS}",
        ),
        (
            "truncated.json",
            "not JSON (Expecting property name enclosed in double quotes at line 1, column 19); run the az command with -o json",
        ),
    ],
)
def test_files_that_are_not_azure_facts(name, message):
    with pytest.raises(FactsError) as e:
        read_files([FIXTURES / "bad" / name])
    assert str(e.value).startswith(str(FIXTURES / "bad" / name) + ": ")
    assert message in str(e.value)


def test_missing_file():
    with pytest.raises(FactsError, match=r"nope.json: cannot read it: No such file or directory"):
        read_files([FIXTURES / "nope.json"])
